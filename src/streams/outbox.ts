// Stores the outbox messages capture met (src/capture/outbox.ts) in their
// streams' logs, inside capture's buffer transaction: after the source's
// changes before them and before the source's position moves past them, so
// they commit with those changes or not at all. Positions are handed out
// under each stream's lock, as for the publish API (src/streams/publisher.ts),
// so the two interleave in commit order; messages of one stream from one
// source keep their transactions' commit order.
import type { OutboxMessage } from '../capture/outbox.js';
import type { Pool, PoolClient } from '../db/pool.js';
import type { LogRow } from '../buffer/writer.js';
import { coverLog, forgetCover } from '../log/partitions.js';
import { envelope } from './envelope.js';
import { lockStream, storedKeys, storePublished, streamLogNo, type PublishedRow } from './queries.js';

/** How much time a new partition of a stream's log should span (as the publisher's). */
const PARTITION_SECONDS = 3600;
/**
 * Positions covered ahead of the clock before the transaction: the positions
 * it hands out are read from the clock later, after waiting its turn (the
 * previous write's commit, the stream's lock).
 */
const COVER_AHEAD_US = 60_000_000n;

/** Per stream name: its log number and last position, as last seen (a stream made again gets a new number). */
const seen = new Map<string, { logNo: number; last: bigint }>();

export interface OutboxWrite {
  sourceName: string;
  messages: OutboxMessage[];
  /** Consumers of a stream, to wake when its messages commit. */
  wake(stream: string): readonly string[];
  /** Messages to a stream that does not exist were not stored. */
  dropped?(stream: string, count: number): void;
}

function byStream(messages: OutboxMessage[]): Map<string, OutboxMessage[]> {
  const out = new Map<string, OutboxMessage[]>();
  for (const m of messages) {
    const list = out.get(m.stream);
    if (list) list.push(m);
    else out.set(m.stream, [m]);
  }
  return out;
}

/**
 * Before the transaction: makes sure the streams' log partitions cover the
 * positions it will hand out (making a partition inside it would hold a lock
 * on the whole log until capture commits).
 */
export async function coverOutbox(pool: Pool, messages: OutboxMessage[]): Promise<void> {
  for (const [stream, list] of byStream(messages)) {
    let s = seen.get(stream);
    if (!s) {
      const found = await streamLogNo(pool, stream);
      if (found === undefined) continue; // dropped, and said so, in storeOutbox
      seen.set(stream, (s = { logNo: found.log_no, last: found.last_position }));
    }
    const now = BigInt(Date.now()) * 1000n;
    const from = s.last >= now ? s.last + 1n : now;
    await coverLog(pool, s.logNo, from, from + BigInt(list.length) + COVER_AHEAD_US, PARTITION_SECONDS);
  }
}

/** A write failed for want of a partition: look everything up again. */
export function forgetOutboxCovers(): void {
  for (const s of seen.values()) forgetCover(s.logNo);
  seen.clear();
}

/** The message's own idempotency key, or one unique per transaction and message, the same however often it is served. */
export function outboxIdempotencyKey(sourceName: string, m: OutboxMessage): string {
  return m.idempotencyKey ?? `outbox:${sourceName}:${m.commitLsn}:${m.commitIdx}`;
}

/**
 * The message as a row of the source's own log, at its place among its
 * transaction's changes (migrations/0023_source_outbox.sql): the consumers of
 * the source that name its stream in `outbox` read it there, in commit order
 * with the changes around it. Written with those changes, so a crash stores it
 * again exactly when it stores them again. Its envelope is the stream's, with
 * no sequence (a position in the stream, handed out only when the transaction
 * is stored whole) and the same idempotency key.
 */
export function outboxLogRow(sourceName: string, m: OutboxMessage, wake: readonly string[]): LogRow {
  return {
    commitLsn: m.commitLsn,
    commitIdx: m.commitIdx,
    schema: '',
    table: m.stream,
    action: 'publish',
    groupKey: m.key,
    committedAt: m.committedAt,
    payload: envelope({
      stream: m.stream,
      subject: m.subject,
      data: m.data,
      key: m.key,
      idempotencyKey: outboxIdempotencyKey(sourceName, m),
      position: null,
      publishedAt: m.committedAt,
      outbox: { source: sourceName, commitLsn: m.commitLsn },
    }),
    wake,
  };
}

/** Inside capture's transaction, after the previous write committed. */
export async function storeOutbox(db: PoolClient, w: OutboxWrite): Promise<void> {
  // Streams in name order: two gateways' captures of different sources lock
  // them in the same order, so neither waits for the other in a cycle.
  const streams = [...byStream(w.messages)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [stream, list] of streams) {
    const locked = await lockStream(db, stream);
    if (!locked) {
      seen.delete(stream);
      w.dropped?.(stream, list.length);
      continue;
    }
    const s = seen.get(stream);
    if (!s || s.logNo !== locked.log_no) seen.set(stream, { logNo: locked.log_no, last: locked.last_position });
    else s.last = locked.last_position;
    const keys = [...new Set(list.flatMap((m) => (m.idempotencyKey === null ? [] : [m.idempotencyKey])))];
    const stored = await storedKeys(db, locked.log_no, keys);
    const nowUs = BigInt(Date.now()) * 1000n;
    let position = locked.last_position >= nowUs ? locked.last_position + 1n : nowUs;
    const rows: PublishedRow[] = [];
    for (const m of list) {
      // Published before under this key (by the API, or an earlier transaction): stored once.
      if (m.idempotencyKey !== null && stored.has(m.idempotencyKey)) continue;
      const p = position++;
      if (m.idempotencyKey !== null) stored.set(m.idempotencyKey, p);
      rows.push({
        position: p,
        subject: m.subject,
        groupKey: m.key,
        key: m.idempotencyKey,
        publishedAt: m.committedAt,
        payload: envelope({
          stream,
          subject: m.subject,
          data: m.data,
          key: m.key,
          idempotencyKey: outboxIdempotencyKey(w.sourceName, m),
          position: p,
          publishedAt: m.committedAt,
          outbox: { source: w.sourceName, commitLsn: m.commitLsn },
        }),
      });
    }
    if (rows.length > 0) await storePublished(db, { name: stream, log_no: locked.log_no }, rows, w.wake(stream));
  }
}
