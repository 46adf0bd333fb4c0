// The pull operations on one consumer: receive (with long-polling), ack, nack,
// modify-visibility. Claims and acks are the buffer's (src/buffer/claim.ts);
// this module adds the waiting: a receive with wait_for that finds nothing
// registers as a waiter (max_waiting, across processes through
// sluice.pull_waiters) and sleeps until a wake-up for its consumer, the moment
// an in-flight message's visibility ends, or a safety re-check.
import { randomUUID } from 'node:crypto';
import { ackWithAges, claim, deadLetterDeliveries, modifyVisibility, nack, type AckOutcome, type ClaimedMessage } from '../buffer/claim.js';
import type { ConsumerRecord, ConsumerRegistry } from '../buffer/consumers.js';
import { ClaimFaults } from '../buffer/faults.js';
import { beginWait, endWait } from '../buffer/waiters.js';
import type { Wakeup } from '../buffer/wakeup.js';
import type { Pool } from '../db/pool.js';
import { runReplays } from '../log/replay.js';
import { consumerFilter } from '../pipeline/filter/consumer-filter.js';
import { WalkAhead } from '../pipeline/filter/walk.js';
import { rendererFor, TransformUnavailable } from '../render/render.js';
import { ClaimCoalescer, type ClaimResult } from './coalesce.js';
import { PullError } from './errors.js';
import { BATCH_SIZE_MAX } from './params.js';
import { pullSettings } from './settings.js';

export interface PullServiceOptions {
  pool: Pool;
  consumers: ConsumerRegistry;
  wakeup: Wakeup;
  instanceId: string;
  /**
   * Longest sleep between two checks of the table while long-polling. Wake-ups
   * make deliveries prompt; this only bounds the delay when one is missed
   * (e.g. an ack in another process freed a group). 1 s: at 20 waiters per
   * consumer that is 20 cheap claims a second, nothing like a busy loop.
   */
  safetyRecheckMs?: number;
  /**
   * Messages became dead letters in a claim: delivered max_deliver times
   * without an ack, or refused by the transform. One call per claim, with
   * each message's group and the reason (the route logs and counts them).
   */
  onDeadLetters?(consumer: ConsumerRecord, letters: Array<{ groupKey: string | null; reason: string }>): void;
}

export interface ReceiveOptions {
  batchSize: number;
  /** Long-poll up to this long when nothing is deliverable; 0 returns at once. */
  waitMs: number;
  signal?: AbortSignal;
}

/** A claimed message as this consumer is served it (src/render/render.ts). */
interface ServedMessage {
  ackId: string;
  /** JSON text: the envelope, or the transform's output. */
  text: string;
}

type Served = ClaimResult<ServedMessage>;

export interface ReceiveResult {
  count: number;
  /** The response body, `{"data": [{"ack_id": …, "data": <message>}]}`, built as text. */
  body: string;
}

// A waiter's row outlives its wait by this much at most if the process dies.
const WAITER_GRACE_MS = 10_000;
// Upper bound on re-checks per receive besides the clock, should wake-ups storm.
const MAX_CHECKS_PER_RECEIVE = 10_000;
// A claim whose every message the transform refused is claimed again at once,
// this many times at most, so a receive is not answered empty for that alone.
const CLAIMS_PAST_REFUSALS = 3;

export class PullService {
  /** Claims issued (tests assert long-polls are not busy loops). */
  readonly counters = { claims: 0, waiting: 0 };
  private readonly safetyRecheckMs: number;
  private readonly localWaiting = new Map<string, number>();
  private readonly unsubscribe: () => void;
  // Where-filtered consumers: the next walk of the log runs while this claim's messages are out.
  private readonly walks: WalkAhead;
  private readonly coalescer = new ClaimCoalescer<ServedMessage>((id, limit) => this.claimNow(id, limit), BATCH_SIZE_MAX);
  // A consumer whose claims fail shows as failing, with the reason (API, sluice status).
  private readonly faults: ClaimFaults;
  // Aborted when the service closes: long-polls end at once with what they have.
  private readonly closing = new AbortController();

  constructor(private readonly opts: PullServiceOptions) {
    this.safetyRecheckMs = opts.safetyRecheckMs ?? 1000;
    this.faults = new ClaimFaults(opts.pool, opts.instanceId);
    this.walks = new WalkAhead(opts.pool);
    // Paused, resumed or reconfigured consumers: every waiter looks again.
    this.unsubscribe = opts.consumers.onChange(() => opts.wakeup.notifyAll());
  }

