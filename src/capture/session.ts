// One replication connection's worth of state: decodes events into rows, writes
// them to the buffer in batches, and confirms to Postgres only what the buffer
// has committed.
//
// Batching: rows accumulate while messages keep arriving; a write starts when
// the replication queue goes idle (setImmediate runs after the messages already
// received are handled) or when max_batch_changes is reached, unless a write is
// in progress: then everything that arrives meanwhile goes into the next one.
// One write at a time, in order; the handler waits when the next batch is full
// and a write is still running, which pauses the replication socket (flow
// control) and bounds memory to about two batches, however large a transaction.
import type { Pool } from '../db/pool.js';
import { writeBatch, type BufferRow } from '../buffer/writer.js';
import { isoFromMicros } from './commit-time.js';
import type { ChangeDecoder } from './decoder.js';
import type { ReplicationEvent } from './replication.js';

export interface SessionDeps {
  sourceName: string;
  bufferPool: Pool;
  decoder: ChangeDecoder;
  maxBatch: number;
  /** Position durable before this session started. */
  durableLsn: bigint;
  confirm(lsn: bigint): void;
  onFatal(err: Error): void;
  onTruncate?(tables: number[]): void;
  onWritten?(rows: number, checkpoint: bigint | null): void;
}

export class CaptureSession {
  private rows: BufferRow[] = [];
  private checkpoint: bigint | null = null;
  private lastCommitAt: string | null = null;
  private durable: bigint;
  /** The write in progress; at most one at a time, so writes commit in order. */
  private writing: Promise<void> | null = null;
  private flushScheduled = false;
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
      !this.writing &&
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
        if (this.rows.length >= this.deps.maxBatch) await this.submitFull();
        return;
      case 'commit':
        this.inTransaction = false;
        if (this.skipping) {
          this.skipping = false;
          return;
        }
        this.checkpoint = e.endLsn;
        this.lastCommitAt = isoFromMicros(e.commitTimeMicros);
        if (this.rows.length >= this.deps.maxBatch) await this.submitFull();
        else this.scheduleFlush();
        return;
      case 'truncate':
        this.deps.onTruncate?.(e.relationOids);
        return;
      default:
        return;
    }
  };

  /** Writes what is pending and waits for it (used on shutdown). */
  async drain(): Promise<void> {
    while (this.writing) await this.writing;
    this.flush();
    while (this.writing) await this.writing;
  }

  /** A full batch waits for the write in progress: this pauses the replication socket. */
  private async submitFull(): Promise<void> {
    while (this.writing) await this.writing;
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
   * Starts a write of everything pending, unless one is in progress: then the
   * rows keep accumulating and go out, together, when it ends (group commit).
   * Under a steady stream of small transactions this turns N tiny writes into
   * one per round trip.
   */
  private flush(): void {
    if (this.failed || this.writing) return;
    const checkpoint = this.checkpoint !== null && this.checkpoint > this.durable ? this.checkpoint : null;
    if (this.rows.length === 0 && checkpoint === null) return;
    const batch = { sourceName: this.deps.sourceName, rows: this.rows, checkpoint, lastCommitAt: this.lastCommitAt };
    this.rows = [];
    this.checkpoint = null;
    this.writing = this.write(batch).finally(() => {
      this.writing = null;
      // What arrived meanwhile, including a commit whose flush found us busy.
      if (this.rows.length > 0 || (this.checkpoint !== null && this.checkpoint > this.durable)) this.flush();
    });
  }

  private async write(batch: Parameters<typeof writeBatch>[1]): Promise<void> {
    try {
      await writeBatch(this.deps.bufferPool, batch);
      if (batch.checkpoint !== null && batch.checkpoint > this.durable) {
        this.durable = batch.checkpoint;
        this.deps.confirm(this.durable);
      }
      this.deps.onWritten?.(batch.rows.length, batch.checkpoint);
    } catch (err) {
      this.failed = err as Error;
      this.deps.onFatal(this.failed);
    }
  }
}
