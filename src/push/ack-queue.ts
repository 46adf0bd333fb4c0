// Acks of one consumer's delivered batches, coalesced: every batch that
// completes while an ack statement is running goes into the next one. Under load
// (batch size 1, thousands of requests a second) that turns thousands of
// DELETE + INSERT round trips into a few dozen; when idle an ack is written at
// once.
import type { Pool } from '../db/pool.js';
import { ackBatches, type Delivered } from './queries.js';

const MAX_PER_STATEMENT = 256;
const ACK_TRIES = 3;

interface Waiting {
  done: Delivered;
  resolve(): void;
  reject(err: Error): void;
}

export class AckQueue {
  private waiting: Waiting[] = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly consumerId: string,
    private readonly instanceId: string,
  ) {}

  /** Resolves once the batch's rows are deleted and its attempt logged. */
  add(done: Delivered): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ done, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves when everything added so far is written (or has failed). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const group = this.waiting.splice(0, MAX_PER_STATEMENT);
        try {
          await this.write(group.map((w) => w.done));
          for (const w of group) w.resolve();
        } catch (err) {
          for (const w of group) w.reject(err as Error);
        }
      }
    } finally {
      this.running = null;
    }
  }

  // A lost ack means a redelivery (same webhook-id) once the lease ends, so a
  // blip in the database connection is worth two more quick tries.
  private async write(done: Delivered[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await ackBatches(this.pool, this.consumerId, this.instanceId, done);
        return;
      } catch (err) {
        if (attempt >= ACK_TRIES) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }
}
