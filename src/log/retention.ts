// The retention job: per stored source, drops whole partitions of sluice.log
// that retention wants gone and nothing needs any more (see retention-plan.ts),
// and the partitions of deleted sources. One gateway at a time (an advisory
// lock); the others skip their turn.
//
// A drop, with low locking:
//   1. the source's horizon moves to the partition's upper bound (rewinds and
//      start positions below it are refused from now on);
//   2. ALTER TABLE sluice.log DETACH PARTITION … CONCURRENTLY: SHARE UPDATE
//      EXCLUSIVE on the log, which claims, capture's writes and readers never
//      wait for; it then waits for the queries that may still see the
//      partition. New queries stop seeing it at once;
//   3. DROP TABLE of the detached table and its catalogue row, in one
//      transaction: no lock on the log at all.
// Every lock wait is bounded by lock_timeout: behind a long reader the run
// gives up and a later run takes over (a detach left pending is finished with
// DETACH … FINALIZE; Postgres allows one pending detach per table, so the run
// stops there). No row is deleted, so nothing needs a VACUUM afterwards.
import type { Pool, PoolClient } from '../db/pool.js';
import type { Log } from '../push/worker.js';
import { retentionOf } from './retention-defaults.js';
import { heldBack, planRetention, safePoint, type HeldBack } from './retention-plan.js';
import * as q from './retention-queries.js';

// Arbitrary constant, beside the vacuum jobs' (src/jobs/vacuum.ts).
const RETENTION_LOCK_KEY = 7_346_221_006;
export const DEFAULT_RETENTION_LOCK_TIMEOUT_MS = 1000;
/** A source's held-back warning is repeated at most this often per gateway. */
const WARN_EVERY_MS = 15 * 60 * 1000;

export interface RetentionOptions {
  log: Log;
  /** How long a lock may be waited for before the run gives up until next time. */
  lockTimeoutMs?: number;
  now?: () => Date;
}

export interface SourceRetentionResult {
  source: string;
  dropped: number;
  droppedBytes: number;
  held: HeldBack | null;
}

export interface RetentionRun {
  sources: SourceRetentionResult[];
  /** Partitions of deleted sources dropped, and interrupted drops finished. */
  cleanedUp: number;
  /** The run stopped early: a lock was not granted in time (a later run goes on). */
  interrupted: boolean;
}

class LockNotGranted extends Error {}

export class RetentionJob {
  private readonly warned = new Map<string, number>();

  constructor(private readonly pool: Pool, private readonly opts: RetentionOptions) {}

