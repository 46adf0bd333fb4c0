// The activity sampler: every 10 s, one row in sluice.activity_samples with
// how much this process's counters of captured changes (per source) and
// delivered messages (per consumer: webhook 2xx, pull acks) grew since its
// last sample. Every gateway process runs one; GET /api/overview sums their
// rows into the console's per-minute history, which so covers the cluster
// and outlives restarts, while the counters themselves (src/metrics/metrics.ts)
// are per process and start at zero.
import type { Pool } from '../db/pool.js';
import { safeError } from '../log.js';
import type { Log } from '../push/worker.js';
import { writeSample } from './activity-queries.js';
import type { ActivityTotals } from './metrics.js';

export const SAMPLE_EVERY_MS = 10_000;

export interface SamplerOptions {
  pool: Pool;
  /** The process's running totals (Metrics.activityTotals). */
  totals: () => Promise<ActivityTotals>;
  /** Written with each sample (the gateway's instance id). */
  process: string;
  log: Log;
  everyMs?: number;
}

/** What grew since `before`, by name; names that did not move are left out. */
function grown(now: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, n] of now) {
    const d = n - (before.get(name) ?? 0);
    if (d > 0) out[name] = d;
  }
  return out;
}

export class ActivitySampler {
  // The totals the last stored sample counted up to (zero at start, as the counters).
  private last: ActivityTotals = { captured: new Map(), delivered: new Map() };
  private timer: NodeJS.Timeout | null = null;
  // Samples run one at a time (a timer tick and sampleNow() never count the same growth twice).
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly opts: SamplerOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      // Never throws out of the timer: a failed sample is logged, and its
      // growth is counted in the next one (last moves only once stored).
      this.sampleNow().catch((err) => this.opts.log.warn({ error: safeError(err) }, 'activity sample failed'));
    }, this.opts.everyMs ?? SAMPLE_EVERY_MS);
    // Nothing to keep the process alive for.
    this.timer.unref();
  }

  /** Takes and stores a sample now (the timer's work; tests call it to skip the wait). */
  sampleNow(): Promise<void> {
    const run = this.queue.then(() => this.sample());
    this.queue = run.catch(() => {});
    return run;
  }

  /** Stops the timer and stores what grew since the last sample, so a clean shutdown loses nothing. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.sampleNow().catch((err) => this.opts.log.warn({ error: safeError(err) }, 'last activity sample failed'));
  }

  private async sample(): Promise<void> {
    const totals = await this.opts.totals();
    await writeSample(this.opts.pool, this.opts.process, grown(totals.captured, this.last.captured), grown(totals.delivered, this.last.delivered));
    this.last = totals;
  }
}
