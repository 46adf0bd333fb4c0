// Claim faults: a consumer whose claims fail is shown as failing, with the
// reason, not as active (migrations/0008_consumer_faults.sql). Pull receives
// and webhook workers report each claim's outcome to a ClaimFaults; it writes
// only when something changes, so healthy claims cost no statement.
import type { Pool } from '../db/pool.js';

type Db = Pick<Pool, 'query'>;

export interface ConsumerFault {
  reason: string;
  since: Date;
}

const RECORD = `
  INSERT INTO sluice.consumer_faults AS f (consumer_id, reason, instance_id)
  SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM sluice.consumers WHERE id = $1)
  ON CONFLICT (consumer_id) DO UPDATE
    SET reason = EXCLUDED.reason, instance_id = EXCLUDED.instance_id, updated_at = now(),
        since = CASE WHEN f.reason = EXCLUDED.reason THEN f.since ELSE now() END`;

export async function recordFault(db: Db, consumerId: string, reason: string, instanceId: string): Promise<void> {
  await db.query(RECORD, [consumerId, reason, instanceId]);
}

export async function clearFault(db: Db, consumerId: string): Promise<void> {
  await db.query('DELETE FROM sluice.consumer_faults WHERE consumer_id = $1', [consumerId]);
}

export async function listFaults(db: Db): Promise<Map<string, ConsumerFault>> {
  const { rows } = await db.query<ConsumerFault & { consumer_id: string }>('SELECT consumer_id, reason, since FROM sluice.consumer_faults');
  return new Map(rows.map((r) => [r.consumer_id, { reason: r.reason, since: r.since }]));
}

/** A claim's error as an operator reads it: what Postgres said and its SQLSTATE (claims carry ids and numbers only). */
export function claimFailureReason(err: unknown): string {
  const e = err as { message?: string; code?: string };
  const code = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? ` (SQLSTATE ${e.code})` : '';
  return `its messages cannot be claimed: ${e.message ?? String(err)}${code}`;
}

// While claims keep failing the row is written again this often, so that a
// success in another process (which deletes it) cannot hide a fault for long.
const REWRITE_MS = 10_000;

/**
 * One process's view of its claims. Unknown consumers count as possibly
 * faulted, so the first success after a start deletes whatever an earlier
 * process left (one statement per consumer and start).
 */
export class ClaimFaults {
  // consumer id → 'clear', or the reason and when this process last wrote it
  private readonly seen = new Map<string, 'clear' | { reason: string; at: number }>();

  constructor(
    private readonly pool: Db,
    private readonly instanceId: string,
  ) {}

  succeeded(consumerId: string): void {
    if (this.seen.get(consumerId) === 'clear') return;
    this.seen.set(consumerId, 'clear');
    // In the background; a failure only leaves the row to the next success.
    clearFault(this.pool, consumerId).catch(() => this.seen.delete(consumerId));
  }

  failed(consumerId: string, err: unknown): void {
    const reason = claimFailureReason(err);
    const last = this.seen.get(consumerId);
    if (last !== undefined && last !== 'clear' && last.reason === reason && Date.now() - last.at < REWRITE_MS) return;
    this.seen.set(consumerId, { reason, at: Date.now() });
    // The database may be what fails; then nothing can be recorded anyway.
    recordFault(this.pool, consumerId, reason, this.instanceId).catch(() => this.seen.delete(consumerId));
  }
}
