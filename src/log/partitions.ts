// Log partitions ahead of the writers: capture's and the publishers' rows go
// into partitions of sluice.log by (log number, position), made by
// sluice.log_cover (migrations/0010_log.sql) when a write reaches past the
// newest one. The newest bound is remembered per log, so a write costs a round
// trip here only when it crosses it.

/** Per log number: the upper bound of its newest partition, as last seen. */
const covered = new Map<number, bigint>();
const COVER = 'SELECT sluice.log_cover($1, $2::bigint, $3::bigint, $4)::text AS hi';
/** Postgres: "no partition of relation … found for row". */
const NO_PARTITION = '23514';

type Db = { query: (sql: string, params?: unknown[]) => Promise<{ rows: any[] }> };

/** Partitions cover positions min..max of the log; `seconds`: how much time a new partition should span. */
export async function coverLog(db: Db, logNo: number, min: bigint, max: bigint, seconds: number): Promise<void> {
  const hi = covered.get(logNo);
  if (hi !== undefined && max < hi) return;
  const { rows } = await db.query(COVER, [logNo, min.toString(), max.toString(), seconds]);
  covered.set(logNo, BigInt(rows[0].hi));
}

/** A partition this process thought present was dropped (retention): learn again. */
export function forgetCover(logNo: number): void {
  covered.delete(logNo);
}

export function isNoPartition(err: unknown): boolean {
  return (err as { code?: string }).code === NO_PARTITION;
}
