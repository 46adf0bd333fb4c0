// One replication connection's worth of state: decodes events into rows, writes
// them to the buffer in batches, and confirms to Postgres only what the buffer
// has committed.
//
// Batching: rows accumulate while messages keep arriving; a write starts when
// the replication queue goes idle (setImmediate runs after the messages already
// received are handled) or when max_batch_changes is reached, unless both write
// slots are busy: then everything that arrives meanwhile goes into the next one.
// Two writes may be in progress on two connections: the second sends its rows
// while the first commits (its WAL flush and round trips), but commits only
// after it, so rows become visible, and the position moves, strictly in order.
// The handler waits when the next batch is full and both slots are busy, which
// pauses the replication socket (flow control) and bounds memory to about
// three batches, however large a transaction.
import type { Pool } from '../db/pool.js';
import { writeBatch, type BackfillMark } from '../buffer/writer.js';
import { LogRows } from '../buffer/log-rows.js';
import { BACKFILL_MARK_PREFIX, parseBackfillMark } from './backfill-mark.js';
import { isoFromMicros } from './commit-time.js';
import { CONFIG_MARKER_PREFIX } from './config-marker.js';
import type { StagedChunks } from '../backfill/staged.js';
import type { ChunkStore } from '../backfill/chunk-store.js';
import type { ChangeDecoder } from './decoder.js';
import type { ReplicationEvent } from './replication.js';
import { outboxStream, parseOutbox, type OutboxMessage } from './outbox.js';
import { outboxLogRow } from '../streams/outbox.js';

/**
 * Buffer writes in progress at once. Two let one batch's rows travel while the
 * previous batch commits; more would only queue behind the same commits.
 */
const WRITE_SLOTS = 2;

export interface SessionDeps {
  sourceName: string;
  /** The source's log number (sluice.sources.log_no). */
  sourceNo: number;
  /**
   * Time of WAL a new log partition should cover (the source's retention
   * decides). Asked at each write, so a retention change applies to the next
   * partition without restarting capture.
   */
  partitionSeconds?: () => number;
  bufferPool: Pool;
  decoder: ChangeDecoder;
  maxBatch: number;
  /** Position durable before this session started. */
  durableLsn: bigint;
  confirm(lsn: bigint): void;
  onFatal(err: Error): void;
  onTruncate?(tables: number[]): void;
  /** Resolves once the consumer registry holds this config version. */
  awaitConfig?(version: number): Promise<void>;
  /** Chunks read by this source's backfills, waiting for their high watermark (src/backfill/staged.ts). */
  staged?: StagedChunks;
  /** Stores the chunks a write sealed, once it has committed (src/backfill/chunk-store.ts). */
  chunkStore?: ChunkStore;
  /** A transaction_annotations.set message was ignored (the reason). */
  onBadAnnotations?(reason: string): void;
  /** Consumers of a stream, woken when outbox messages to it are stored. */
  streamWake?(stream: string): readonly string[];
  /** Consumers of this source that read a stream's outbox messages among its changes (`outbox`). */
  outboxWake?(stream: string): readonly string[];
  /** An outbox message was not stored: its content is refused, or its stream does not exist. */
  onOutboxRefused?(stream: string, reason: string, count: number): void;
  /** A batch was stored: its rows, the position it moved to, and how long the write took (seconds). */
  onWritten?(rows: number, checkpoint: bigint | null, seconds: number): void;
  /**
   * Test-only: each buffer write waits this long before it starts. Crash tests
   * set it to widen the window between receiving a commit and storing it, so a
   * position confirmed before its rows are stored is caught by every kill in
   * that window. Unset (always, outside tests) it costs one falsy check per write.
   */
  writeDelayMs?: number;
}

/**
 * A batch is written once its payloads reach this many characters, however
 * few its rows: about three batches are held at once (two being written, one
 * filling), so wide rows keep that to tens of MB.
 */
const BATCH_CHARS = 16 * 1024 * 1024;

/** Writes that only move the position (no row, no backfill mark) go at most this often. */
const POSITION_ONLY_MS = 1000;

export class CaptureSession {
  private rows: LogRows;
  /** Backfill high watermarks of stored-to-be transactions: their chunks are sealed with them (stored after: src/backfill/chunk-store.ts). */
  private marks: BackfillMark[] = [];
  /** Watermarks met in the open transaction (stored at its commit). */
  private txMarks: { id: string; chunk: number }[] = [];
  /** Outbox messages of complete transactions, to store with them (src/capture/outbox.ts). */
  private outbox: OutboxMessage[] = [];
  /** Outbox messages of the open transaction: kept only if it commits. */
  private txOutbox: OutboxMessage[] = [];
  private txCommitLsn = 0n;
  private checkpoint: bigint | null = null;
  private lastCommitAt: string | null = null;
  private durable: bigint;
  /** Writes in progress, oldest first; each commits after the one before it. */
  private writes: Promise<void>[] = [];
  private flushScheduled = false;
  /** When the last write that only moved the position started, and the timer of the next one. */
  private positionOnlyAt = 0;
  private positionTimer: NodeJS.Timeout | null = null;
  /** Set by settle(): no write starts after it. */
  private ended = false;
  private failed: Error | null = null;
  /** Between a begin and its commit. */
  private inTransaction = false;
  /** Set by resume(): events wait for it (the tail is being cleared). */
  private ready: Promise<void> | null = null;
  /** Transactions whose commit starts below this are already stored whole. */
  private storedBelow = 0n;
  /** Inside such a transaction: its changes are not stored again. */
  private skipping = false;

