// A backfill as the API, `sluice status` and `sluice backfill` show it: its
// progress, rate and time left.
import type { BackfillRow } from './queries.js';

export interface BackfillView {
  id: string;
  table: string;
  state: BackfillRow['state'];
  start: { column: string; from: string } | null;
  chunk_size: number;
  max_rows_per_second: number | null;
  max_backlog: number;
  rows_read: number;
  rows_sent: number;
  rows_estimate: number | null;
  rate_per_second: number | null;
  eta_seconds: number | null;
  error: string | null;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

export function presentBackfill(b: BackfillRow, now = Date.now()): BackfillView {
  const read = Number(b.rows_read);
  const estimate = b.rows_estimate === null ? null : Number(b.rows_estimate);
  const end = b.finished_at ? b.finished_at.getTime() : b.state === 'running' ? now : b.updated_at.getTime();
  const seconds = (end - b.created_at.getTime()) / 1000;
  const rate = read > 0 && seconds > 0 ? Math.round(read / seconds) : null;
  const eta =
    b.state !== 'running' ? 0 : rate && estimate !== null ? Math.max(0, Math.round((estimate - read) / rate)) : null;
  return {
    id: b.id,
    table: `${b.schema_name}.${b.table_name}`,
    state: b.state,
    start: b.start_column ? { column: b.start_column, from: b.start_from ?? '' } : null,
    chunk_size: b.chunk_size,
    max_rows_per_second: b.max_rows_per_second,
    max_backlog: b.max_backlog,
    rows_read: read,
    rows_sent: Number(b.rows_sent),
    // reltuples is an estimate: never below what was read already.
    rows_estimate: estimate === null ? null : Math.max(estimate, read),
    rate_per_second: rate,
    eta_seconds: eta,
    error: b.error,
    created_at: b.created_at.toISOString(),
    updated_at: b.updated_at.toISOString(),
    finished_at: b.finished_at ? b.finished_at.toISOString() : null,
  };
}
