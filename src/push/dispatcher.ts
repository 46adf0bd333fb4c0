// Runs a ConsumerWorker for every active webhook consumer, following the
// registry: a consumer added, changed (new URL, secrets, settings), paused,
// resumed or deleted gets its worker started, replaced or stopped. Several
// gateway processes may run a Dispatcher on the same buffer: batches are leased
// in the database, so they share the work without sending a batch twice at once.
import type { Metrics } from '../metrics/metrics.js';
import type { ConsumerRecord, ConsumerRegistry } from '../buffer/consumers.js';
import { ClaimFaults } from '../buffer/faults.js';
import { Wakeup } from '../buffer/wakeup.js';
import type { Pool } from '../db/pool.js';
import { EndpointClients } from './http.js';
import type { Lookup } from './ssrf.js';
import { ConsumerWorker, type Log } from './worker.js';

export interface DispatcherDeps {
  pool: Pool;
  consumers: ConsumerRegistry;
  /** The process's LISTEN sluice_messages client; without one the Dispatcher runs its own. */
  wakeup?: Wakeup;
  /** Unique per gateway process (host:pid:random); recorded with each attempt. */
  instanceId: string;
  log: Log;
  /** DNS for the SSRF guard (tests); the system resolver by default. */
  lookup?: Lookup;
  metrics?: Metrics;
}

export interface DispatcherStatus {
  consumer: string;
  in_flight: number;
}

const fingerprint = (c: ConsumerRecord) => JSON.stringify([c.config, c.annotations, c.filter_columns]);

export class Dispatcher {
  private readonly workers = new Map<string, { worker: ConsumerWorker; fingerprint: string }>();
  private readonly stopping = new Set<Promise<void>>();
  private readonly clients: EndpointClients;
  private readonly faults: ClaimFaults;
  private unsubscribe: (() => void) | null = null;
  private ownWakeup: Wakeup | null = null;
  private started = false;

  constructor(private readonly deps: DispatcherDeps) {
    this.clients = new EndpointClients(deps.lookup);
    this.faults = new ClaimFaults(deps.pool, deps.instanceId);
  }

  /** Idempotent. Dispatches the registry's current consumers and follows its changes. */
  start(): void {
    if (this.started) return;
    this.started = true;
    if (!this.deps.wakeup) {
      this.ownWakeup = Wakeup.fromPool(this.deps.pool, { onError: (err) => this.deps.log.warn({ err: String(err) }, 'webhook wake-up connection lost') });
      void this.ownWakeup.start();
    }
    this.unsubscribe = this.deps.consumers.onChange((all) => this.sync(all));
    this.sync(this.deps.consumers.all());
  }

  /** Idempotent. Stops every worker (in-flight requests get a short grace) and closes the HTTP pools. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const name of [...this.workers.keys()]) this.retire(name);
    await Promise.allSettled([...this.stopping]);
    await this.clients.close();
    await this.ownWakeup?.stop();
    this.ownWakeup = null;
  }

  status(): DispatcherStatus[] {
    return [...this.workers.entries()].map(([consumer, w]) => ({ consumer, in_flight: w.worker.inFlightCount }));
  }

  private get wakeup(): Wakeup | undefined {
    return this.deps.wakeup ?? this.ownWakeup ?? undefined;
  }

  private sync(all: ConsumerRecord[]): void {
    if (!this.started) return;
    const wanted = new Map(all.filter((c) => c.kind === 'webhook' && c.state === 'active' && c.config.webhook).map((c) => [c.name, c]));
    for (const name of [...this.workers.keys()]) {
      const c = wanted.get(name);
      if (!c || fingerprint(c) !== this.workers.get(name)!.fingerprint || c.id !== this.workers.get(name)!.worker.consumer.id) {
        this.retire(name);
      }
    }
    for (const [name, c] of wanted) {
      if (this.workers.has(name)) continue;
      const worker = new ConsumerWorker(c, {
        pool: this.deps.pool,
        clients: this.clients,
        wakeup: this.wakeup,
        instanceId: this.deps.instanceId,
        log: this.deps.log,
        faults: this.faults,
        metrics: this.deps.metrics,
        onStateChange: () => void this.deps.consumers.reload().catch(() => {}),
      });
      this.workers.set(name, { worker, fingerprint: fingerprint(c) });
      worker.start();
      this.deps.log.info({ consumer: name }, 'webhook dispatch started');
    }
    const inUse = [...wanted.values()].map((c) => ({ url: new URL(c.config.webhook!.url), allow: c.config.webhook!.allow_private_ranges }));
    void this.clients.retain(inUse);
  }

  /** Stops a worker without waiting for it; stop() waits for all of them. */
  private retire(name: string): void {
    const entry = this.workers.get(name);
    if (!entry) return;
    this.workers.delete(name);
    const done = entry.worker.stop().finally(() => this.stopping.delete(done));
    this.stopping.add(done);
    this.deps.log.info({ consumer: name }, 'webhook dispatch stopped');
  }
}
