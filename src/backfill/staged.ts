// The chunk each backfill has read and not yet seen stored, held in memory
// between the backfill worker (which reads it) and capture (which copies it
// into the log when its high watermark comes back through the slot). Both run
// in the process that streams the source, so the rows need not make a round
// trip through the buffer (migrations/0020_backfill_chunks_in_memory.sql).
// Nothing here needs to survive a crash: the backfill's stored progress says
// where to read again, and a watermark whose rows are gone stores nothing.

export interface StagedChunk {
  chunk: number;
  schema: string;
  table: string;
  /** Per row, in read order (the row's commit_idx is its index). */
  groupKeys: string[];
  records: string[];
  /** JSON arrays of the primary key values as strings. */
  pks: string[];
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

  /** The rows of that chunk, if it is the one held; kept until replaced or dropped (a failed write is retried). */
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
