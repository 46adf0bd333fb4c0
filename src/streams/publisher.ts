// Publishing to a stream: messages in, durable in the retained log out. Every
// publish to a stream from this process joins the next write to it (group
// commit: one transaction for the publishes that arrived while the previous
// one was committing), so a burst of small publishes costs a few
// transactions, not one each. A write holds the stream's row, so publishers
// in other gateway processes take turns with it, and positions are handed out
// in commit order: a consumer that has read up to a position never meets an
// earlier one later (migrations/0021_streams.sql).
import { isoFromMicros } from '../capture/commit-time.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { coverLog, forgetCover, isNoPartition } from '../log/partitions.js';
import { envelope } from './envelope.js';
import { lockStream, storedKeys, storePublished, streamLogNo, type PublishedRow } from './queries.js';

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
  writing: boolean;
}

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
      if (!q) this.queues.set(stream, (q = { pending: [], writing: false }));
      q.pending.push({ messages, resolve, reject });
      if (!q.writing) void this.drain(stream, q);
    });
  }

  private async drain(stream: string, q: StreamQueue): Promise<void> {
    q.writing = true;
    try {
      while (q.pending.length > 0) {
        // Whole publishes only: a batch is all or nothing.
        const take: Pending[] = [];
        let n = 0;
        while (q.pending.length > 0 && (take.length === 0 || n + q.pending[0].messages.length <= MAX_WRITE)) {
          const p = q.pending.shift()!;
          take.push(p);
          n += p.messages.length;
        }
        try {
          const results = await this.write(stream, take.flatMap((p) => p.messages));
          let at = 0;
          for (const p of take) {
            p.resolve(results.slice(at, at + p.messages.length));
            at += p.messages.length;
          }
        } catch (err) {
          for (const p of take) p.reject(err as Error);
        }
      }
    } finally {
      q.writing = false;
      if (q.pending.length === 0) this.queues.delete(stream);
    }
  }

  private async write(stream: string, messages: PublishMessage[]): Promise<PublishResult[]> {
    for (let attempt = 0; ; attempt++) {
      let logNo = this.logNos.get(stream);
      if (logNo === undefined) {
        const found = await streamLogNo(this.pool, stream);
        if (found === undefined) throw new UnknownStream(`Stream "${stream}" does not exist.`);
        this.logNos.set(stream, (logNo = found));
      }
      // Positions are microseconds from now on (ahead only under a flood).
      // From the stream's last position as last seen, if that is ahead of this
      // clock (a flood, or another gateway's clock running ahead).
      const now = BigInt(Date.now()) * 1000n;
      const last = this.lastPositions.get(stream) ?? 0n;
      const from = last >= now ? last + 1n : now;
      await coverLog(this.pool, logNo, from, from + BigInt(messages.length), PARTITION_SECONDS);
      try {
        return await withTransaction(this.pool, async (db) => {
          const locked = await lockStream(db, stream);
          if (!locked) throw new UnknownStream(`Stream "${stream}" does not exist.`);
          if (locked.log_no !== logNo) throw new StaleLogNo();
          this.lastPositions.set(stream, locked.last_position);
          const keyed = [...new Set(messages.flatMap((m) => (m.idempotency_key === undefined ? [] : [m.idempotency_key])))];
          const before = await storedKeys(db, locked.log_no, keyed);
          // Read the clock again: the lock may have been waited for.
          const nowUs = BigInt(Date.now()) * 1000n;
          let position = locked.last_position >= nowUs ? locked.last_position + 1n : nowUs;
          const publishedAt = isoFromMicros(nowUs);
          const rows: PublishedRow[] = [];
          const results: PublishResult[] = [];
          const seen = new Map(before);
          for (const m of messages) {
            const earlier = m.idempotency_key === undefined ? undefined : seen.get(m.idempotency_key);
            if (earlier !== undefined) {
              results.push({ sequence: Number(earlier), duplicate: true });
              continue;
            }
            const p = position++;
            if (m.idempotency_key !== undefined) seen.set(m.idempotency_key, p);
            const key = m.key ?? m.subject;
            rows.push({
              position: p,
              subject: m.subject,
              groupKey: key,
              key: m.idempotency_key ?? null,
              publishedAt,
              payload: envelope({ stream, subject: m.subject, data: m.data, key, idempotencyKey: m.idempotency_key ?? null, position: p, publishedAt }),
            });
            results.push({ sequence: Number(p), duplicate: false });
          }
          if (rows.length > 0) await storePublished(db, { name: stream, log_no: locked.log_no }, rows, this.wakeFor(stream));
          return results;
        });
      } catch (err) {
        if (attempt >= 2 || !(err instanceof StaleLogNo || err instanceof UnknownStream || isNoPartition(err))) throw err;
        // Made again under the same name, or gone: look it up again.
        this.logNos.delete(stream);
        forgetCover(logNo);
        if (err instanceof UnknownStream) throw err;
      }
    }
  }
}
