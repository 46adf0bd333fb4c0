// Claim / ack / nack / visibility / dead letters at the buffer level, against a
// real Postgres.
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeAckId, encodeAckId } from '../src/buffer/ack-id.js';
import { ack, claim, modifyVisibility, nack, type ClaimOptions } from '../src/buffer/claim.js';
import { consumerStats, discardDeadLetters, listDeadLetters, retryDeadLetters } from '../src/buffer/dead-letters.js';
import type { Pool } from '../src/db/pool.js';
import { countMessages, createConsumer, insertMessages, insertSeries } from './helpers/buffer.js';
import { useBufferDb } from './helpers/pg.js';

const db = useBufferDb('pull_claim', { max: 12 });
let pool: Pool;
let seq = 0;

beforeAll(() => {
  pool = db.pool;
});

async function consumer(extra: Partial<ClaimOptions> = {}) {
  const consumerId = await createConsumer(pool, { name: `c${++seq}` });
  const opts: ClaimOptions = { consumerId, limit: 10, visibilityMs: 30_000, deadLetterBlocksGroup: false, ...extra };
  return { consumerId, opts };
}
const lsnsOf = (ms: { commitLsn: string }[]) => ms.map((m) => Number(m.commitLsn));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ack ids', () => {
  it('round-trip lsn, idx and token through 22 opaque base64url characters', () => {
    const id = encodeAckId('9223372036854775807', 2147483647, -2147483648);
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(decodeAckId(id)).toEqual({ commitLsn: '9223372036854775807', commitIdx: 2147483647, deliveryToken: -2147483648 });
    for (const bad of ['', 'x', 'not an ack id at all!!', 'A'.repeat(21), 'A'.repeat(23), 'AAAAAAAAAAAAAAAAAAAA=='])
      expect(decodeAckId(bad)).toBeNull();
  });
});

