// Publishing to a stream: messages in, durable in the retained log out. Every
// publish to a stream from this process joins the next write to it (group
// commit: one transaction for the publishes that arrived while the previous
// one was committing), so a burst of small publishes costs a few
// transactions, not one each. A write holds the stream's row, so publishers
// in other gateway processes take turns with it, and positions are handed out
// in commit order: a consumer that has read up to a position never meets an
// earlier one later (migrations/0021_streams.sql).
//
// Round trips are what a write costs (each one waits for a busy event loop,
// and each socket write is a system call): a write without idempotency keys
// is one statement, its own transaction (src/streams/queries.ts PUBLISH);
// one with keys looks them up under the lock first, then copies its rows in.
import { isoFromMicros } from '../capture/commit-time.js';
import type { Pool } from '../db/pool.js';
import { coverLog, forgetCover, isNoPartition } from '../log/partitions.js';
import { envelopeTemplate } from './envelope.js';
import { lockStream, publishRows, storedKeys, streamLogNo } from './queries.js';

/** One message to publish, checked (src/http/routes/publish.ts). */
export interface PublishMessage {
  subject: string;
  /** The data as JSON text. */
  data: string;
  /** The group key (order is kept per key); default: the subject. */
  key?: string;
  idempotency_key?: string;
}

export interface PublishResult {
  /** The message's position in the stream (metadata.sequence). */
  sequence: number;
  /** Its idempotency_key was published before: stored once, at `sequence`. */
  duplicate: boolean;
}

export class UnknownStream extends Error {}

/** The stream was deleted and made again since its log number was read. */
class StaleLogNo extends Error {}

/** Most messages one write takes; more wait for the next. */
const MAX_WRITE = 5000;
/** How much time a new partition of a stream's log should span (positions are microseconds). */
const PARTITION_SECONDS = 3600;

interface Pending {
  messages: PublishMessage[];
  resolve(results: PublishResult[]): void;
  reject(err: Error): void;
}

interface StreamQueue {
  pending: Pending[];
  /** Writes in progress (at most WRITERS). */
  active: number;
}

/**
 * Writes to one stream in progress at once, from this process. Measured: a
 * second one (sent while the first commits, waiting on the stream's row lock)
 * only split each group commit in two, ~20% fewer messages/s.
 */
const WRITERS = 1;

export class Publisher {
  private readonly queues = new Map<string, StreamQueue>();
  /** Per stream name: its log number, as last seen (a stream deleted and made again gets a new one). */
  private readonly logNos = new Map<string, number>();
  /** Per stream name: its last position, as last seen under its lock. */
  private readonly lastPositions = new Map<string, bigint>();

  constructor(
    private readonly pool: Pool,
    /** Consumers to wake when the stream gets messages. */
    private readonly wakeFor: (stream: string) => readonly string[] = () => [],
  ) {}

  /** Resolves once the messages are committed (or were published before under their idempotency keys). */
  publish(stream: string, messages: PublishMessage[]): Promise<PublishResult[]> {
    return new Promise((resolve, reject) => {
      let q = this.queues.get(stream);
      if (!q) this.queues.set(stream, (q = { pending: [], active: 0 }));
      q.pending.push({ messages, resolve, reject });
      this.pump(stream, q);
    });
  }

  /** Starts writes of what is pending while fewer than WRITERS are in progress. */
  private pump(stream: string, q: StreamQueue): void {
    while (q.active < WRITERS && q.pending.length > 0) {
      // Whole publishes only: a batch is all or nothing.
      const take: Pending[] = [];
      let n = 0;
      while (q.pending.length > 0 && (take.length === 0 || n + q.pending[0].messages.length <= MAX_WRITE)) {
        const p = q.pending.shift()!;
        take.push(p);
        n += p.messages.length;
      }
      q.active++;
      this.write(stream, take.flatMap((p) => p.messages))
        .then(
          (results) => {
            let at = 0;
            for (const p of take) {
              p.resolve(results.slice(at, at + p.messages.length));
              at += p.messages.length;
            }
          },
          (err: Error) => {
            for (const p of take) p.reject(err);
          },
        )
        .finally(() => {
          q.active--;
          if (q.active === 0 && q.pending.length === 0) this.queues.delete(stream);
          else this.pump(stream, q);
        });
    }
  }

