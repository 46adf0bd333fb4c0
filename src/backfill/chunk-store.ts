// Stores the backfill chunks capture has sealed (migrations/0028_backfill_seal.sql),
// one at a time, beside capture's own writes: a chunk's copy into the log
// (5,000 rows take 50-250 ms) no longer holds up the live changes captured
// after its watermark. Only the chunk's consumer waits for it, at the
// watermark (sluice.admission_horizon).
//
// A store that fails is tried again a few times; one given up leaves its seal,
// which the backfill worker clears when it reads the chunk again (after its
// wait for the store times out), so nothing is lost either way: the rows of a
// chunk not stored are read again.
import type { Pool } from '../db/pool.js';
import { storeChunk, type SealedChunk } from '../buffer/writer.js';

export interface ChunkStoreLog {
  warn(obj: object, msg?: string): void;
}

const ATTEMPTS = 5;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ChunkStore {
  private queue: Array<{ sourceNo: number; chunk: SealedChunk }> = [];
  private running: Promise<void> | null = null;
  /** "backfill:chunk" of the chunks queued or being stored. */
  private readonly pendingKeys = new Set<string>();
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private readonly log: ChunkStoreLog,
    /** After each chunk's store ends (stored, or not the one sealed): wakes the worker waiting for it. */
    private readonly ended: () => void,
  ) {}

  /** Chunks a batch sealed, to store now that it has committed. */
  add(sourceNo: number, sealed: readonly SealedChunk[]): void {
    if (this.stopped) return;
    for (const chunk of sealed) {
      this.queue.push({ sourceNo, chunk });
      this.pendingKeys.add(key(chunk.backfillId, chunk.chunk));
    }
    this.running ??= this.drain().finally(() => (this.running = null));
  }

  /** Whether that chunk is queued or being stored here (a seal with no store pending is left over from a process that ended). */
  pending(backfillId: string, chunk: number): boolean {
    return this.pendingKeys.has(key(backfillId, chunk));
  }

  /** Stops taking chunks and waits for the store in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue = [];
    await this.running;
  }

  private async drain(): Promise<void> {
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      const { sourceNo, chunk } = next;
      for (let attempt = 1; attempt <= ATTEMPTS && !this.stopped; attempt++) {
        try {
          await storeChunk(this.pool, sourceNo, chunk);
          break;
        } catch (err) {
          this.log.warn(
            { backfill: chunk.backfillId, chunk: chunk.chunk, attempt, err: (err as Error).message },
            attempt < ATTEMPTS ? 'backfill chunk store failed; retrying' : 'backfill chunk store failed; the chunk will be read again',
          );
          if (attempt < ATTEMPTS) await sleep(100 * 2 ** attempt);
        }
      }
      this.pendingKeys.delete(key(chunk.backfillId, chunk.chunk));
      this.ended();
    }
  }
}

function key(backfillId: string, chunk: number): string {
  return backfillId + ':' + chunk;
}