describe('claim', () => {
  it('hands out deliverable messages in commit order, each once, until acked', async () => {
    const { consumerId, opts } = await consumer();
    await insertMessages(pool, consumerId, [{ lsn: 30 }, { lsn: 10 }, { lsn: 20, idx: 1, group: 'x' }, { lsn: 20, idx: 0 }]);
    const first = await claim(pool, { ...opts, limit: 3 });
    expect(first.messages.map((m) => [Number(m.commitLsn), m.commitIdx])).toEqual([[10, 0], [20, 0], [20, 1]]);
    expect(first.messages.every((m) => m.deliverCount === 1)).toBe(true);
    expect(JSON.parse(first.messages[0].payload).record).toEqual({ id: 10 });
    const second = await claim(pool, opts);
    expect(lsnsOf(second.messages)).toEqual([30]);
    const none = await claim(pool, opts);
    expect(none.messages).toEqual([]);
    // Nothing is deliverable; the earliest in-flight visibility end is reported.
    expect(none.nextVisibleAt!.getTime()).toBeGreaterThan(Date.now() + 25_000);
    const out = await ack(pool, consumerId, [...first.messages, ...second.messages].map((m) => m.ackId));
    expect(out).toEqual({ applied: 4, ignored: 0 });
    expect((await countMessages(pool, consumerId)).total).toBe(0);
  });

  it('redelivers after the visibility timeout with a fresh ack_id; the stale one acks nothing', async () => {
    const { consumerId, opts } = await consumer({ visibilityMs: 150 });
    await insertMessages(pool, consumerId, [{ lsn: 1 }]);
    const [d1] = (await claim(pool, opts)).messages;
    expect((await claim(pool, opts)).messages).toEqual([]);
    await sleep(200);
    const [d2] = (await claim(pool, { ...opts, visibilityMs: 30_000 })).messages;
    expect(d2.commitLsn).toBe('1');
    expect(d2.deliverCount).toBe(2);
    expect(d2.ackId).not.toBe(d1.ackId);
    expect(await ack(pool, consumerId, [d1.ackId])).toEqual({ applied: 0, ignored: 1 });
    expect((await countMessages(pool, consumerId)).total).toBe(1);
    expect(await ack(pool, consumerId, [d2.ackId, d2.ackId])).toEqual({ applied: 1, ignored: 1 });
    expect(await ack(pool, consumerId, [d2.ackId])).toEqual({ applied: 0, ignored: 1 });
  });

  it('ignores malformed ids and ids of another consumer', async () => {
    const a = await consumer();
    const b = await consumer();
    await insertMessages(pool, a.consumerId, [{ lsn: 1 }]);
    const [m] = (await claim(pool, a.opts)).messages;
    expect(await ack(pool, b.consumerId, [m.ackId, 'garbage'])).toEqual({ applied: 0, ignored: 2 });
    expect(await nack(pool, a.consumerId, ['garbage'])).toEqual({ applied: 0, ignored: 1 });
    expect((await countMessages(pool, a.consumerId)).total).toBe(1);
  });

  it('nack makes a delivery visible at once; modify-visibility extends or shortens it', async () => {
    const { consumerId, opts } = await consumer({ visibilityMs: 60_000 });
    await insertMessages(pool, consumerId, [{ lsn: 1 }, { lsn: 2 }]);
    const [m1, m2] = (await claim(pool, opts)).messages;
    expect(await nack(pool, consumerId, [m1.ackId])).toEqual({ applied: 1, ignored: 0 });
    const again = await claim(pool, opts);
    expect(lsnsOf(again.messages)).toEqual([1]);
    expect(await modifyVisibility(pool, consumerId, [m2.ackId], 100)).toEqual({ applied: 1, ignored: 0 });
    await sleep(150);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([2]);
    // m2's id is stale now: changing its visibility does nothing.
    expect(await modifyVisibility(pool, consumerId, [m2.ackId], 0)).toEqual({ applied: 0, ignored: 1 });
    const [m1b] = again.messages;
    expect(await modifyVisibility(pool, consumerId, [m1b.ackId], 600_000)).toEqual({ applied: 1, ignored: 0 });
    const { rows } = await pool.query(
      `SELECT extract(epoch FROM visible_at - now()) AS s FROM sluice.messages WHERE consumer_id = $1 AND commit_lsn = 1`,
      [consumerId],
    );
    expect(Number(rows[0].s)).toBeGreaterThan(590);
  });

  it('keeps per-group order: no later message of a group while an earlier one is pending', async () => {
    const { consumerId, opts } = await consumer();
    await insertMessages(pool, consumerId, [
      { lsn: 1, group: 'a' },
      { lsn: 2, group: 'a' },
      { lsn: 3, group: 'b' },
      { lsn: 4, group: 'a' },
      { lsn: 5, group: 'b' },
      { lsn: 6, group: null },
      { lsn: 7, group: null },
    ]);
    const c1 = await claim(pool, opts);
    expect(lsnsOf(c1.messages)).toEqual([1, 3, 6, 7]);
    expect((await claim(pool, opts)).messages).toEqual([]);
    await ack(pool, consumerId, [c1.messages[0].ackId]);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([2]);
    // A nacked head is handed out again before anything after it in its group.
    await nack(pool, consumerId, [c1.messages[1].ackId]);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([3]);
  });

  // A claim with room hands out rows as it takes them in from the log
  // (sluice.admit stamps them in the INSERT): a row whose group is out must
  // be taken in waiting, not handed out.
  it('takes a later change of a group that is out in waiting, and hands it out after the ack', async () => {
    const { consumerId, opts } = await consumer();
    await insertMessages(pool, consumerId, [{ lsn: 1, group: 'a' }]);
    const c1 = await claim(pool, opts);
    expect(lsnsOf(c1.messages)).toEqual([1]);
    await insertMessages(pool, consumerId, [{ lsn: 2, group: 'a' }, { lsn: 3, group: 'b' }, { lsn: 4, group: 'b' }]);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([3]);
    expect((await countMessages(pool, consumerId)).inFlight).toBe(2);
    await ack(pool, consumerId, [c1.messages[0].ackId]);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([2]);
  });

  it('with grouping off (NULL group keys) hands out everything at once', async () => {
    const { consumerId, opts } = await consumer();
    await insertMessages(pool, consumerId, [1, 2, 3, 4].map((lsn) => ({ lsn, group: null })));
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([1, 2, 3, 4]);
  });

  it('never lets in-flight messages exceed max_ack_pending, even with concurrent claims', async () => {
    const { consumerId, opts } = await consumer({ maxAckPending: 25, limit: 7 });
    await insertMessages(pool, consumerId, Array.from({ length: 200 }, (_, i) => ({ lsn: i + 1 })));
    const results = await Promise.all(Array.from({ length: 10 }, () => claim(pool, opts)));
    const got = results.flatMap((r) => r.messages);
    expect(got.length).toBe(25);
    expect(new Set(got.map((m) => m.commitLsn)).size).toBe(25);
    expect((await countMessages(pool, consumerId)).inFlight).toBe(25);
    expect((await claim(pool, opts)).messages).toEqual([]);
    await ack(pool, consumerId, got.slice(0, 3).map((m) => m.ackId));
    expect((await claim(pool, opts)).messages.length).toBe(3);
  });

  it('dead-letters after max_deliver; the group moves on; retry brings them back in order', async () => {
    const { consumerId, opts } = await consumer({ maxDeliver: 2, visibilityMs: 60_000 });
    await insertMessages(pool, consumerId, [
      { lsn: 1, group: 'a' },
      { lsn: 2, group: 'a' },
      { lsn: 3, group: 'b' },
    ]);
    for (let round = 0; round < 2; round++) {
      const c = await claim(pool, opts);
      expect(lsnsOf(c.messages)).toEqual([1, 3]);
      await nack(pool, consumerId, c.messages.map((m) => m.ackId));
    }
    // Third claim: both exhausted and visible → dead; lsn 2 is a's head now.
    const c3 = await claim(pool, opts);
    expect(lsnsOf(c3.messages)).toEqual([2]);
    // The claim says which it dead-lettered, with their groups (for the log and /metrics).
    expect(c3.deadLettered?.map((d) => [d.commitLsn, d.groupKey, d.deliverCount]).sort()).toEqual([['1', 'a', 2], ['3', 'b', 2]]);
    expect(await consumerStats(pool, consumerId)).toMatchObject({ pending: 0, in_flight: 1, dead_lettered: 2 });
    const dead = await listDeadLetters(pool, consumerId, { limit: 10 });
    expect(dead.map((d) => [d.commit_lsn, d.deliver_count])).toEqual([['1', 2], ['3', 2]]);
    expect((await listDeadLetters(pool, consumerId, { limit: 10, after: dead[0] })).map((d) => d.commit_lsn)).toEqual(['3']);
    await ack(pool, consumerId, c3.messages.map((m) => m.ackId));
    expect(await retryDeadLetters(pool, consumerId, 'all')).toBe(2);
    const back = await claim(pool, opts);
    expect(lsnsOf(back.messages)).toEqual([1, 3]);
    expect(back.messages.map((m) => m.deliverCount)).toEqual([1, 1]);
    await ack(pool, consumerId, back.messages.map((m) => m.ackId));
    expect((await countMessages(pool, consumerId)).total).toBe(0);
  });

  it('dead letters keep blocking their group when the consumer says so; discard unblocks', async () => {
    const { consumerId, opts } = await consumer({ maxDeliver: 1, deadLetterBlocksGroup: true });
    await insertMessages(pool, consumerId, [{ lsn: 1, group: 'a' }, { lsn: 2, group: 'a' }, { lsn: 3, group: 'b' }]);
    const c1 = await claim(pool, opts);
    await nack(pool, consumerId, [c1.messages[0].ackId]);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([]);
    expect((await countMessages(pool, consumerId)).dead).toBe(1);
    expect(await discardDeadLetters(pool, consumerId, [{ commit_lsn: '1', commit_idx: 0 }])).toBe(1);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([2]);
  });

  it('retries and discards only the named dead letters', async () => {
    const { consumerId, opts } = await consumer({ maxDeliver: 1 });
    await insertMessages(pool, consumerId, [1, 2, 3].map((lsn) => ({ lsn })));
    await nack(pool, consumerId, (await claim(pool, opts)).messages.map((m) => m.ackId));
    expect((await claim(pool, opts)).messages).toEqual([]);
    expect(await retryDeadLetters(pool, consumerId, [{ commit_lsn: '2', commit_idx: 0 }, { commit_lsn: '99', commit_idx: 0 }])).toBe(1);
    expect(await discardDeadLetters(pool, consumerId, [{ commit_lsn: '3', commit_idx: 0 }])).toBe(1);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([2]);
    expect(await discardDeadLetters(pool, consumerId, 'all')).toBe(1);
    expect(await consumerStats(pool, consumerId)).toMatchObject({ pending: 0, in_flight: 1, dead_lettered: 0 });
  });

  it('reports stats', async () => {
    const { consumerId, opts } = await consumer();
    expect(await consumerStats(pool, consumerId)).toEqual({ pending: 0, in_flight: 0, dead_lettered: 0, oldest_pending_age_ms: null, pending_at_least: false });
    await insertMessages(pool, consumerId, [1, 2, 3].map((lsn) => ({ lsn })));
    await claim(pool, { ...opts, limit: 1 });
    await sleep(20);
    const s = await consumerStats(pool, consumerId);
    expect(s).toMatchObject({ pending: 2, in_flight: 1, dead_lettered: 0 });
    expect(s.oldest_pending_age_ms).toBeGreaterThanOrEqual(15);
  });

  it('finds a group head far beyond a window full of one blocked group (the group sweep)', async () => {
    const { consumerId, opts } = await consumer();
    await insertMessages(pool, consumerId, [
      ...Array.from({ length: 2000 }, (_, i) => ({ lsn: i + 1, group: 'hot' })),
      { lsn: 5000, group: 'cold' },
    ]);
    expect(lsnsOf((await claim(pool, opts)).messages)).toEqual([1, 5000]);
  });

  it('keeps each claim cheap however long the blocked backlog', async () => {
    const { consumerId, opts } = await consumer();
    // 100,000 messages in 3 groups: after the first claim every group is in flight.
    await insertSeries(pool, consumerId, 1, 100_000, 3);
    expect((await claim(pool, opts)).messages.length).toBe(3);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      expect((await claim(pool, opts)).messages).toEqual([]);
      times.push(performance.now() - started);
    }
    // Scanning the backlog would take hundreds of milliseconds; a claim reads
    // a bounded window and sweep.
    expect(times.sort((a, b) => a - b)[2]).toBeLessThan(30);
  });

  it('finds a row inserted below the cursor once the periodic full pass is due', async () => {
    const { consumerId, opts } = await consumer();
    await insertMessages(pool, consumerId, [{ lsn: 100 }, { lsn: 101 }]);
    await ack(pool, consumerId, (await claim(pool, opts)).messages.map((m) => m.ackId));
    // A never-delivered row older than everything the cursor has passed (as a
    // path that gives rows back below the cursor would leave it).
    await insertMessages(pool, consumerId, [{ lsn: 50 }, { lsn: 200 }]);
    await pool.query(`INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key) VALUES ($1, 50, 0, 'g50')`, [consumerId]);
    const soon = await claim(pool, opts);
    await pool.query(`UPDATE sluice.claim_cursors SET rescan_at = now() - interval '1 second' WHERE consumer_id = $1`, [consumerId]);
    const later = await claim(pool, opts);
    expect([...lsnsOf(soon.messages), ...lsnsOf(later.messages)].sort()).toEqual([200, 50]);
  });

  it('holds max_ack_pending through nacks, expiries, acks and concurrent claims', async () => {
    const max = 12;
    const { consumerId, opts } = await consumer({ maxAckPending: max, visibilityMs: 80 });
    await insertMessages(pool, consumerId, Array.from({ length: 400 }, (_, i) => ({ lsn: i + 1, group: `g${i % 40}` })));
    const inFlightSeen: number[] = [];
    const worker = async (seed: number) => {
      for (let round = 0; round < 25; round++) {
        const got = (await claim(pool, { ...opts, limit: 1 + ((seed + round) % 5) })).messages;
        inFlightSeen.push((await countMessages(pool, consumerId)).inFlight);
        const ids = got.map((m) => m.ackId);
        if (round % 4 === 0) await nack(pool, consumerId, ids);
        else if (round % 4 === 1) await sleep(90); // let them expire
        else await ack(pool, consumerId, ids);
      }
    };
    await Promise.all([1, 2, 3, 4].map(worker));
    expect(inFlightSeen.length).toBe(100);
    expect(Math.max(...inFlightSeen)).toBeLessThanOrEqual(max);
    expect(Math.max(...inFlightSeen)).toBeGreaterThan(max / 2);
  });
});

