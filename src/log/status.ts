// A source's retained log as its status shows it (GET /api/sources/{name},
// `sluice status`): what is kept, and what retention cannot drop and why.
// Read-only, a few index probes per partition; the retention job decides the
// same way (retention-plan.ts), so status says what the next run will do.
import { bigIntToLsn } from '../capture/lsn.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { retentionOf } from './retention-defaults.js';
import { heldBack, planRetention, type HeldBack } from './retention-plan.js';
import { partitionFacts, sourceBounds, storedSources } from './retention-queries.js';

export interface LogStatus {
  partitions: number;
  /** Counted exactly for sealed partitions, estimated for the one capture writes in. */
  retained_changes: number;
  retained_bytes: number;
  oldest_commit_at: string | null;
  /** Every change below this LSN was dropped by retention; null: none yet. */
  dropped_before_lsn: string | null;
  /** What retention wants to drop but cannot, and who holds it; null: nothing. */
  held_back: HeldBack | null;
}

/** undefined when no such source is stored. */
export async function logStatus(db: Pool | PoolClient, sourceName: string, now = new Date()): Promise<LogStatus | undefined> {
  const [source] = await storedSources(db, sourceName);
  if (!source) return undefined;
  const parts = await partitionFacts(db, source.log_no);
  const retention = retentionOf({ retention: source.retention });
  const plan = planRetention(parts, await sourceBounds(db, source.name), retention, now);
  return {
    partitions: parts.length,
    retained_changes: parts.reduce((sum, p) => sum + p.changes, 0),
    retained_bytes: parts.reduce((sum, p) => sum + p.bytes, 0),
    oldest_commit_at: parts.find((p) => p.oldestAt !== null)?.oldestAt?.toISOString() ?? null,
    dropped_before_lsn: source.dropped_lsn === null ? null : bigIntToLsn(source.dropped_lsn),
    held_back: heldBack(plan, retention, now, source.name),
  };
}
