// The chunk each backfill has read and not yet seen sealed, held in memory
// between the backfill worker (which reads it) and capture (which takes it
// when its high watermark comes back through the slot, seals it, and hands it
// to the ChunkStore to copy into the log). All run in the process that
// streams the source, so the rows need not make a round trip through the
// buffer (migrations/0020_backfill_chunks_in_memory.sql, 0028).
// Nothing here needs to survive a crash: the backfill's stored progress says
// where to read again, and a watermark whose rows are gone seals nothing.

// A chunk is packed: its rows' texts concatenated into one string per field,
// with where each row ends. It waits here for its watermark's round trip
// through the slot, long enough to be promoted out of V8's young generation;
// one flat string per field is a fraction of what a string (a tree of string
// pieces, as the encoder builds them) per row and field would leave in old
// space to collect (bench/backfill-latency.ts: peak RSS).
export interface StagedChunk {
  chunk: number;
  schema: string;
  table: string;
  /** The rows' record JSON, in read order (a row's commit_idx is its index). */
  records: string;
  recordEnds: Uint32Array;
  /** The rows' record_pks: JSON arrays of the primary key values as strings. */
  pks: string;
  pkEnds: Uint32Array;
}

/** Texts packed as one string and where each ends. */
export function pack(texts: string[]): { text: string; ends: Uint32Array } {
  const ends = new Uint32Array(texts.length);
  let at = 0;
  for (let i = 0; i < texts.length; i++) ends[i] = at += texts[i].length;
  return { text: texts.join(''), ends };
}

/** Text i of a packed list. */
export function unpack(text: string, ends: Uint32Array, i: number): string {
  return text.slice(i === 0 ? 0 : ends[i - 1], ends[i]);
}

export class StagedChunks {
  private readonly held = new Map<string, StagedChunk>();
  private waiters: Array<() => void> = [];

  /** Capture wrote a batch with watermarks: a worker waiting for its chunk looks again. */
  written(): void {
    // A copy: each waiter removes itself from the list it joined.
    const waiting = [...this.waiters];
    this.waiters = [];
    for (const w of waiting) w();
  }

  /** Resolves at the next written(), or after `ms` (a chunk can also end by cancel or replacement). */
  nextWrite(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const waiters = this.waiters;
      function done() {
        clearTimeout(t);
        const at = waiters.indexOf(done);
        if (at >= 0) waiters.splice(at, 1);
        resolve();
      }
      waiters.push(done);
    });
  }

  /** Replaces what the backfill had staged before. */
  put(backfillId: string, chunk: StagedChunk): void {
    this.held.set(backfillId, chunk);
  }

  /** The rows of that chunk, if it is the one held; kept until replaced or dropped (a failed capture write is retried). */
  get(backfillId: string, chunk: number): StagedChunk | undefined {
    const c = this.held.get(backfillId);
    return c?.chunk === chunk ? c : undefined;
  }

  drop(backfillId: string): void {
    this.held.delete(backfillId);
  }

  /** Drops every backfill's chunk but those in `keep` (ended, cancelled, gone). */
  retain(keep: ReadonlySet<string>): void {
    for (const id of this.held.keys()) if (!keep.has(id)) this.held.delete(id);
  }
}
