// A backfill chunk's high watermark, written through the slot by the backfill
// worker with pg_logical_emit_message(true, 'sluice:backfill', '{"id":"…","chunk":N}').
// Capture seals the chunk at the commit position of the transaction that
// carries it, and its staged rows are stored there once that has committed
// (migrations/0019_backfills.sql, 0028_backfill_seal.sql).

export const BACKFILL_MARK_PREFIX = 'sluice:backfill';

export interface BackfillMarkContent {
  /** sluice.backfills.id, as text (bigint). */
  id: string;
  chunk: number;
}

export function backfillMarkContent(id: string, chunk: number): string {
  return JSON.stringify({ id, chunk });
}

/** The mark's content, or null when it is not one (a message with our prefix written by hand). */
export function parseBackfillMark(content: Uint8Array): BackfillMarkContent | null {
  try {
    const v = JSON.parse(Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8'));
    if (v && typeof v.id === 'string' && /^[0-9]{1,18}$/.test(v.id) && Number.isInteger(v.chunk) && v.chunk >= 0) {
      return { id: v.id, chunk: v.chunk };
    }
  } catch {
    // not JSON: not a mark
  }
  return null;
}
