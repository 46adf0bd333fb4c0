// Scheduled housekeeping (node-cron): pruning the webhook attempt log, eager
// VACUUMs of the buffer's queue tables (see src/jobs/vacuum.ts), the change
// log's retention (src/log/retention.ts), and reporting replication slot lag
// through a function the gateway passes in. Every gateway process may run
// these; pruning is idempotent and sliced, so two processes at once only share
// the work; vacuums and retention run in one gateway at a time (advisory locks).
import { createTask, type ScheduledTask, type TaskOptions } from 'node-cron';
import type { Pool } from '../db/pool.js';
import { pruneAttempts } from '../push/attempt-queries.js';
import { vacuumBatchesIfNeeded, vacuumBufferIfNeeded } from './vacuum.js';
import { RetentionJob, type RetentionRun } from '../log/retention.js';
import type { Log } from '../push/worker.js';

export const DEFAULT_ATTEMPT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
export const DEFAULT_VACUUM_MIN_DEAD_TUPLES = 10_000;

export interface JobsOptions {
  pool: Pool;
  log: Log;
  /** Attempts older than this are deleted (default 7 days). */
  attemptRetentionMs?: number;
  /** Called on the slot-lag schedule (e.g. logs/exports each source's lag); omitted: no such job. */
  reportSlotLag?: () => unknown | Promise<unknown>;
  /** VACUUM sluice.messages once this many dead rows wait (default 10k, and a fifth of the live rows; 0: never). */
  vacuumMinDeadTuples?: number;
  /** Retention: how long a lock on the log may be waited for before a run gives up until the next (default 1 s). */
  retentionLockTimeoutMs?: number;
  /** Cron expressions (node-cron, optional seconds field). */
  schedules?: { pruneAttempts?: string; slotLag?: string; vacuumBuffer?: string; vacuumBatches?: string; retention?: string };
}

// Minute 17: away from the top of the hour, when other systems' cron jobs pile up.
const PRUNE_EVERY = '17 * * * *';
const SLOT_LAG_EVERY = '*/30 * * * * *';
// Every second: a drain of 25k changes/s leaves 10k dead rows in under half
// a second, and the check itself is one read of the statistics view.
const VACUUM_EVERY = '* * * * * *';
// webhook_batches: small, but one dead row per request (see vacuumBatchesIfNeeded).
const VACUUM_BATCHES_EVERY = '*/3 * * * * *';
// Partitions are at least a second of WAL (a 24th of max_age, at most an hour):
// once a minute drops each soon after it expires, and costs a few index probes.
const RETENTION_EVERY = '41 * * * * *';

export class Jobs {
  private tasks: ScheduledTask[] = [];
  private started = false;
  private readonly retention: RetentionJob;

  constructor(private readonly opts: JobsOptions) {
    this.retention = new RetentionJob(opts.pool, { log: opts.log, lockTimeoutMs: opts.retentionLockTimeoutMs });
  }

  /** Idempotent. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const { log, schedules = {} } = this.opts;
    const options = (name: string): TaskOptions => ({
      name,
      // A run still going when the next tick comes is skipped, not doubled.
      noOverlap: true,
      logger: {
        info: () => {},
        debug: () => {},
        warn: (m) => log.warn({ job: name }, String(m)),
        error: (m) => log.error({ job: name, err: String(m) }, 'scheduled job failed'),
      },
    });
    this.tasks.push(createTask(schedules.pruneAttempts ?? PRUNE_EVERY, () => this.runPrune(), options('prune-webhook-attempts')));
    if ((this.opts.vacuumMinDeadTuples ?? DEFAULT_VACUUM_MIN_DEAD_TUPLES) > 0) {
      this.tasks.push(createTask(schedules.vacuumBuffer ?? VACUUM_EVERY, () => this.runVacuum(), options('vacuum-buffer')));
      this.tasks.push(createTask(schedules.vacuumBatches ?? VACUUM_BATCHES_EVERY, () => this.runVacuumBatches(), options('vacuum-webhook-batches')));
    }
    this.tasks.push(createTask(schedules.retention ?? RETENTION_EVERY, () => this.runRetention(), options('log-retention')));
    const report = this.opts.reportSlotLag;
    if (report) {
      this.tasks.push(
        createTask(schedules.slotLag ?? SLOT_LAG_EVERY, async () => {
          try {
            await report();
          } catch (err) {
            log.warn({ job: 'slot-lag', err: String(err) }, 'reporting slot lag failed');
          }
        }, options('slot-lag')),
      );
    }
    for (const t of this.tasks) void t.start();
  }

  /** Idempotent. Stops the schedules; a run in progress finishes on its own. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    const tasks = this.tasks;
    this.tasks = [];
    await Promise.all(tasks.map(async (t) => {
      await t.stop();
      await t.destroy();
    }));
  }

  /** One check now (also what the schedule runs): VACUUMs the buffer if enough dead rows wait. */
  async runVacuum(): Promise<number | null> {
    try {
      const dead = await vacuumBufferIfNeeded(this.opts.pool, this.opts.vacuumMinDeadTuples ?? DEFAULT_VACUUM_MIN_DEAD_TUPLES);
      // Debug: under load this runs every second or two.
      if (dead !== null) this.opts.log.debug?.({ job: 'vacuum-buffer', dead_tuples: dead }, 'vacuumed the message buffer');
      return dead;
    } catch (err) {
      this.opts.log.warn({ job: 'vacuum-buffer', err: String(err) }, 'vacuuming the message buffer failed');
      return null;
    }
  }

  /** One check of webhook_batches alone (also what its schedule runs); quiet when it works, as it runs every few seconds. */
  async runVacuumBatches(): Promise<number | null> {
    try {
      return await vacuumBatchesIfNeeded(this.opts.pool);
    } catch (err) {
      this.opts.log.warn({ job: 'vacuum-webhook-batches', err: String(err) }, 'vacuuming webhook_batches failed');
      return null;
    }
  }

  /** One retention run now (also what the schedule runs); null when another gateway runs it or it failed. */
  async runRetention(): Promise<RetentionRun | null> {
    try {
      return await this.retention.run();
    } catch (err) {
      this.opts.log.warn({ job: 'log-retention', err: String(err) }, 'log retention failed');
      return null;
    }
  }

  /** One prune now (also what the schedule runs); returns how many attempts went. */
  async runPrune(): Promise<number> {
    try {
      const n = await pruneAttempts(this.opts.pool, this.opts.attemptRetentionMs ?? DEFAULT_ATTEMPT_RETENTION_MS);
      if (n > 0) this.opts.log.info({ job: 'prune-webhook-attempts', deleted: n }, 'pruned old webhook attempts');
      return n;
    } catch (err) {
      this.opts.log.warn({ job: 'prune-webhook-attempts', err: String(err) }, 'pruning webhook attempts failed');
      return 0;
    }
  }
}
