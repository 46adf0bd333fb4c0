// One SourceCapture per stored source, kept in step with sluice.sources: a
// source created, changed or deleted through the management API or `sluice
// config apply` (in this process or another, via the 'sluice_config' reload)
// is captured, restarted or stopped without a gateway restart.
//
// A restart is safe at any moment: stop() lets queued buffer writes finish and
// the next start resumes from the position stored in the buffer.
import type { ConsumerRegistry, SourceRecord } from '../buffer/consumers.js';
import type { Pool } from '../db/pool.js';
import type { SourceStatus } from '../http/deps.js';
import type { Metrics } from '../metrics/metrics.js';
import { SourceCapture, type Logger } from './source-capture.js';

export interface CapturesDeps {
  bufferPool: Pool;
  /** The source URL when a source has none: the buffer's own database. */
  bufferUrl: string;
  consumers: ConsumerRegistry;
  log: Logger;
  metrics?: Metrics;
}

/** How long start() waits for the captures' first attempts (an unreachable source may take its connect timeout). */
const FIRST_ATTEMPT_MS = 15_000;

interface Running {
  fingerprint: string;
  capture: SourceCapture;
}

export class Captures {
  private running = new Map<string, Running>();
  /** Reconciliations run one at a time, in the order the reloads happened. */
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly deps: CapturesDeps) {}

  /**
   * Starts a capture for every stored source, then follows the registry's
   * reloads. Resolves once each capture's first attempt is over (bounded), so
   * a gateway that says it runs has its slots: changes from then on are kept.
   */
  async start(firstAttemptMs = FIRST_ATTEMPT_MS): Promise<void> {
    this.unsubscribe = this.deps.consumers.onChange(() => void this.sync());
    await this.sync();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.all().map((c) => c.firstAttempt())),
      new Promise((resolve) => (timer = setTimeout(resolve, firstAttemptMs))),
    ]);
    clearTimeout(timer);
  }

  all(): SourceCapture[] {
    return [...this.running.values()].map((r) => r.capture);
  }

  status(): SourceStatus[] {
    return this.all().map((c) => c.status());
  }

  /** Brings the running captures in line with the registry's sources; resolves when done. */
  sync(): Promise<void> {
    const next = this.chain.then(() => this.reconcile(this.deps.consumers.sources()));
    this.chain = next.catch((err: Error) => this.deps.log.error({ err: err.message }, 'capture reconcile failed'));
    return this.chain;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    await this.chain;
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.all(all.map((r) => r.capture.stop()));
  }

  private async reconcile(sources: SourceRecord[]): Promise<void> {
    if (this.stopped) return;
    const wanted = new Map(sources.map((s) => [s.name, s]));
    const toStop: Array<[string, Running]> = [];
    for (const [name, r] of this.running) {
      const source = wanted.get(name);
      if (!source || fingerprint(source) !== r.fingerprint) toStop.push([name, r]);
    }
    for (const [name, r] of toStop) {
      this.running.delete(name);
      await r.capture.stop();
      if (!wanted.has(name)) this.deps.log.info({ source: name }, 'source deleted: capture stopped (its slot is kept; drop it when no longer needed)');
    }
    for (const source of sources) {
      if (this.running.has(source.name) || this.stopped) continue;
      const capture = new SourceCapture(source.config, {
        bufferPool: this.deps.bufferPool,
        sourceUrl: source.config.url || this.deps.bufferUrl,
        consumers: this.deps.consumers,
        log: this.deps.log,
        metrics: this.deps.metrics,
      });
      capture.start();
      this.running.set(source.name, { fingerprint: fingerprint(source), capture });
    }
  }
}

/**
 * What a running capture depends on: everything but annotations, which are
 * read when messages are served, and retention, which the retention job reads
 * and capture asks the registry for when it sizes a new log partition.
 */
const fingerprint = ({ config: { annotations: _served, retention: _kept, ...capture } }: SourceRecord) => JSON.stringify(capture);
