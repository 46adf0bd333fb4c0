// The rows of one buffer write, as capture collects them. A small batch keeps
// its rows as objects (they go in with one INSERT statement); once it grows
// past SMALL_BATCH every row is encoded for COPY at once and dropped. Rows
// wait in memory for a write slot (up to three batches of max_batch_changes),
// and as objects each payload (a string of many joined pieces) survived
// several young-generation collections and was copied by each: a capture
// profile showed a fifth of the Node process in the garbage collector. Encoded,
// a batch is a few large buffers outside the JS heap.
import { BinaryCopy } from './copy-binary.js';
import type { LogRow } from './writer.js';

/** Up to this many rows go in as one INSERT (one round trip); more by COPY. */
export const SMALL_BATCH = 200;

export class LogRows {
  private small: LogRow[] | null = [];
  private copy: BinaryCopy | null = null;
  private data: Buffer[] | null = null;
  private count = 0;
  private chars = 0;
  private firstLsn = 0n;
  private lastLsn = 0n;
  /** The rows' wake lists: one array per table, so few distinct ones. */
  private readonly wakes = new Set<readonly string[]>();

  constructor(private readonly sourceNo: number) {}

  static of(sourceNo: number, rows: readonly LogRow[]): LogRows {
    const out = new LogRows(sourceNo);
    for (const r of rows) out.push(r);
    return out;
  }

  get length(): number {
    return this.count;
  }

  /** The payloads' total length (UTF-16 units): what the batch holds in memory, about. */
  get payloadChars(): number {
    return this.chars;
  }

  /** Adds a row; rows come in commit order. */
  push(r: LogRow): void {
    if (this.data) throw new Error('rows added to a batch already written');
    if (this.count === 0) this.firstLsn = r.commitLsn;
    this.lastLsn = r.commitLsn;
    this.count++;
    this.chars += r.payload.length;
    this.wakes.add(r.wake);
    if (this.small) {
      this.small.push(r);
      if (this.small.length <= SMALL_BATCH) return;
      this.copy = new BinaryCopy();
      for (const s of this.small) this.encode(s);
      this.small = null;
      return;
    }
    this.encode(r);
  }

  /** The rows as objects while the batch is small, else null (then `copyData`). */
  rows(): readonly LogRow[] | null {
    return this.small;
  }

  /** Commit LSNs of the first and last row; null when empty. */
  range(): [bigint, bigint] | null {
    return this.count ? [this.firstLsn, this.lastLsn] : null;
  }

  /** Consumers to wake once the rows are stored. */
  wakeList(): string[] {
    const ids = new Set<string>();
    for (const l of this.wakes) for (const id of l) ids.add(id);
    return [...ids];
  }

  /** The rows as COPY binary data (for `COPY sluice.log (…9 columns…) FROM STDIN (FORMAT binary)`); the same buffers on every call. */
  copyData(): Buffer[] {
    if (!this.data) {
      if (!this.copy) {
        this.copy = new BinaryCopy();
        for (const s of this.small ?? []) this.encode(s);
      }
      this.data = this.copy.end();
      this.copy = null;
    }
    return this.data;
  }

  private encode(r: LogRow): void {
    const c = this.copy!;
    c.row(9, r.schema.length + r.table.length + r.action.length + (r.groupKey?.length ?? 0) + r.payload.length);
    c.int4(this.sourceNo);
    c.int8(r.commitLsn);
    c.int4(r.commitIdx);
    c.text(r.schema);
    c.text(r.table);
    c.text(r.action);
    c.nullable(r.groupKey);
    c.timestamptz(r.committedAt);
    c.text(r.payload);
  }
}
