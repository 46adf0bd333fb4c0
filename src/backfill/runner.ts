// Runs the backfills of one source's consumers, chunk by chunk, in the process
// that captures the source (only it can see a chunk's high watermark come
// back through the slot). Each chunk:
//   low watermark → read (keyset, LIMIT) → stage (rows in memory, progress in
//   the buffer) → high watermark → wait until capture has sealed it
//   (migrations/0019_backfills.sql, 0020 and 0028 say why the rows are then
//   never stale); its rows are stored by the ChunkStore while the next chunk
//   is read and sealed. At most one chunk per backfill is being stored while
//   the next is read: two chunks in memory.
// Several backfills take turns, a chunk each. A backfill throttles itself
// (max_rows_per_second) and waits while its consumer has more than
// max_backlog changes not yet taken in. Everything it needs to go on is in
// sluice.backfills: after a restart it reads again from the last chunk stored.
import type { Pool } from '../db/pool.js';
import { TypeCatalog } from '../capture/types-catalog.js';
import { encodeValue, unknownType, type TypeInfo } from '../capture/values.js';
import * as src from './source-queries.js';
import * as q from './queries.js';
import { pack, type StagedChunks } from './staged.js';
import type { ChunkStore } from './chunk-store.js';

export interface RunnerLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface BackfillRunnerDeps {
  sourceName: string;
  bufferPool: Pool;
  sourcePool: Pool;
  log: RunnerLog;
  /** Shared with capture, which copies a chunk into the log when its watermark comes back. */
  staged: StagedChunks;
  /** Stores the chunks capture seals (its pending() tells a seal in progress from one left by an ended process). */
  chunkStore?: ChunkStore;
  /** Capture is streaming the slot (a watermark written now will come back). */
  streaming(): boolean;
}

const POLL_MS = 500;
/** How long a chunk may wait for its watermark before it is read again. */
const SEAL_TIMEOUT_MS = 30_000;
/**
 * How long to wait for a transaction in progress at the low watermark. One
 * still running after that was not committing at the mark (a commit becomes
 * visible within its WAL flush), so its changes come after the mark; it is not
 * waited for again.
 */
const IN_PROGRESS_WAIT_MS = 5_000;
/** How often a backfill counts its consumer's backlog (the count reads up to max_backlog index entries). */
const BACKLOG_EVERY_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How often a chunk's seal, or the stores under way, are checked when no write wakes the worker (a cancel, a replaced chunk). */
const POLL_WRITES_MS = 50;
const EMPTY = { ...packed([], []), lastKey: [] as string[] };

export class BackfillRunner {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private readonly types: TypeCatalog;
  /** Transactions found running for longer than IN_PROGRESS_WAIT_MS (not waited for again). */
  private longRunning = new Set<string>();
  /** Per backfill: the low watermark of its last chunk (the next chunk's window starts there). */
  private readonly lastLow = new Map<string, bigint>();
  /**
   * Per backfill: when its consumer's backlog was last counted under its
   * limit, that count, and the rows stored since (the backlog is at most
   * their sum: consumption only lowers it).
   */
  private readonly backlogOkAt = new Map<string, { at: number; count: number; since: number }>();
  /**
   * Per backfill: the key the next chunk is read after, the last key of the
   * chunk sealed last, ahead of the progress stored while that chunk is being
   * stored. Absent: read on from the progress stored.
   */
  private readonly nextAfter = new Map<string, { key: string[] | null }>();
  /** Per backfill: not before this time (its rate limit). */
  private readonly notBefore = new Map<string, number>();