  constructor(private readonly deps: SessionDeps) {
    this.durable = deps.durableLsn;
    this.rows = new LogRows(deps.sourceNo);
  }

  durableLsn(): bigint {
    return this.durable;
  }

  /**
   * Called once the slot is ours (another process may have written until a
   * moment ago): `prepare` reads back the durable position and clears what lies
   * past it; until it is done no event is handled. Transactions below the
   * position it returns were stored whole (by this or another process) and are
   * skipped if Postgres sends them again.
   */
  resume(prepare: Promise<bigint>): void {
    this.ready = prepare.then((position) => {
      this.storedBelow = position;
      if (position > this.durable) this.durable = position;
    });
    this.ready.catch(() => {});
  }

  /** Everything received is stored: no open transaction, no pending rows or writes. */
  idle(): boolean {
    return (
      !this.ready &&
      !this.failed &&
      !this.inTransaction &&
      !this.flushScheduled &&
      this.writes.length === 0 &&
      this.rows.length === 0 &&
      (this.checkpoint === null || this.checkpoint <= this.durable)
    );
  }

  onEvent = async (e: ReplicationEvent): Promise<void> => {
    if (this.ready) {
      await this.ready;
      this.ready = null;
    }
    if (this.failed) throw this.failed;
    if (this.skipping && e.tag !== 'commit' && e.tag !== 'relation') return;
    switch (e.tag) {
      case 'begin':
        this.inTransaction = true;
        this.skipping = e.commitLsn < this.storedBelow;
        this.txCommitLsn = e.commitLsn;
        this.txMarks = [];
        this.txOutbox = [];
        this.deps.decoder.begin(e.commitLsn, e.commitTimeMicros);
        return;
      case 'relation':
        await this.deps.decoder.onRelation(e.relation);
        return;
      case 'insert':
      case 'update':
      case 'delete':
        this.deps.decoder.change(e, this.rows);
        // A large transaction is written in chunks; the position stays at the
        // last complete transaction until its commit is written.
        if (this.full()) await this.submitFull();
        return;
      case 'commit':
        this.inTransaction = false;
        if (this.skipping) {
          this.skipping = false;
          return;
        }
        this.checkpoint = e.endLsn;
        this.lastCommitAt = isoFromMicros(e.commitTimeMicros);
        for (const m of this.txMarks) {
          // Rows this process does not hold (read before a restart): the
          // watermark stores nothing and the worker reads the chunk again.
          const rows = this.deps.staged?.get(m.id, m.chunk);
          if (!rows) continue;
          this.marks.push({
            rows,
            backfillId: m.id,
            chunk: m.chunk,
            commitLsn: this.txCommitLsn,
            committedAt: this.lastCommitAt,
            databaseName: this.deps.decoder.databaseName,
          });
        }
        this.txMarks = [];
        if (this.txOutbox.length) {
          for (const m of this.txOutbox) this.outbox.push(m);
          this.txOutbox = [];
        }
        if (this.full()) await this.submitFull();
        else this.scheduleFlush();
        return;
      case 'truncate':
        this.deps.onTruncate?.(e.relationOids);
        return;
      case 'message': {
        if (!e.transactional && e.prefix === CONFIG_MARKER_PREFIX) {
          // Everything after this point in the WAL was written after a config
          // change committed: route it by that config (config-marker.ts).
          await this.deps.awaitConfig?.(Number(Buffer.from(e.content).toString('utf8')));
          return;
        }
        if (!e.transactional || !this.inTransaction) {
          const stream = outboxStream(e.prefix);
          if (stream !== null) {
            this.deps.onOutboxRefused?.(stream, 'not transactional: pass true as the first argument of pg_logical_emit_message, so the message is sent only if its transaction commits', 1);
          }
          return;
        }
        if (e.prefix === BACKFILL_MARK_PREFIX) {
          // A backfill chunk's high watermark: its rows go at this
          // transaction's commit position (migrations/0019_backfills.sql, 0028).
          const mark = parseBackfillMark(e.content);
          if (mark) this.txMarks.push(mark);
          return;
        }
        const stream = outboxStream(e.prefix);
        if (stream !== null) {
          const fields = parseOutbox(e.content);
          if (typeof fields === 'string') this.deps.onOutboxRefused?.(stream, fields, 1);
          else {
            const m = this.deps.decoder.outbox(stream, fields);
            this.txOutbox.push(m);
            // Its copy in the source's log goes with the transaction's changes.
            this.rows.push(outboxLogRow(this.deps.sourceName, m, this.deps.outboxWake?.(stream) ?? []));
          }
          return;
        }
        const refused = this.deps.decoder.message(e.prefix, e.content);
        if (refused) this.deps.onBadAnnotations?.(refused);
        return;
      }
      default:
        return;
    }
  };