  /** Ends every long-poll (they answer with an empty list) and stops listening for consumer changes. Idempotent. */
  close(): void {
    this.unsubscribe();
    this.closing.abort();
  }

  async receive(consumer: ConsumerRecord, req: ReceiveOptions): Promise<ReceiveResult> {
    const { wakeup } = this.opts;
    const id = consumer.id;
    const deadline = Date.now() + req.waitMs;
    let epoch = wakeup.epoch(id);
    let current = consumer;
    let result = await this.claimFor(current, req.batchSize);
    if (result.messages.length > 0 || req.waitMs <= 0) return this.body(result.messages);

    const signal = req.signal ? AbortSignal.any([req.signal, this.closing.signal]) : this.closing.signal;
    if (signal.aborted) return this.body([]);
    const waiterId = await this.admitWaiter(current, req.waitMs);
    try {
      for (let check = 0; check < MAX_CHECKS_PER_RECEIVE; check++) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        let sleep = Math.min(left, this.safetyRecheckMs);
        if (result.nextVisibleAt) sleep = Math.min(sleep, Math.max(0, result.nextVisibleAt.getTime() - Date.now()) + 1);
        if ((await wakeup.wait(id, sleep, signal, epoch)) === 'aborted') break;
        epoch = wakeup.epoch(id);
        const latest = this.opts.consumers.get(id);
        if (!latest || latest.kind !== 'pull') break;
        current = latest;
        result = await this.claimFor(current, req.batchSize);
        if (result.messages.length > 0) return this.body(result.messages);
      }
    } finally {
      await this.releaseWaiter(id, waiterId);
    }
    return this.body([]);
  }

  async ack(consumer: ConsumerRecord, ackIds: readonly string[]): Promise<AckOutcome & { ages: number[] }> {
    const out = await ackWithAges(this.opts.pool, consumer.id, ackIds);
    // Acks free group heads and max_ack_pending room: local waiters re-check now
    // (other processes' waiters on their next re-check).
    if (out.applied > 0) this.opts.wakeup.notify(consumer.id);
    return out;
  }

  async nack(consumer: ConsumerRecord, ackIds: readonly string[]): Promise<AckOutcome> {
    return nack(this.opts.pool, consumer.id, ackIds);
  }

  async modifyVisibility(consumer: ConsumerRecord, ackIds: readonly string[], ms: number): Promise<AckOutcome> {
    const out = await modifyVisibility(this.opts.pool, consumer.id, ackIds, ms);
    if (out.applied > 0 && ms === 0) this.opts.wakeup.notify(consumer.id);
    return out;
  }

  private claimFor(c: ConsumerRecord, batchSize: number): Promise<Served> {
    // Paused (or disabled) consumers keep their messages; receive sees none.
    if (c.state !== 'active') return Promise.resolve({ messages: [], nextVisibleAt: null });
    return this.coalescer.claim(c.id, batchSize);
  }

  /** One claim in Postgres, for one or several receives (see coalesce.ts), served as the consumer is served. */
  private async claimNow(consumerId: string, limit: number): Promise<Served> {
    const c = this.opts.consumers.get(consumerId);
    if (!c || c.kind !== 'pull' || c.state !== 'active') return { messages: [], nextVisibleAt: null };
    const s = pullSettings(c);
    this.counters.claims++;
    try {
      for (let round = 0; ; round++) {
        // A running replay takes in its next matching changes first (src/log/replay.ts).
        await runReplays(this.opts.pool, c.id, limit);
        // A where filter is tested here, on a walk of the log, before the claim takes in what passes.
        const filter = consumerFilter(c);
        const walked = filter ? await this.walks.take(c.id, limit, filter) : null;
        // Twice this claim's size: the next may serve more receives, and what it does not take is kept, not walked again.
        if (filter && walked) this.walks.chain(c.id, walked, { want: limit * 2, filter });
        const result = await claim(this.opts.pool, {
          walked,
          consumerId: c.id,
          limit,
          visibilityMs: s.ackWaitMs,
          maxAckPending: s.maxAckPending,
          maxDeliver: s.maxDeliver,
          deadLetterBlocksGroup: s.deadLetterBlocksGroup,
        });
        if (result.deadLettered?.length) {
          const reason = `delivered ${s.maxDeliver} time${s.maxDeliver === 1 ? '' : 's'} (max_deliver) without an ack`;
          this.opts.onDeadLetters?.(c, result.deadLettered.map((d) => ({ groupKey: d.groupKey, reason })));
        }
        // Committed: the next walk can start from here while these are served.
        if (filter && walked) {
          const taken = new Set(result.messages.map((m) => `${m.commitLsn}:${m.commitIdx}`));
          this.walks.claimed(c.id, walked, taken, walked.lsns.length >= limit ? { want: limit, filter } : null);
        }
        const served = await this.serve(c, result.messages);
        this.faults.succeeded(c.id);
        if (served.length > 0 || result.messages.length === 0 || round + 1 >= CLAIMS_PAST_REFUSALS) {
          return { messages: served, nextVisibleAt: result.nextVisibleAt };
        }
      }
    } catch (err) {
      this.faults.failed(c.id, err);
      this.walks.drop(c.id);
      if (err instanceof TransformUnavailable) {
        // The claimed messages stay in flight and come back when their visibility ends.
        throw new PullError(503, `${err.message}; the messages claimed are delivered again when their ack_wait ends. Retry the receive.`);
      }
      throw err;
    }
  }

  /**
   * The claimed messages rendered for the consumer; those its transform
   * refused become dead letters here, with the reason, and are left out.
   */
  private async serve(c: ConsumerRecord, messages: ClaimedMessage[]): Promise<ServedMessage[]> {
    const renderer = rendererFor(c);
    if (!renderer.transformed) return messages.map((m) => ({ ackId: m.ackId, text: renderer.envelope(m.payload) }));
    const rendered = await renderer.render(messages.map((m) => m.payload));
    const out: ServedMessage[] = [];
    const refused: Array<{ message: ClaimedMessage; error: string }> = [];
    rendered.forEach((r, i) => {
      if (r.ok) out.push({ ackId: messages[i].ackId, text: r.text });
      else refused.push({ message: messages[i], error: r.error });
    });
    if (refused.length > 0) {
      await deadLetterDeliveries(this.opts.pool, c.id, refused);
      this.opts.onDeadLetters?.(c, refused.map((r) => ({ groupKey: r.message.groupKey, reason: r.error })));
      // Their groups may be free now: local long-polls look again.
      this.opts.wakeup.notify(c.id);
    }
    return out;
  }

  private async admitWaiter(c: ConsumerRecord, waitMs: number): Promise<string> {
    const { maxWaiting } = pullSettings(c);
    const local = this.localWaiting.get(c.id) ?? 0;
    // The local count refuses without a query when this process alone is full.
    if (local >= maxWaiting) throw tooManyWaiting(c, maxWaiting);
    this.localWaiting.set(c.id, local + 1);
    this.counters.waiting++;
    const waiterId = randomUUID();
    let admitted = false;
    try {
      admitted = await beginWait(this.opts.pool, {
        consumerId: c.id,
        waiterId,
        instanceId: this.opts.instanceId,
        max: maxWaiting,
        expiresMs: waitMs + WAITER_GRACE_MS,
      });
    } finally {
      if (!admitted) this.decrementLocal(c.id);
    }
    if (!admitted) throw tooManyWaiting(c, maxWaiting);
    return waiterId;
  }

  private async releaseWaiter(consumerId: string, waiterId: string): Promise<void> {
    this.decrementLocal(consumerId);
    // A failure here only leaves the row to expire by itself.
    await endWait(this.opts.pool, waiterId).catch(() => {});
  }

  private decrementLocal(consumerId: string): void {
    this.counters.waiting--;
    const n = (this.localWaiting.get(consumerId) ?? 1) - 1;
    if (n <= 0) this.localWaiting.delete(consumerId);
    else this.localWaiting.set(consumerId, n);
  }

  private body(messages: ServedMessage[]): ReceiveResult {
    if (messages.length === 0) return { count: 0, body: '{"data":[]}' };
    // Messages are JSON text already; splicing strings avoids a parse and a
    // stringify per message. ack_ids are base64url: nothing to escape.
    let out = '{"data":[';
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      out += (i ? ',{"ack_id":"' : '{"ack_id":"') + m.ackId + '","data":' + m.text + '}';
    }
    return { count: messages.length, body: out + ']}' };
  }
}

function tooManyWaiting(c: ConsumerRecord, max: number): PullError {
  return new PullError(
    429,
    `Too many receives are already waiting on consumer "${c.name}" (max_waiting is ${max}); retry later or without wait_for.`,
  );
}