  constructor(private readonly deps: BackfillRunnerDeps) {
    this.types = new TypeCatalog((sql, params) => deps.sourcePool.query(sql, params));
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Looks for work now (a backfill was created). */
  poke(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop?.catch(() => {});
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let worked = false;
      let pause = POLL_MS;
      if (this.deps.streaming()) {
        try {
          const list = await q.runningBackfills(this.deps.bufferPool, this.deps.sourceName);
          for (const b of list) {
            if (this.stopped || !this.deps.streaming()) break;
            const wait = (this.notBefore.get(b.id) ?? 0) - Date.now();
            if (wait > 0) {
              pause = Math.min(pause, wait);
              continue;
            }
            if (await this.chunk(b)) worked = true;
          }
          for (const m of [this.notBefore, this.backlogOkAt, this.lastLow, this.nextAfter]) for (const id of m.keys()) if (!list.some((b) => b.id === id)) m.delete(id);
          this.deps.staged.retain(new Set(list.map((b) => b.id)));
        } catch (err) {
          // The source or the buffer may be restarting: try again shortly.
          this.deps.log.warn({ source: this.deps.sourceName, err: (err as Error).message }, 'backfill step failed; retrying');
        }
      }
      if (!worked && !this.stopped) await this.pause(pause);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  /** One chunk of one backfill; false when it had to wait (backlog, or its chunks being stored). */
  private async chunk(b: q.BackfillRow): Promise<boolean> {
    const started = Date.now();
    const store = this.deps.chunkStore;
    // Room for the next chunk: its predecessor's store may still run, not the one before.
    if (!(await this.storesAtMost(b.id, 1))) return false;
    // A chunk sealed and not stored (its store gave up, or the chunk before it
    // was not stored): read on from the progress stored, which is the chunk's
    // predecessor's end. So does a backfill this process has not run before.
    if (store?.takeLost(b.id)) this.readFromStored(b.id);
    if (!this.nextAfter.has(b.id)) {
      // Seals not being stored here were left by a process that ended (or a
      // store that gave up): their rows are gone, and they hold the consumer's
      // admission at their watermark (migrations/0028), which the backlog wait
      // below must not depend on.
      await q.unsealChunks(this.deps.bufferPool, b.id, store?.pending(b.id) ?? []);
    }
    const backlog = this.backlogOkAt.get(b.id);
    // Counted again once a second, or sooner once the rows stored since could
    // have reached the limit: it is overshot by one chunk at most.
    if (b.max_backlog > 0 && (!backlog || started - backlog.at >= BACKLOG_EVERY_MS || backlog.count + backlog.since >= b.max_backlog)) {
      const count = await q.consumerBacklog(this.deps.bufferPool, b.consumer_id, b.max_backlog);
      if (count >= b.max_backlog) {
        this.backlogOkAt.delete(b.id);
        this.notBefore.set(b.id, Date.now() + BACKLOG_EVERY_MS);
        return false;
      }
      this.backlogOkAt.set(b.id, { at: started, count, since: 0 });
    }
    const shape = await src.tableShape(this.deps.sourcePool, b.schema_name, b.table_name);
    const types = new Map(shape?.columns.map((c) => [c.name, c.type]) ?? []);
    if (!shape || shape.primaryKey.length === 0 || b.key_columns.some((k) => !types.has(k))) {
      const error = !shape ? 'the table no longer exists' : 'the table has no primary key or lost a key column';
      await q.failBackfill(this.deps.bufferPool, b.id, error);
      this.deps.log.warn({ backfill: b.id, table: `${b.schema_name}.${b.table_name}`, error }, 'backfill failed');
      return true;
    }
    await this.types.ensure(shape.columns.map((c) => c.typeOid));

    const after = this.nextAfter.has(b.id) ? this.nextAfter.get(b.id)!.key : b.last_key;
    const read = await this.read(b, shape, after);
    if (read.rows === 0) {
      // Done once every chunk sealed is stored; one that was not is read again.
      if (!(await this.storesAtMost(b.id, 0))) return false;
      if (store?.takeLost(b.id)) {
        this.readFromStored(b.id);
        return true;
      }
      await q.finishBackfill(this.deps.bufferPool, b.id);
      this.deps.log.info({ backfill: b.id, table: `${b.schema_name}.${b.table_name}`, rows: b.rows_read }, 'backfill done');
      return true;
    }
    const { low, staged } = read;
    // The window of changes that replace a row read starts at the previous
    // chunk's low watermark, not this one's: a margin of one chunk for a
    // transaction that committed before the mark yet was not visible to the
    // read, beyond what the wait in read() catches. Leaving out a row that a
    // change since then carries is always safe: that change is delivered, and
    // holds the row as it is after it.
    // After a restart: the chunk staged and not stored, else the last stored.
    const stored = b.chunk_low_lsn ?? b.last_low_lsn;
    const prev = this.lastLow.get(b.id) ?? (stored === null ? undefined : BigInt(stored));
    const lowLsn = prev !== undefined && prev < low.lsn ? prev : low.lsn;
    this.lastLow.set(b.id, low.lsn);
    const final = read.rows < b.chunk_size;
    const no = await q.stageChunk(this.deps.bufferPool, b.id, { lowLsn, afterKey: after, lastKey: staged.lastKey, rows: read.rows, final });
    if (no === null) return true; // cancelled meanwhile
    this.deps.staged.put(b.id, { chunk: no, schema: b.schema_name, table: b.table_name, ...staged });
    let sealed = false;
    try {
      await src.highMark(this.deps.sourcePool, b.id, no);
      const deadline = Date.now() + SEAL_TIMEOUT_MS;
      for (;;) {
        // Listening before looking: a write that ends in between still wakes us.
        const written = this.deps.staged.nextWrite(POLL_WRITES_MS);
        const at = await q.chunkSealed(this.deps.bufferPool, b.id, no);
        if (at !== 'waiting') {
          sealed = at === 'sealed';
          break;
        }
        if (this.stopped || Date.now() > deadline) break;
        await written;
      }
    } finally {
      // Sealed (capture holds the rows for their store), replaced, or to be read again.
      this.deps.staged.drop(b.id);
    }
    if (sealed) this.nextAfter.set(b.id, { key: staged.lastKey });
    else this.readFromStored(b.id);
    const counted = this.backlogOkAt.get(b.id);
    if (counted) counted.since += read.rows;
    if (b.max_rows_per_second) this.notBefore.set(b.id, started + (read.rows * 1000) / b.max_rows_per_second);
    return true;
  }

  /** The next chunk of the backfill is read after its stored progress, with the window that progress starts. */
  private readFromStored(backfillId: string): void {
    this.nextAfter.delete(backfillId);
    this.lastLow.delete(backfillId);
  }

  /** Waits until at most `max` chunks of the backfill are being stored; false when stopped first. */
  private async storesAtMost(backfillId: string, max: number): Promise<boolean> {
    const store = this.deps.chunkStore;
    if (!store) return true;
    while (store.pending(backfillId).length > max) {
      if (this.stopped) return false;
      await this.deps.staged.nextWrite(POLL_WRITES_MS);
    }
    return !this.stopped;
  }

  /** Low watermark, the wait for transactions committing at it, then the chunk after `after`, encoded. */
  private async read(b: q.BackfillRow, shape: src.TableShape, after: string[] | null) {
    const types = new Map(shape.columns.map((c) => [c.name, c.type]));
    const low = await src.lowMark(this.deps.sourcePool);
    await this.awaitCommitting(low, shape.oid);
    const rows = await src.readChunk(this.deps.sourcePool, {
      schema: b.schema_name,
      table: b.table_name,
      columns: shape.columns,
      key: b.key_columns.map((k) => ({ name: k, type: types.get(k)! })),
      after,
      start: b.start_column ? { column: b.start_column, type: types.get(b.start_column)!, from: b.start_from! } : null,
      limit: b.chunk_size,
    });
    return { low, rows: rows.length, staged: rows.length > 0 ? this.encode(b, shape, rows) : EMPTY };
  }

  /**
   * Waits until every transaction in progress at the low watermark is visible
   * to a new snapshot. The one case it matters: a transaction whose commit is
   * in the WAL before the mark but not yet visible (its WAL flush, or a
   * synchronous standby, not done). The chunk read after the mark would miss
   * its changes, and they would not count as "between the marks" either: the
   * row read would be stale. Only transactions that hold a lock on the table
   * count (others changed nothing of it); long-running ones are not waited for.
   */
  private async awaitCommitting(mark: src.LowMark, tableOid: number): Promise<void> {
    const end = Date.now() + IN_PROGRESS_WAIT_MS;
    let pause = 1;
    for (;;) {
      const running = (await src.stillRunning(this.deps.sourcePool, mark, tableOid)).filter((x) => !this.longRunning.has(x));
      if (running.length === 0) return;
      if (Date.now() >= end) {
        for (const x of running) this.longRunning.add(x);
        // Bounded: xids only grow, old ones are never seen again.
        if (this.longRunning.size > 10_000) this.longRunning = new Set(running);
        return;
      }
      await sleep(pause);
      pause = Math.min(pause * 2, 10);
    }
  }

  /** Record JSON and record_pks of each row, as capture makes them for a change, packed (staged.ts says why). */
  private encode(b: q.BackfillRow, shape: src.TableShape, rows: (string | null)[][]) {
    const lookup = (oid: number) => this.types.get(oid);
    const cols = shape.columns.map((c) => ({
      keyJson: JSON.stringify(c.name) + ':',
      type: (this.types.get(c.typeOid) ?? unknownType(c.typeOid)) as TypeInfo,
    }));
    const index = new Map(shape.columns.map((c, i) => [c.name, i]));
    const pkAt = shape.primaryKey.map((k) => index.get(k)!);
    const keyAt = b.key_columns.map((k) => index.get(k)!);
    const records: string[] = [];
    const pks: string[] = [];
    for (const row of rows) {
      let s = '{';
      for (let i = 0; i < cols.length; i++) s += (i ? ',' : '') + cols[i].keyJson + encodeValue(row[i], cols[i].type, lookup);
      records.push(s + '}');
      pks.push(JSON.stringify(pkAt.map((i) => row[i] ?? '')));
    }
    const last = rows[rows.length - 1];
    return { ...packed(records, pks), lastKey: keyAt.map((i) => last[i] ?? '') };
  }
}

function packed(records: string[], pks: string[]) {
  const r = pack(records);
  const p = pack(pks);
  return { records: r.text, recordEnds: r.ends, pks: p.text, pkEnds: p.ends };
}
