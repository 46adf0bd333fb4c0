// sluice.activity_samples (migrations/0026_activity_samples.sql): the
// samplers' writes, and the one read that turns every process's samples into
// the console's per-minute history.
import type { Pool } from '../db/pool.js';

/** How long samples are kept: the overview shows an hour; the rest is slack. */
const KEEP = '2 hours';

// One round trip: the old rows go in the statement that adds the new one, so
// the table stays small without a job of its own. $4 false: nothing moved,
// only the delete runs.
const WRITE = `WITH gone AS (DELETE FROM sluice.activity_samples WHERE at < now() - interval '${KEEP}')
  INSERT INTO sluice.activity_samples (process, captured, delivered)
  SELECT $1, $2::jsonb, $3::jsonb WHERE $4::boolean`;

/** Stores one sample's counts (name → how much it grew); drops samples older than 2 h. */
export async function writeSample(pool: Pool, process: string, captured: Record<string, number>, delivered: Record<string, number>): Promise<void> {
  const moved = Object.keys(captured).length > 0 || Object.keys(delivered).length > 0;
  await pool.query(WRITE, [process, JSON.stringify(captured), JSON.stringify(delivered), moved]);
}

export const MINUTES = 60;

export interface ActivityRow {
  kind: 'captured' | 'delivered';
  name: string;
  /** 0 is the oldest minute shown, MINUTES - 1 the current (partial) one. */
  bucket: number;
  n: number;
}

// Wall-clock minutes of the database's clock (every process's samples are
// stamped by it too): a sample counts in the minute it was written, so a
// bucket holds what the samples of that minute saw (each covers the 10 s
// before it). Summed over processes by name.
const READ = `
WITH win AS (SELECT now() AS now, date_trunc('minute', now()) AS minute),
s AS (
  SELECT s.*, ${MINUTES - 1} - (extract(epoch FROM w.minute - date_trunc('minute', s.at)) / 60)::int AS bucket
    FROM sluice.activity_samples s, win w
   WHERE s.at >= w.minute - interval '${MINUTES - 1} minutes' AND s.at <= w.now
)
SELECT (SELECT now FROM win) AS now, x.kind, x.name, x.bucket, x.n FROM (
  SELECT 'captured' AS kind, e.key AS name, s.bucket, sum(e.value::text::numeric)::float8 AS n
    FROM s CROSS JOIN LATERAL jsonb_each(s.captured) e GROUP BY e.key, s.bucket
  UNION ALL
  SELECT 'delivered', e.key, s.bucket, sum(e.value::text::numeric)::float8
    FROM s CROSS JOIN LATERAL jsonb_each(s.delivered) e GROUP BY e.key, s.bucket
) x
RIGHT JOIN (SELECT 1) one ON true`;

/** The last hour's activity summed per minute, with the database's clock; rows only where something moved. */
export async function readActivity(pool: Pool): Promise<{ now: Date; rows: ActivityRow[] }> {
  const { rows } = await pool.query<ActivityRow & { now: Date }>(READ);
  // The RIGHT JOIN keeps one row (its kind null) when nothing moved at all, for the clock.
  return { now: rows[0].now, rows: rows.filter((r) => r.kind !== null) };
}