  /** One run; null when another gateway is running it. */
  async run(): Promise<RetentionRun | null> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [RETENTION_LOCK_KEY]);
      if (!rows[0].ok) return null;
      try {
        await client.query(`SET lock_timeout = ${Math.max(1, Math.round(this.opts.lockTimeoutMs ?? DEFAULT_RETENTION_LOCK_TIMEOUT_MS))}`);
        return await this.runLocked(client);
      } finally {
        await client.query('RESET lock_timeout');
        await client.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK_KEY]);
      }
    } catch (err) {
      broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  private async runLocked(client: PoolClient): Promise<RetentionRun> {
    const out: RetentionRun = { sources: [], cleanedUp: 0, interrupted: false };
    try {
      out.cleanedUp = await this.cleanUp(client);
      for (const source of await q.storedSources(client)) out.sources.push(await this.retain(client, source));
    } catch (err) {
      if (!(err instanceof LockNotGranted)) throw err;
      out.interrupted = true;
      this.opts.log.info({ job: 'log-retention', reason: err.message }, 'log retention stopped early; the next run goes on');
    }
    return out;
  }

  /**
   * Interrupted drops (detach pending, detached but not dropped, catalogue row
   * of a table gone) and every partition of a deleted source.
   */
  private async cleanUp(client: PoolClient): Promise<number> {
    let done = 0;
    for (const left of await q.leftOvers(client)) {
      if (left.table === 'attached') await this.ddl(client, q.detachConcurrently(left.relname));
      if (left.table === 'pending') await this.ddl(client, q.detachFinalize(left.relname));
      if (left.source_name !== null && !(await this.stillUnused(client, left.source_name, left))) continue;
      await this.dropDetached(client, left.relname);
      done++;
    }
    await q.deleteOrphanHorizons(client);
    return done;
  }

  private async retain(client: PoolClient, source: q.StoredSource): Promise<SourceRetentionResult> {
    const now = this.opts.now?.() ?? new Date();
    const retention = retentionOf({ retention: source.retention });
    const bounds = await q.sourceBounds(client, source.name);
    let plan = planRetention(await q.partitionFacts(client, source.log_no), bounds, retention, now);
    const result: SourceRetentionResult = { source: source.name, dropped: 0, droppedBytes: 0, held: null };
    for (const p of plan.drop) {
      // Again, just before: a consumer may have been created or rewound since.
      if (p.hi > safePoint(await q.sourceBounds(client, source.name))) break;
      await q.advanceHorizon(client, source.log_no, p.hi);
      await this.ddl(client, q.detachConcurrently(p.relname));
      if (!(await this.stillUnused(client, source.name, { relname: p.relname, source_no: source.log_no, lo: p.lo, hi: p.hi }))) break;
      await this.dropDetached(client, p.relname);
      result.dropped++;
      result.droppedBytes += p.bytes;
    }
    // A stream's idempotency keys live as long as the messages they stored.
    if (result.dropped > 0) await q.forgetStreamKeys(client, source.log_no);
    if (result.dropped > 0) {
      this.opts.log.info({ job: 'log-retention', source: source.name, partitions: result.dropped, bytes: result.droppedBytes }, 'dropped old log partitions');
    }
    // Counted after the drops (a partition about to go is not worth a pass),
    // and before what is held is reported, so that its figures are exact.
    const counted = bounds.confirmed === null ? 0 : await q.countSealedPartitions(client, source.log_no, bounds.confirmed);
    if (counted > 0 && plan.held.length > 0) plan = planRetention(await q.partitionFacts(client, source.log_no), bounds, retention, now);
    result.held = heldBack(plan, retention, now, source.name);
    this.warnIfHeld(source.name, result.held, now);
    return result;
  }

  /**
   * A detached partition is dropped only if no consumer of its source holds a
   * message in it. One can only if a rewind landed in it between the check
   * before the detach and the detach: then it is attached again (its changes
   * stay readable) and left for a later run.
   */
  private async stillUnused(client: PoolClient, sourceName: string, p: Pick<q.LeftOver, 'relname' | 'source_no' | 'lo' | 'hi'>): Promise<boolean> {
    const users = await q.usersOfRange(client, sourceName, p.lo, p.hi);
    if (users.length === 0) return true;
    await this.ddl(client, q.reattach(p.relname, p.source_no, p.lo, p.hi));
    this.opts.log.warn({ job: 'log-retention', source: sourceName, partition: p.relname, consumers: users }, 'a consumer rewound into a partition being dropped: kept it');
    return false;
  }

  private async dropDetached(client: PoolClient, relname: string): Promise<void> {
    await client.query('BEGIN');
    try {
      await this.ddl(client, q.dropTable(relname));
      await q.forgetPartition(client, relname);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  /** A lock not granted within lock_timeout stops the run (not an error: the next run goes on). */
  private async ddl(client: PoolClient, sql: string): Promise<void> {
    try {
      await client.query(sql);
    } catch (err) {
      if ((err as { code?: string }).code === '55P03') throw new LockNotGranted(`${sql}: ${(err as Error).message}`);
      throw err;
    }
  }

  private warnIfHeld(source: string, held: HeldBack | null, now: Date): void {
    if (!held?.warning) {
      this.warned.delete(source);
      return;
    }
    const last = this.warned.get(source);
    if (last !== undefined && now.getTime() - last < WARN_EVERY_MS) return;
    this.warned.set(source, now.getTime());
    this.opts.log.warn(
      {
        job: 'log-retention',
        source,
        consumers: held.consumers.map((c) => c.name),
        held_changes: held.changes,
        held_bytes: held.bytes,
        oldest_held_commit_at: held.oldest_commit_at,
      },
      held.warning,
    );
  }
}
