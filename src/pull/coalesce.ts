// Receives of one consumer that arrive while a claim for it is running in this
// process are combined into the next claim, and its messages are shared out in
// commit order. Claims of a consumer are serialised in Postgres anyway (the
// claim lock), so eight workers would otherwise queue eight claims, each paying
// the fixed cost of a claim and a lock hand-over; combined, they pay it once.
// A claim hands out at most one message per group, so every share keeps that
// property, and max_ack_pending is counted over the combined claim.
/** A claim's messages (in commit order) and, when there are none, when to look again. */
export interface ClaimResult<M> {
  messages: M[];
  nextVisibleAt: Date | null;
}

interface Pending<M> {
  limit: number;
  resolve(r: ClaimResult<M>): void;
  reject(err: unknown): void;
}

export class ClaimCoalescer<M> {
  private readonly queues = new Map<string, Pending<M>[]>();

  /**
   * @param run the real claim: consumer id and how many messages at most
   * @param maxCombined the largest combined claim (the largest batch_size)
   */
  constructor(
    private readonly run: (consumerId: string, limit: number) => Promise<ClaimResult<M>>,
    private readonly maxCombined = 1000,
  ) {}

  claim(consumerId: string, limit: number): Promise<ClaimResult<M>> {
    return new Promise<ClaimResult<M>>((resolve, reject) => {
      const queue = this.queues.get(consumerId);
      if (queue) {
        queue.push({ limit, resolve, reject });
        return;
      }
      // Nobody is claiming for this consumer here: start at once, no added latency.
      this.queues.set(consumerId, [{ limit, resolve, reject }]);
      void this.drain(consumerId);
    });
  }

  private async drain(consumerId: string): Promise<void> {
    const queue = this.queues.get(consumerId)!;
    // Bounded: each round takes at least one request off the queue, and new
    // requests join only while rounds run.
    while (queue.length > 0) {
      const round: Pending<M>[] = [];
      let total = 0;
      while (queue.length > 0 && (round.length === 0 || total + queue[0].limit <= this.maxCombined)) {
        const p = queue.shift()!;
        round.push(p);
        total += p.limit;
      }
      try {
        const result = await this.run(consumerId, total);
        let at = 0;
        for (const p of round) {
          const share = result.messages.slice(at, at + p.limit);
          at += share.length;
          // The hint of when to look again holds only for a claim that found nothing.
          p.resolve({ messages: share, nextVisibleAt: share.length ? null : result.nextVisibleAt });
        }
      } catch (err) {
        for (const p of round) p.reject(err);
      }
    }
    this.queues.delete(consumerId);
  }
}