  private async write(stream: string, messages: PublishMessage[]): Promise<PublishResult[]> {
    for (let attempt = 0; ; attempt++) {
      let logNo = this.logNos.get(stream);
      if (logNo === undefined) {
        const found = await streamLogNo(this.pool, stream);
        if (found === undefined) throw new UnknownStream(`Stream "${stream}" does not exist.`);
        this.logNos.set(stream, (logNo = found.log_no));
        // Read afresh: another gateway's clock may run ahead (positions go on from it).
        this.lastPositions.set(stream, found.last_position);
      }
      // Positions are microseconds from now on (ahead only under a flood).
      // From the stream's last position as last seen, if that is ahead of this
      // clock (a flood, or another gateway's clock running ahead).
      const now = BigInt(Date.now()) * 1000n;
      const last = this.lastPositions.get(stream) ?? 0n;
      const from = last >= now ? last + 1n : now;
      await coverLog(this.pool, logNo, from, from + BigInt(messages.length), PARTITION_SECONDS);
      try {
        return messages.some((m) => m.idempotency_key !== undefined)
          ? await this.transaction(stream, logNo, messages)
          : await this.oneStatement(stream, logNo, messages);
      } catch (err) {
        if (attempt >= 2 || !(err instanceof StaleLogNo || err instanceof UnknownStream || isNoPartition(err))) throw err;
        // Made again under the same name, or gone: look it up again.
        this.logNos.delete(stream);
        forgetCover(logNo);
        if (err instanceof UnknownStream) throw err;
      }
    }
  }

  /**
   * Messages with idempotency keys: the keys already stored are known only
   * under the stream's lock (another process may be publishing them now), so
   * a transaction takes it and reads them, then stores the new messages in
   * one statement. One after the other: the read must start after the lock is
   * held, to see what the previous holder committed, and queueing queries on
   * a busy connection is deprecated in pg (a DeprecationWarning in the
   * gateway's output, and an error in pg 9).
   */
  private async transaction(stream: string, logNo: number, messages: PublishMessage[]): Promise<PublishResult[]> {
    const db = await this.pool.connect();
    let broken: Error | undefined;
    try {
      const keyed = [...new Set(messages.flatMap((m) => (m.idempotency_key === undefined ? [] : [m.idempotency_key])))];
      await db.query('BEGIN');
      const locked = await lockStream(db, stream);
      if (!locked || locked.log_no !== logNo) throw new StaleLogNo();
      const before = await storedKeys(db, logNo, keyed);
      // The new messages; a key's second copy (in the store or this batch) is answered with the first's position.
      const fresh: PublishMessage[] = [];
      const results: Array<PublishResult | string> = [];
      const firstOf = new Map<string, number>();
      for (const m of messages) {
        const k = m.idempotency_key;
        const earlier = k === undefined ? undefined : before.get(k);
        if (earlier !== undefined) results.push({ sequence: Number(earlier), duplicate: true });
        else if (k !== undefined && firstOf.has(k)) results.push(k);
        else {
          if (k !== undefined) firstOf.set(k, fresh.length);
          results.push({ sequence: fresh.length, duplicate: false });
          fresh.push(m);
        }
      }
      let first = 0n;
      if (fresh.length > 0) {
        const nowUs = BigInt(Date.now()) * 1000n;
        const stored = await publishRows(db, { name: stream, log_no: logNo }, nowUs, this.templates(stream, fresh, nowUs), isoFromMicros(nowUs), this.wakeFor(stream), {
          keys: [...firstOf.keys()],
          indexes: [...firstOf.values()],
        });
        if (stored === undefined) throw new StaleLogNo();
        first = stored;
        this.lastPositions.set(stream, first + BigInt(fresh.length) - 1n);
      }
      await db.query('COMMIT');
      return results.map((r) =>
        typeof r === 'string'
          ? { sequence: Number(first) + firstOf.get(r)!, duplicate: true }
          : r.duplicate
            ? r
            : { sequence: Number(first) + r.sequence, duplicate: false },
      );
    } catch (err) {
      await db.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    } finally {
      db.release(broken);
    }
  }

  /** Messages without idempotency keys: nothing to look up first, so one statement does it all. */
  private async oneStatement(stream: string, logNo: number, messages: PublishMessage[]): Promise<PublishResult[]> {
    const nowUs = BigInt(Date.now()) * 1000n;
    const first = await publishRows(this.pool, { name: stream, log_no: logNo }, nowUs, this.templates(stream, messages, nowUs), isoFromMicros(nowUs), this.wakeFor(stream));
    // Gone, or made again under the same name: write() looks it up again.
    if (first === undefined) throw new StaleLogNo();
    this.lastPositions.set(stream, first + BigInt(messages.length) - 1n);
    return messages.map((_, i) => ({ sequence: Number(first) + i, duplicate: false }));
  }

  /** The stored envelopes, their positions left for the buffer to fill in. */
  private templates(stream: string, messages: PublishMessage[], nowUs: bigint) {
    const publishedAt = isoFromMicros(nowUs);
    return messages.map((m) => {
      const key = m.key ?? m.subject;
      return {
        subject: m.subject,
        groupKey: key,
        template: envelopeTemplate({ stream, subject: m.subject, data: m.data, key, idempotencyKey: m.idempotency_key ?? null, publishedAt }),
      };
    });
  }
}