  /** Writes what is pending and waits for it (used on shutdown). */
  async drain(): Promise<void> {
    while (this.writes.length > 0) await this.writes[0];
    this.flush(true);
    while (this.writes.length > 0) await this.writes[0];
  }

  /**
   * The session is over: it starts no more writes (a position-only write
   * waiting for its turn is dropped: the next session reads the position
   * after this), and this waits until none is in progress.
   */
  async settle(): Promise<void> {
    this.ended = true;
    if (this.positionTimer) clearTimeout(this.positionTimer);
    this.positionTimer = null;
    while (this.writes.length > 0) await this.writes[0];
  }

  /** The pending rows make a batch: max_batch_changes of them, or BATCH_CHARS of payload (wide rows). */
  private full(): boolean {
    return this.rows.length >= this.deps.maxBatch || this.rows.payloadChars >= BATCH_CHARS;
  }

  /** A full batch waits for a write slot: this pauses the replication socket. */
  private async submitFull(): Promise<void> {
    while (this.writes.length >= WRITE_SLOTS) await this.writes[0];
    if (this.failed) throw this.failed;
    this.flush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate runs after the messages already received are handled, so
    // everything that arrived together goes into one write.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /**
   * Starts a write of everything pending, unless both slots are busy: then the
   * rows keep accumulating and go out, together, when one ends (group commit).
   * Under a steady stream of small transactions this turns N tiny writes into
   * one per round trip.
   */
  private flush(now = false): void {
    if (this.failed || this.ended || this.writes.length >= WRITE_SLOTS) return;
    const checkpoint = this.checkpoint !== null && this.checkpoint > this.durable ? this.checkpoint : null;
    if (this.rows.length === 0 && checkpoint === null) return;
    if (this.rows.length === 0 && this.marks.length === 0 && !now) {
      // Only the position would move: transactions that captured nothing.
      // Postgres 14 sends those too (15 skips them), and a buffer in the
      // source's own database makes one of each buffer write: unthrottled,
      // every write caused the next (measured: ~2,900 a second, idle). The
      // position waits, at most POSITION_ONLY_MS: nothing is lost meanwhile,
      // it only confirms later.
      const wait = this.positionOnlyAt + POSITION_ONLY_MS - Date.now();
      if (wait > 0) {
        this.positionTimer ??= setTimeout(() => {
          this.positionTimer = null;
          this.flush();
        }, wait);
        return;
      }
      this.positionOnlyAt = Date.now();
    }
    if (this.positionTimer) {
      clearTimeout(this.positionTimer);
      this.positionTimer = null;
    }
    const previous = this.writes[this.writes.length - 1];
    const batch = {
      sourceName: this.deps.sourceName,
      sourceNo: this.deps.sourceNo,
      partitionSeconds: this.deps.partitionSeconds?.(),
      rows: this.rows,
      marks: this.marks,
      outbox: this.outbox.length
        ? {
            sourceName: this.deps.sourceName,
            messages: this.outbox,
            wake: (stream: string) => this.deps.streamWake?.(stream) ?? [],
            dropped: (stream: string, count: number) =>
              this.deps.onOutboxRefused?.(stream, `stream "${stream}" does not exist (create it before publishing to it)`, count),
          }
        : undefined,
      checkpoint,
      lastCommitAt: this.lastCommitAt,
      // Commit only after the previous write committed (and confirmed); if it
      // failed, roll back: the session is over and what follows is replayed.
      beforeCommit: previous
        ? async () => {
            await previous;
            if (this.failed) throw this.failed;
          }
        : undefined,
    };
    this.rows = new LogRows(this.deps.sourceNo);
    this.marks = [];
    this.outbox = [];
    this.checkpoint = null;
    const done: Promise<void> = this.write(batch).finally(() => {
      this.writes.splice(this.writes.indexOf(done), 1);
      // What arrived meanwhile, including a commit whose flush found us busy.
      if (this.rows.length > 0 || (this.checkpoint !== null && this.checkpoint > this.durable)) this.flush();
    });
    this.writes.push(done);
  }

  private async write(batch: Parameters<typeof writeBatch>[1]): Promise<void> {
    try {
      if (this.deps.writeDelayMs) await new Promise((r) => setTimeout(r, this.deps.writeDelayMs));
      const started = performance.now();
      const sealed = await writeBatch(this.deps.bufferPool, batch);
      if (batch.checkpoint !== null && batch.checkpoint > this.durable) {
        this.durable = batch.checkpoint;
        this.deps.confirm(this.durable);
      }
      if (sealed.length) this.deps.chunkStore?.add(batch.sourceNo, sealed);
      if (batch.marks?.length) this.deps.staged?.written();
      this.deps.onWritten?.(batch.rows.length, batch.checkpoint, (performance.now() - started) / 1000);
    } catch (err) {
      // A write rolled back because the one before it failed reports nothing new.
      if (this.failed) return;
      this.failed = err as Error;
      this.deps.onFatal(this.failed);
    }
  }
}
