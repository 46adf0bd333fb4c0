// Stores the backfill chunks capture has sealed (migrations/0028_backfill_seal.sql),
// one at a time and in the order they were sealed, beside capture's own
// writes: a chunk's copy into the log (5,000 rows take 50-100 ms) no longer
// holds up the live changes captured after its watermark, and the backfill
// worker reads and seals its next chunk meanwhile. Only the chunk's consumer
// waits for it, at the watermark (sluice.admission_horizon).
//
// A store that fails is tried again a few times. One that gives up, or finds
// its seal gone or the chunk before it not stored, marks its backfill lost:
// the worker drops its seals and reads on from the progress stored, so the
// chunk's rows are read again and nothing is missed.
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
  /** Per backfill: the chunks queued or being stored. */
  private readonly pendingChunks = new Map<string, Set<number>>();
  /** Backfills with a chunk sealed and not stored since the worker last looked (takeLost). */
  private readonly lost = new Set<string>();
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private readonly log: ChunkStoreLog,
    /** After each chunk's store ends, stored or not: wakes the worker waiting for it. */
    private readonly ended: () => void,
  ) {}

  /** Chunks a batch sealed, to store now that it has committed. */
  add(sourceNo: number, sealed: readonly SealedChunk[]): void {
    if (this.stopped) return;
    for (const chunk of sealed) {
      this.queue.push({ sourceNo, chunk });
      let set = this.pendingChunks.get(chunk.backfillId);
      if (!set) this.pendingChunks.set(chunk.backfillId, (set = new Set()));
      set.add(chunk.chunk);
    }
    this.running ??= this.drain().finally(() => (this.running = null));
  }

  /** The backfill's chunks queued or being stored here (a seal not among them is left over from a process that ended). */
  pending(backfillId: string): number[] {
    return [...(this.pendingChunks.get(backfillId) ?? [])];
  }

  /** Whether a chunk of the backfill was sealed and not stored since the last call; clears it. */
  takeLost(backfillId: string): boolean {
    return this.lost.delete(backfillId);
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
      let stored = false;
      for (let attempt = 1; attempt <= ATTEMPTS && !this.stopped; attempt++) {
        try {
          stored = await storeChunk(this.pool, sourceNo, chunk);
          break;
        } catch (err) {
          this.log.warn(
            { backfill: chunk.backfillId, chunk: chunk.chunk, attempt, err: (err as Error).message },
            attempt < ATTEMPTS ? 'backfill chunk store failed; retrying' : 'backfill chunk store failed; the chunk will be read again',
          );
          if (attempt < ATTEMPTS) await sleep(100 * 2 ** attempt);
        }
      }
      if (!stored) this.lost.add(chunk.backfillId);
      const set = this.pendingChunks.get(chunk.backfillId);
      set?.delete(chunk.chunk);
      if (set?.size === 0) this.pendingChunks.delete(chunk.backfillId);
      this.ended();
    }
  }
}
