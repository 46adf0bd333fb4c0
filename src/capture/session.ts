// One replication connection's worth of state: decodes events into rows, writes
// them to the buffer in batches, and confirms to Postgres only what the buffer
// has committed.
//
// Batching: rows accumulate while messages keep arriving; a write is queued when
// the replication queue goes idle (setImmediate runs after the messages already
// received are handled) or when max_batch_changes is reached. Writes run one at a
// time, in order; the handler waits when one is still running and the next batch
// is full, which pauses the replication socket (flow control) and bounds memory
// to about two batches, however large a transaction is.
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
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private flushScheduled = false;
  private failed: Error | null = null;

  constructor(private readonly deps: SessionDeps) {
    this.durable = deps.durableLsn;
  }

  durableLsn(): bigint {
    return this.durable;
  }

  onEvent = async (e: ReplicationEvent): Promise<void> => {
    if (this.failed) throw this.failed;
    switch (e.tag) {
      case 'begin':
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

  /** Waits for every queued write (used on shutdown). */
  async drain(): Promise<void> {
    this.enqueue();
    await this.chain;
  }

  private async submitFull(): Promise<void> {
    if (this.queued > 0) await this.chain;
    if (this.failed) throw this.failed;
    this.enqueue();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.enqueue();
    });
  }

  private enqueue(): void {
    if (this.failed) return;
    const checkpoint = this.checkpoint !== null && this.checkpoint > this.durable ? this.checkpoint : null;
    if (this.rows.length === 0 && checkpoint === null) return;
    const batch = { sourceName: this.deps.sourceName, rows: this.rows, checkpoint, lastCommitAt: this.lastCommitAt };
    this.rows = [];
    this.checkpoint = null;
    this.queued++;
    this.chain = this.chain.then(async () => {
      try {
        if (this.failed) return;
        await writeBatch(this.deps.bufferPool, batch);
        if (batch.checkpoint !== null && batch.checkpoint > this.durable) {
          this.durable = batch.checkpoint;
          this.deps.confirm(this.durable);
        }
        this.deps.onWritten?.(batch.rows.length, batch.checkpoint);
      } catch (err) {
        this.failed = err as Error;
        this.deps.onFatal(this.failed);
      } finally {
        this.queued--;
      }
    });
  }
}
