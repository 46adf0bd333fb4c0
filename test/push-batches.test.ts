// Webhook batches as rows of sluice.webhook_batches (migrations/0005): the
// upgrade from 0004's batch columns, claims forming several batches at once,
// failures (split, dead letter), stats, clearing a capture tail, deleting a
// consumer and vacuuming the table. Straight against the SQL, no dispatcher.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { claim as claimPull } from '../src/buffer/claim.js';
import { consumerStats, listDeadLetters } from '../src/buffer/dead-letters.js';
import { clearTail } from '../src/buffer/writer.js';
import { deleteConsumer } from '../src/config/queries.js';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { vacuumBatchesIfNeeded, vacuumBufferIfNeeded } from '../src/jobs/vacuum.js';
import { ackBatches, claimBatches, recordFailure, type ClaimOptions, type ClaimedBatch, type FailureRecord } from '../src/push/queries.js';
import { partition, splitInto } from '../src/push/split.js';
import { consumerConfig, eventually, insertConsumer } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { ensureSource, startAtEarliest } from './helpers/buffer.js';
import { insertMessages, insertWebhookConsumer, storedPayload, webhookSettings, type FixtureMessage } from './helpers/receiver.js';

let pg: TestPg;
let pool: Pool;
beforeAll(async () => {
  pg = await startTestPg();
  pool = createPool(await pg.createDatabase('push_batches'));
  await migrate(pool);
});
afterEach(async () => {
  await pool.query(
    'DELETE FROM sluice.messages; DELETE FROM sluice.webhook_batches; DELETE FROM sluice.webhook_attempts; DELETE FROM sluice.consumers',
  );
});
afterAll(async () => {
  await pool?.end();
  await pg?.stop();
});

const URL_ = 'http://127.0.0.1:9/hook';
const webhook = (name: string, source?: string) => insertWebhookConsumer(pool, name, webhookSettings(URL_), source ? { source } : {});
/** A consumer (config as given) on a stored source, reading its log from the start. */
async function consumerOn(c: ReturnType<typeof consumerConfig>): Promise<string> {
  await ensureSource(pool, c.source);
  const id = await insertConsumer(pool, c);
  await startAtEarliest(pool, id);
  return id;
}

/** Messages at consecutive lsns (idx 0) with the given groups (null: ungrouped). */
function rows(firstLsn: number, groups: Array<string | null>): FixtureMessage[] {
  return groups.map((group, i) => ({ lsn: firstLsn + i, idx: 0, group, seq: i }));
}

const claimOpts = (consumerId: string, o: Partial<ClaimOptions> = {}): ClaimOptions => ({
  consumerId,
  batches: 10,
  batchSize: 3,
  leaseMs: 60_000,
  deadLetterBlocksGroup: false,
  fresh: true,
  ...o,
});

const keysOf = (b: ClaimedBatch) => b.lsns.map(Number);

function facts(b: ClaimedBatch, status = 500) {
  return { attempt: b.attempt, startedAt: new Date(), durationMs: 3, status, error: null, excerpt: null };
}

function failure(b: ClaimedBatch, f: Partial<FailureRecord>): FailureRecord {
  return {
    outcome: 'retry',
    delayMs: 60_000,
    parts: b.lsns.map(() => b.batchId),
    lastError: 'HTTP 500',
    facts: facts(b),
    pauseReason: null,
    disableAfterMs: 3_600_000,
    ...f,
  };
}

interface BatchRow {
  batch_id: string;
  delivery_token: number;
  attempt: number;
  first_attempt_at: Date;
  last_attempt_at: Date;
  due_at: Date;
  lsns: number[];
  idxs: number[];
  group_keys: Array<string | null>;
  last_error: string | null;
  due_in_ms: number;
}

async function batchRows(db: Pool, consumerId: string): Promise<BatchRow[]> {
  const { rows: got } = await db.query(
    `SELECT batch_id, delivery_token, attempt, first_attempt_at, last_attempt_at, due_at, lsns, idxs, group_keys, last_error,
       (extract(epoch FROM due_at - now()) * 1000)::float8 AS due_in_ms
     FROM sluice.webhook_batches WHERE consumer_id = $1 ORDER BY lsns[1], idxs[1]`,
    [consumerId],
  );
  return got.map((r) => ({ ...r, lsns: r.lsns.map(Number) }));
}

/**
 * What must hold whenever batches are out: no message in two batches, no group
 * in two batches, a batch's messages in commit order, and a group's messages in
 * its batch are the head of what is left of the group (consecutive, oldest first).
 */
async function checkInvariants(consumerId: string): Promise<void> {
  const batches = await batchRows(pool, consumerId);
  const { rows: msgs } = await pool.query<{ lsn: string; idx: number; g: string | null }>(
    `SELECT commit_lsn AS lsn, commit_idx AS idx, group_key AS g FROM sluice.messages
     WHERE consumer_id = $1 AND state = 0 ORDER BY commit_lsn, commit_idx`,
    [consumerId],
  );
  const keys = new Set<string>();
  const groupOwner = new Map<string, string>();
  for (const b of batches) {
    const ks = b.lsns.map((l, i) => [l, b.idxs[i]] as const);
    const sorted = [...ks].sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    expect(ks, `batch ${b.batch_id} in commit order`).toEqual(sorted);
    for (const [l, i] of ks) {
      const k = `${l}:${i}`;
      expect(keys.has(k), `message ${k} in two batches`).toBe(false);
      keys.add(k);
    }
    for (const g of new Set(b.group_keys)) {
      if (g === null) continue;
      expect(groupOwner.get(g) ?? b.batch_id, `group ${g} in two batches`).toBe(b.batch_id);
      groupOwner.set(g, b.batch_id);
      const inBatch = ks.filter((_, i) => b.group_keys[i] === g).map(([l, i]) => `${l}:${i}`);
      const head = msgs
        .filter((m) => m.g === g)
        .slice(0, inBatch.length)
        .map((m) => `${m.lsn}:${m.idx}`);
      expect(inBatch, `group ${g}: its batch holds the head of the group`).toEqual(head);
    }
  }
}

describe('upgrade from 0004', () => {
  it('moves batches out (0004: columns on messages) into webhook_batches, in commit order, and clears the columns', async () => {
    const url = await pg.createDatabase('push_batches_upgrade');
    const db = createPool(url);
    // migrate() reads a folder: one holding 0001-0004 only is the database before the upgrade.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-0004-'));
    try {
      const before = readMigrations().filter((m) => m.id <= 4);
      expect(before.map((m) => m.id)).toEqual([1, 2, 3, 4]);
      for (const m of before) copyFileSync(path.join(MIGRATIONS_DIR, m.name), path.join(dir, m.name));
      expect(await migrate(db, dir)).toEqual(before.map((m) => m.name));

      // Consumers on stored sources (0010 moves their payloads into the log).
      await ensureSource(db, 'src');
      const w = await insertConsumer(
        db,
        consumerConfig('old-hook', 'src', ['public.orders'], { kind: 'webhook', pull: undefined, webhook: webhookSettings(URL_) }),
      );
      const p = await insertConsumer(db, consumerConfig('old-pull', 'src', ['public.orders']));
      // 0004's buffer: one row per (consumer, change), payload included.
      const insertMessages = (consumer: string, m: FixtureMessage[]) =>
        db.query(
          `INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, payload)
           SELECT $1, l, i, g, p FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[]) AS t(l, i, g, p)`,
          [consumer, m.map((x) => x.lsn), m.map((x) => x.idx), m.map((x) => x.group), m.map((x) => storedPayload(x.lsn, x.idx, x.group ?? 'none', x.seq))],
        );
      // Stored out of commit order, so only the migration's ORDER BY can put the keys in order.
      const ms: FixtureMessage[] = [
        { lsn: 1002, idx: 0, group: 'a', seq: 1 },
        { lsn: 1003, idx: 1, group: null, seq: 0 },
        { lsn: 1000, idx: 0, group: 'a', seq: 0 },
        { lsn: 1005, idx: 0, group: 'a', seq: 2 },
        { lsn: 1001, idx: 0, group: 'b', seq: 0 },
        { lsn: 1003, idx: 0, group: 'c', seq: 0 },
        { lsn: 1004, idx: 0, group: 'd', seq: 0 },
        { lsn: 1006, idx: 0, group: 'e', seq: 0 },
      ];
      for (const m of ms) await insertMessages(w, [m]);
      await insertMessages(p, [{ lsn: 1000, idx: 0, group: 'a', seq: 0 }]);

      // 0004's way: batch A (groups a, b) backing off after its third attempt; batch B
      // (group c and an ungrouped row) leased by a process that died (due again).
      const A = '00000000-0000-4000-8000-00000000000a';
      const B = '00000000-0000-4000-8000-00000000000b';
      await db.query(
        `UPDATE sluice.messages SET batch_id = $2, delivery_token = 11, deliver_count = 3,
           visible_at = now() + interval '1 hour', first_attempt_at = '2026-01-01T00:00:00Z',
           last_delivered_at = '2026-01-01T00:05:00Z', last_error = 'HTTP 500'
         WHERE consumer_id = $1 AND commit_lsn IN (1000, 1001, 1002)`,
        [w, A],
      );
      await db.query(
        `UPDATE sluice.messages SET batch_id = $2, delivery_token = 22, deliver_count = 1,
           visible_at = now() - interval '1 minute', first_attempt_at = '2026-01-01T01:00:00Z',
           last_delivered_at = '2026-01-01T01:00:00Z'
         WHERE consumer_id = $1 AND commit_lsn = 1003`,
        [w, B],
      );
      // A dead letter (0004 dropped its batch identity), and a pull row in flight.
      await db.query(`UPDATE sluice.messages SET state = 1, deliver_count = 5, last_error = 'HTTP 400' WHERE consumer_id = $1 AND commit_lsn = 1006`, [w]);
      await db.query(`UPDATE sluice.messages SET delivery_token = 99, deliver_count = 1, visible_at = now() + interval '1 hour' WHERE consumer_id = $1`, [p]);
      const visible = async (lsn: number) =>
        (await db.query<{ v: Date }>('SELECT visible_at AS v FROM sluice.messages WHERE consumer_id = $1 AND commit_lsn = $2 LIMIT 1', [w, lsn])).rows[0].v;
      const dueA = await visible(1000);
      const dueB = await visible(1003);
      // 0010 moves payloads to the log and adds the replay flag, 0034 the pushed flag: the rest of each row stays.
      const state = (rows: any[]) => rows.map(({ payload, replay, pushed, ...r }) => r);
      const pullBefore = state((await db.query('SELECT * FROM sluice.messages WHERE consumer_id = $1', [p])).rows);
      const deadBefore = state((await db.query('SELECT * FROM sluice.messages WHERE consumer_id = $1 AND state = 1', [w])).rows);

      expect(await migrate(db)).toEqual(readMigrations().filter((m) => m.id > 4).map((m) => m.name));

      const got = await batchRows(db, w);
      expect(got.map(({ due_in_ms, ...r }) => r)).toEqual([
        {
          batch_id: A,
          delivery_token: 11,
          attempt: 3,
          first_attempt_at: new Date('2026-01-01T00:00:00Z'),
          last_attempt_at: new Date('2026-01-01T00:05:00Z'),
          due_at: dueA,
          lsns: [1000, 1001, 1002],
          idxs: [0, 0, 0],
          group_keys: ['a', 'b', 'a'],
          last_error: 'HTTP 500',
        },
        {
          batch_id: B,
          delivery_token: 22,
          attempt: 1,
          first_attempt_at: new Date('2026-01-01T01:00:00Z'),
          last_attempt_at: new Date('2026-01-01T01:00:00Z'),
          due_at: dueB,
          lsns: [1003, 1003],
          idxs: [0, 1],
          group_keys: ['c', null],
          last_error: null,
        },
      ]);
      expect(await batchRows(db, p)).toEqual([]);

      // The webhook rows no longer say anything about batches; the dead letter and the pull row are as they were.
      const { rows: cols } = await db.query(
        `SELECT commit_lsn::int AS lsn, commit_idx AS idx, batch_id, delivery_token, first_attempt_at, visible_at = '-infinity' AS never
         FROM sluice.messages WHERE consumer_id = $1 AND state = 0 ORDER BY 1, 2`,
        [w],
      );
      expect(cols).toHaveLength(7);
      for (const c of cols) expect(c).toMatchObject({ batch_id: null, delivery_token: null, first_attempt_at: null, never: true });
      expect(state((await db.query('SELECT * FROM sluice.messages WHERE consumer_id = $1 AND state = 1', [w])).rows)).toEqual(deadBefore);
      expect(state((await db.query('SELECT * FROM sluice.messages WHERE consumer_id = $1', [p])).rows)).toEqual(pullBefore);

      // Claimed after the upgrade: B is due (same id, next attempt, whole); A still blocks a and b;
      // the only fresh message free to go is d's.
      const { batches } = await claimBatches(db, claimOpts(w, { batchSize: 10 }));
      expect(batches.map((b) => [b.batchId, b.attempt, keysOf(b), b.idxs, b.groups])).toEqual([
        [B, 2, [1003, 1003], [0, 1], ['c', null]],
        [expect.any(String), 1, [1004], [0], ['d']],
      ]);
      expect(batches[0].firstAttemptAt).toEqual(new Date('2026-01-01T01:00:00Z'));
      // A moved batch acks by its id like any other.
      expect(await ackBatches(db, w, 'test', [{ batch: batches[0], facts: facts(batches[0], 200) }])).toBe(2);
      expect((await batchRows(db, w)).map((b) => b.batch_id)).toEqual([A, batches[1].batchId]);
    } finally {
      await db.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('claims of several batches', () => {
  // a a b - a c - b c a - d d b   (-: ungrouped)
  const groups = ['a', 'a', 'b', null, 'a', 'c', null, 'b', 'c', 'a', null, 'd', 'd', 'b'];

  it('never puts a group in two batches, keeps a group\'s consecutive messages together, and claims ungrouped rows once', async () => {
    const id = await webhook('several');
    await insertMessages(pool, id, rows(1000, groups));

    const first = await claimBatches(pool, claimOpts(id));
    expect(first.batches.map((b) => [keysOf(b), b.groups])).toEqual([
      [[1000, 1001, 1002], ['a', 'a', 'b']],
      [[1003, 1005, 1006], [null, 'c', null]],
      [[1010, 1011, 1012], [null, 'd', 'd']],
    ]);
    expect(new Set(first.batches.map((b) => b.batchId)).size).toBe(3);
    expect(first.batches.every((b) => b.attempt === 1)).toBe(true);
    // What the claim returned is what the table says is out.
    const out = await batchRows(pool, id);
    expect(out.map((b) => [b.batch_id, b.lsns, b.group_keys, b.delivery_token])).toEqual(
      first.batches.map((b) => [b.batchId, keysOf(b), b.groups, b.token]),
    );
    expect(out.every((b) => b.attempt === 1 && b.due_in_ms > 50_000 && b.due_in_ms <= 60_000)).toBe(true);
    await checkInvariants(id);

    // While they are out: nothing more (every group left is blocked, the ungrouped rows are out);
    // nextDueAt is the first lease end.
    const second = await claimBatches(pool, claimOpts(id));
    expect(second.batches).toEqual([]);
    expect(second.nextDueAt?.getTime()).toBe(Math.min(...out.map((b) => b.due_at.getTime())));

    // Acking batches 2 and 3 frees c and d: c's next message goes, a and b still wait for batch 1.
    const acked = await ackBatches(pool, id, 'test', first.batches.slice(1).map((b) => ({ batch: b, facts: facts(b, 200) })));
    expect(acked).toBe(6);
    const third = await claimBatches(pool, claimOpts(id));
    expect(third.batches.map((b) => [keysOf(b), b.groups])).toEqual([[[1008], ['c']]]);
    await checkInvariants(id);

    // Acking batch 1: a's and b's next messages, in order (a's two share the batch).
    expect(await ackBatches(pool, id, 'test', [{ batch: first.batches[0], facts: facts(first.batches[0], 200) }])).toBe(3);
    const fourth = await claimBatches(pool, claimOpts(id));
    expect(fourth.batches.map((b) => [keysOf(b), b.groups])).toEqual([[[1004, 1007, 1009], ['a', 'b', 'a']]]);
    await checkInvariants(id);

    await ackBatches(pool, id, 'test', [...third.batches, ...fourth.batches].map((b) => ({ batch: b, facts: facts(b, 200) })));
    const fifth = await claimBatches(pool, claimOpts(id));
    expect(fifth.batches.map((b) => [keysOf(b), b.groups])).toEqual([[[1013], ['b']]]);
    await ackBatches(pool, id, 'test', fifth.batches.map((b) => ({ batch: b, facts: facts(b, 200) })));

    expect((await claimBatches(pool, claimOpts(id))).batches).toEqual([]);
    const { rows: left } = await pool.query('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1', [id]);
    expect(left[0].n).toBe(0);
    expect(await batchRows(pool, id)).toEqual([]);
    const { rows: logged } = await pool.query(
      `SELECT count(*)::int AS n, sum(message_count)::int AS msgs FROM sluice.webhook_attempts WHERE consumer_id = $1 AND outcome = 'delivered'`,
      [id],
    );
    expect(logged[0]).toEqual({ n: 6, msgs: groups.length });
  });

  it('with batch size 1: the oldest heads of distinct free groups, ungrouped rows once each', async () => {
    const id = await webhook('singles');
    await insertMessages(pool, id, rows(1000, groups));
    const o = claimOpts(id, { batches: 5, batchSize: 1 });

    const first = await claimBatches(pool, o);
    expect(first.batches.map((b) => [keysOf(b), b.groups])).toEqual([
      [[1000], ['a']],
      [[1002], ['b']],
      [[1003], [null]],
      [[1005], ['c']],
      [[1006], [null]],
    ]);
    await checkInvariants(id);
    const second = await claimBatches(pool, o);
    expect(second.batches.map((b) => [keysOf(b), b.groups])).toEqual([
      [[1010], [null]],
      [[1011], ['d']],
    ]);
    await checkInvariants(id);
    expect((await claimBatches(pool, o)).batches).toEqual([]);
    expect(await batchRows(pool, id)).toHaveLength(7);

    await ackBatches(pool, id, 'test', first.batches.map((b) => ({ batch: b, facts: facts(b, 200) })));
    const third = await claimBatches(pool, o);
    expect(third.batches.map((b) => [keysOf(b), b.groups])).toEqual([
      [[1001], ['a']],
      [[1007], ['b']],
      [[1008], ['c']],
    ]);
    await checkInvariants(id);
  });

  it('re-claims due batches first, then forms fresh ones around them', async () => {
    const id = await webhook('due-first');
    await insertMessages(pool, id, rows(1000, groups));
    const first = await claimBatches(pool, claimOpts(id, { batches: 2 }));
    expect(first.batches.map(keysOf)).toEqual([
      [1000, 1001, 1002],
      [1003, 1005, 1006],
    ]);
    // The second batch's lease runs out (its process died).
    await pool.query(`UPDATE sluice.webhook_batches SET due_at = now() - interval '1 second' WHERE batch_id = $1`, [first.batches[1].batchId]);
    const again = await claimBatches(pool, claimOpts(id));
    expect(again.batches.map((b) => [b.batchId, b.attempt, keysOf(b)])).toEqual([
      [first.batches[1].batchId, 2, [1003, 1005, 1006]],
      [expect.any(String), 1, [1010, 1011, 1012]],
    ]);
    expect(again.batches[0].token).not.toBe(first.batches[1].token);
    await checkInvariants(id);
  });

  it('hands out new batches as keys, the payloads read after the claim; a change gone from the log leaves its batch', async () => {
    const id = await webhook('keys');
    await insertMessages(pool, id, rows(1600, ['a', 'b', 'c', 'd', 'e']));
    const first = await claimBatches(pool, claimOpts(id, { batches: 1 }));
    expect(first.batches.map(keysOf)).toEqual([[1600, 1601, 1602]]);
    // What the claim itself answers (rolled back): keys, no payloads.
    const tx = await pool.connect();
    try {
      await tx.query('BEGIN');
      const { rows: raw } = await tx.query(
        'SELECT commit_lsn, payload FROM sluice.claim_webhook_batches($1, 1, 3, 60000, false, true) WHERE batch_id IS NOT NULL', [id]);
      expect(raw).toEqual([{ commit_lsn: '1603', payload: null }, { commit_lsn: '1604', payload: null }]);
    } finally {
      await tx.query('ROLLBACK');
      tx.release();
    }
    // A webhook consumer's rows are marked pushed: the pull claim's group index leaves them out.
    expect((await pool.query('SELECT bool_and(pushed) AS all FROM sluice.messages WHERE consumer_id = $1', [id])).rows[0].all).toBe(true);
    await pool.query('DELETE FROM sluice.log WHERE source_no = (SELECT r.source_no FROM sluice.consumer_route($1) r) AND commit_lsn = 1604', [id]);
    const later = await claimBatches(pool, claimOpts(id, { batches: 1, deferPayloads: true }));
    await later.loaded;
    expect(later.batches.map(keysOf)).toEqual([[1603]]);
    expect(later.batches[0].payloads).toEqual([storedPayload(1603, 0, 'd', 3)]);
    expect(later.batches[0].groups).toEqual(['d']);
  });

  it('drops a due batch whose messages are all gone instead of sending it empty', async () => {
    const id = await webhook('orphan');
    await insertMessages(pool, id, rows(1500, ['a', 'b']));
    const [batch] = (await claimBatches(pool, claimOpts(id))).batches;
    await pool.query('DELETE FROM sluice.messages WHERE consumer_id = $1', [id]);
    await pool.query(`UPDATE sluice.webhook_batches SET due_at = now() - interval '1 second' WHERE batch_id = $1`, [batch.batchId]);
    expect(await claimBatches(pool, claimOpts(id))).toMatchObject({ batches: [], nextDueAt: null });
    expect(await batchRows(pool, id)).toEqual([]);
  });

  it('concurrent claimers never hand out a group twice; each group goes in commit order, each message once', async () => {
    const id = await webhook('concurrent');
    const groupOf = (i: number) => (i % 7 === 3 ? null : `g${i % 11}`);
    const total = 330;
    await insertMessages(pool, id, rows(10_000, Array.from({ length: total }, (_, i) => groupOf(i))));
    const out = new Map<string, string>(); // group -> batch id, while its batch is out (a subset of the table's view)
    const claimed = new Map<string, number[]>();
    const conflicts: string[] = [];
    let acked = 0;
    const deadline = Date.now() + 30_000;
    const worker = async () => {
      while (acked < total && Date.now() < deadline) {
        const { batches } = await claimBatches(pool, claimOpts(id, { batches: 2, batchSize: 5 }));
        if (batches.length === 0) {
          await new Promise((r) => setTimeout(r, 2));
          continue;
        }
        for (const b of batches) {
          b.groups.forEach((g, i) => {
            const k = g ?? `m:${b.lsns[i]}`;
            if (out.has(k) && out.get(k) !== b.batchId) conflicts.push(`${k} in ${out.get(k)} and ${b.batchId}`);
            out.set(k, b.batchId);
            claimed.set(k, [...(claimed.get(k) ?? []), Number(b.lsns[i])]);
          });
        }
        await new Promise((r) => setTimeout(r, Math.random() * 3));
        // Forgotten before the ack commits: the table still blocks them until then.
        for (const b of batches) b.groups.forEach((g, i) => out.delete(g ?? `m:${b.lsns[i]}`));
        const n = await ackBatches(pool, id, 'test', batches.map((b) => ({ batch: b, facts: facts(b, 200) })));
        acked += n;
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    expect(conflicts).toEqual([]);
    expect(acked).toBe(total);
    const expected = new Map<string, number[]>();
    for (let i = 0; i < total; i++) {
      const k = groupOf(i) ?? `m:${10_000 + i}`;
      expected.set(k, [...(expected.get(k) ?? []), 10_000 + i]);
    }
    expect(claimed).toEqual(expected);
    expect(await batchRows(pool, id)).toEqual([]);
  });
});

describe('failures', () => {
  it('a retry split by group keeps every message in exactly one batch row, due later, with its group', async () => {
    const id = await webhook('split');
    await insertMessages(pool, id, rows(2000, ['a', 'b', 'a', null, 'c', 'b']));
    const [batch] = (await claimBatches(pool, claimOpts(id, { batchSize: 10 }))).batches;
    expect(keysOf(batch)).toEqual([2000, 2001, 2002, 2003, 2004, 2005]);

    const parts = partition(batch, 'groups');
    const res = await recordFailure(pool, id, 'test', batch, failure(batch, { parts, delayMs: 30_000, lastError: 'HTTP 503' }));
    expect(res).toMatchObject({ moved: 6, paused: false, disabled: false });

    const got = await batchRows(pool, id);
    expect(got.map((b) => [b.batch_id, b.lsns, b.group_keys])).toEqual([
      [parts[0], [2000, 2002], ['a', 'a']],
      [parts[1], [2001, 2005], ['b', 'b']],
      [parts[3], [2003], [null]],
      [parts[4], [2004], ['c']],
    ]);
    expect(new Set(parts).size).toBe(4);
    expect(got.some((b) => b.batch_id === batch.batchId)).toBe(false);
    for (const b of got) {
      expect(b).toMatchObject({ attempt: 1, delivery_token: batch.token, first_attempt_at: batch.firstAttemptAt, last_error: 'HTTP 503' });
      expect(b.due_in_ms).toBeGreaterThan(25_000);
      expect(b.due_in_ms).toBeLessThanOrEqual(30_000);
    }
    await checkInvariants(id);
    // Nothing is claimable while the parts back off; the next due is theirs.
    const idle = await claimBatches(pool, claimOpts(id));
    expect(idle.batches).toEqual([]);
    expect(idle.nextDueAt?.getTime()).toBe(got[0].due_at.getTime());

    // Backoff over: the parts go, each whole, under its own id, as attempt 2.
    await pool.query(`UPDATE sluice.webhook_batches SET due_at = now() - interval '1 second' WHERE consumer_id = $1`, [id]);
    const again = await claimBatches(pool, claimOpts(id));
    expect(
      again.batches.map((b) => [b.batchId, b.attempt, keysOf(b), b.groups]).sort((x, y) => (x[2] as number[])[0] - (y[2] as number[])[0]),
    ).toEqual([
      [parts[0], 2, [2000, 2002], ['a', 'a']],
      [parts[1], 2, [2001, 2005], ['b', 'b']],
      [parts[3], 2, [2003], [null]],
      [parts[4], 2, [2004], ['c']],
    ]);
    await checkInvariants(id);
  });

  it('a retry in halves, and a retry unsplit (same id), replace the batch row', async () => {
    const id = await webhook('halves');
    await insertMessages(pool, id, rows(2100, ['a', 'b', 'c', 'a']));
    const [batch] = (await claimBatches(pool, claimOpts(id, { batchSize: 10 }))).batches;
    const parts = partition(batch, 'halves');
    expect((await recordFailure(pool, id, 'test', batch, failure(batch, { parts }))).moved).toBe(4);
    expect((await batchRows(pool, id)).map((b) => [b.batch_id, b.lsns, b.group_keys])).toEqual([
      [parts[0], [2100, 2101, 2103], ['a', 'b', 'a']],
      [parts[2], [2102], ['c']],
    ]);
    await checkInvariants(id);

    await pool.query(`UPDATE sluice.webhook_batches SET due_at = now() - interval '1 second' WHERE consumer_id = $1`, [id]);
    const again = (await claimBatches(pool, claimOpts(id))).batches;
    const c = again.find((b) => b.groups[0] === 'c')!;
    expect((await recordFailure(pool, id, 'test', c, failure(c, { delayMs: 10_000 }))).moved).toBe(1);
    const row = (await batchRows(pool, id)).find((b) => b.batch_id === c.batchId)!;
    expect(row).toMatchObject({ attempt: 2, lsns: [2102], group_keys: ['c'], delivery_token: c.token });
    expect(row.due_in_ms).toBeGreaterThan(5_000);
    await checkInvariants(id);
  });

  it('parts sent again at once (isolating a refused group) are due now and claimed as the same attempt', async () => {
    const id = await webhook('isolate');
    await insertMessages(pool, id, rows(2300, ['a', 'b', 'c', 'a', 'd', null]));
    let [batch] = (await claimBatches(pool, claimOpts(id, { batchSize: 10 }))).batches;
    // A second attempt, so the repeated number is not the default.
    await recordFailure(pool, id, 'test', batch, failure(batch, { delayMs: 0 }));
    [batch] = (await claimBatches(pool, claimOpts(id, { fresh: false }))).batches;
    expect(batch.attempt).toBe(2);

    const parts = splitInto(batch, 3);
    expect(new Set(parts).size).toBe(3);
    const res = await recordFailure(pool, id, 'test', batch, failure(batch, { parts, delayMs: 0, sameAttempt: true }));
    expect(res.moved).toBe(6);
    const got = await batchRows(pool, id);
    // Five groups (the ungrouped row is its own) in three parts of consecutive groups, each group whole and in order.
    expect(got.map((b) => [b.lsns, b.group_keys])).toEqual([
      [[2300, 2301, 2303], ['a', 'b', 'a']],
      [[2302, 2304], ['c', 'd']],
      [[2305], [null]],
    ]);
    for (const b of got) {
      expect(b).toMatchObject({ attempt: 1, first_attempt_at: batch.firstAttemptAt });
      expect(b.due_in_ms).toBeLessThanOrEqual(0);
    }
    await checkInvariants(id);
    const again = (await claimBatches(pool, claimOpts(id, { fresh: false }))).batches;
    expect(again.map((b) => [b.attempt, b.batchId]).sort()).toEqual(got.map((b) => [2, b.batch_id]).sort());
    // The attempt that was split is logged once, as the retry it was.
    const { rows: log } = await pool.query('SELECT attempt, outcome, message_count FROM sluice.webhook_attempts WHERE batch_id = $1 ORDER BY id', [
      batch.batchId,
    ]);
    expect(log).toEqual([
      { attempt: 1, outcome: 'retry', message_count: 6 },
      { attempt: 2, outcome: 'retry', message_count: 6 },
    ]);
  });

  it('dead_letter makes the messages state 1 with the attempt count and error, and removes the batch row', async () => {
    const id = await webhook('dead');
    await insertMessages(pool, id, rows(2200, ['a', null, 'a', 'b']));
    let [batch] = (await claimBatches(pool, claimOpts(id, { batchSize: 3 }))).batches;
    expect(keysOf(batch)).toEqual([2200, 2201, 2202]);
    // One retry first, so the attempt count (2) is not the default.
    await recordFailure(pool, id, 'test', batch, failure(batch, { delayMs: 0 }));
    [batch] = (await claimBatches(pool, claimOpts(id, { fresh: false }))).batches;
    expect([batch.attempt, keysOf(batch)]).toEqual([2, [2200, 2201, 2202]]);
    const { rows: before } = await pool.query<{ last_attempt_at: Date }>('SELECT last_attempt_at FROM sluice.webhook_batches WHERE batch_id = $1', [
      batch.batchId,
    ]);

    // An outcome from an older delivery (another token) changes nothing.
    const stale = await recordFailure(pool, id, 'test', { ...batch, token: batch.token + 1 }, failure(batch, { outcome: 'dead_letter' }));
    expect(stale.moved).toBe(0);
    expect((await batchRows(pool, id)).map((b) => b.batch_id)).toEqual([batch.batchId, expect.any(String)]);

    const res = await recordFailure(pool, id, 'test', batch, failure(batch, { outcome: 'dead_letter', lastError: 'HTTP 422: no' }));
    expect(res.moved).toBe(3);
    expect((await batchRows(pool, id)).map((b) => b.lsns)).toEqual([[2203]]);
    const { rows: msgs } = await pool.query(
      `SELECT commit_lsn::int AS lsn, state, deliver_count, last_error, last_delivered_at FROM sluice.messages WHERE consumer_id = $1 ORDER BY 1`,
      [id],
    );
    expect(msgs.slice(0, 3)).toEqual(
      [2200, 2201, 2202].map((lsn) => ({ lsn, state: 1, deliver_count: 2, last_error: 'HTTP 422: no', last_delivered_at: before[0].last_attempt_at })),
    );
    expect(msgs[3]).toMatchObject({ lsn: 2203, state: 0, deliver_count: 0, last_error: null });
    const dead = await listDeadLetters(pool, id, { limit: 10 });
    expect(dead.map((d) => [Number(d.commit_lsn), d.deliver_count, d.last_error])).toEqual([
      [2200, 2, 'HTTP 422: no'],
      [2201, 2, 'HTTP 422: no'],
      [2202, 2, 'HTTP 422: no'],
    ]);
    const { rows: attempts } = await pool.query(
      'SELECT outcome, attempt, message_count FROM sluice.webhook_attempts WHERE consumer_id = $1 AND batch_id = $2 ORDER BY id',
      [id, batch.batchId],
    );
    expect(attempts[0]).toEqual({ outcome: 'retry', attempt: 1, message_count: 3 });
    expect(attempts.at(-1)).toEqual({ outcome: 'dead_letter', attempt: 2, message_count: 3 });
    // Group a is free again (dead letters do not block here): nothing of it is left, b's batch is still out.
    expect((await claimBatches(pool, claimOpts(id))).batches).toEqual([]);
  });
});

describe('stats', () => {
  it('counts a webhook consumer\'s messages in batches as in flight, the rest as pending', async () => {
    const id = await webhook('stats');
    expect(await consumerStats(pool, id)).toEqual({ pending: 0, in_flight: 0, dead_lettered: 0, oldest_pending_age_ms: null, pending_at_least: false });
    await insertMessages(pool, id, rows(4000, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']));
    expect(await consumerStats(pool, id)).toMatchObject({ pending: 10, in_flight: 0, dead_lettered: 0 });

    const { batches } = await claimBatches(pool, claimOpts(id, { batches: 2, batchSize: 3 }));
    expect(batches.map((b) => b.lsns.length)).toEqual([3, 3]);
    expect(await consumerStats(pool, id)).toMatchObject({ pending: 4, in_flight: 6, dead_lettered: 0 });

    // Backing off is still in flight (its batch is out).
    await recordFailure(pool, id, 'test', batches[0], failure(batches[0], { parts: partition(batches[0], 'groups') }));
    expect(await consumerStats(pool, id)).toMatchObject({ pending: 4, in_flight: 6, dead_lettered: 0 });

    await recordFailure(pool, id, 'test', batches[1], failure(batches[1], { outcome: 'dead_letter' }));
    expect(await consumerStats(pool, id)).toMatchObject({ pending: 4, in_flight: 3, dead_lettered: 3 });

    const stats = await consumerStats(pool, id);
    expect(stats.oldest_pending_age_ms).toBeGreaterThanOrEqual(0);
    expect(stats.oldest_pending_age_ms).toBeLessThan(60_000);
  });

  it('leaves a pull consumer\'s counts to its own rows, whatever other consumers have out', async () => {
    const hook = await webhook('stats-hook');
    await insertMessages(pool, hook, rows(4100, ['a', 'b', 'c']));
    await claimBatches(pool, claimOpts(hook));
    const pull = await consumerOn(consumerConfig('stats-pull', 'stats-src', ['public.orders']));
    await insertMessages(pool, pull, rows(4100, ['a', 'b', 'c', 'd']));
    // Two of them in flight (4100 and 4101: the heads of groups a and b).
    expect((await claimPull(pool, { consumerId: pull, limit: 2, visibilityMs: 60_000, deadLetterBlocksGroup: false })).messages).toHaveLength(2);
    expect(await consumerStats(pool, pull)).toMatchObject({ pending: 2, in_flight: 2, dead_lettered: 0 });
    expect(await consumerStats(pool, hook)).toMatchObject({ pending: 0, in_flight: 3, dead_lettered: 0 });
  });
});

describe('clearing a capture tail', () => {
  it('deletes a batch naming a cleared row; its other messages are fresh again, other batches stay', async () => {
    const id = await webhook('tail', 'src');
    // Another source's consumer: its rows and batches are not this tail.
    const other = await consumerOn(
      consumerConfig('tail-other', 'other', ['public.orders'], { kind: 'webhook', pull: undefined, webhook: webhookSettings(URL_) }),
    );
    await insertMessages(pool, id, rows(3000, ['a', 'b', 'a', 'c', 'd', 'c']));
    await insertMessages(pool, other, rows(3000, ['a', 'b', 'a', 'c', 'd', 'c']));
    const first = (await claimBatches(pool, claimOpts(id))).batches;
    expect(first.map(keysOf)).toEqual([
      [3000, 3001, 3002],
      [3003, 3004, 3005],
    ]);
    const otherBatches = (await claimBatches(pool, claimOpts(other))).batches;
    expect(otherBatches).toHaveLength(2);

    // Durable position 3005: the row at 3005 was not completely stored.
    expect(await clearTail(pool, 'src', 3005n)).toBe(1);
    expect((await batchRows(pool, id)).map((b) => [b.batch_id, b.lsns])).toEqual([[first[0].batchId, [3000, 3001, 3002]]]);
    expect((await batchRows(pool, other)).map((b) => b.batch_id)).toEqual(otherBatches.map((b) => b.batchId));
    const { rows: left } = await pool.query('SELECT commit_lsn::int AS lsn FROM sluice.messages WHERE consumer_id = $1 ORDER BY 1', [id]);
    expect(left.map((r) => r.lsn)).toEqual([3000, 3001, 3002, 3003, 3004]);
    await checkInvariants(id);

    // The replay stores the cleared row anew; the batch's other messages go with it in a new batch.
    await insertMessages(pool, id, [{ lsn: 3005, idx: 0, group: 'c', seq: 1 }]);
    const again = (await claimBatches(pool, claimOpts(id))).batches;
    expect(again.map((b) => [b.attempt, keysOf(b), b.groups])).toEqual([[1, [3003, 3004, 3005], ['c', 'd', 'c']]]);
    expect(again[0].batchId).not.toBe(first[1].batchId);
    await checkInvariants(id);
  });

  it('keeps batches wholly before the position, and clears batches of every consumer of the source', async () => {
    const a = await webhook('tail-a', 'src2');
    const b = await webhook('tail-b', 'src2');
    await insertMessages(pool, a, rows(3100, ['x', 'y']));
    await insertMessages(pool, b, rows(3100, ['x', 'y']));
    const ba = (await claimBatches(pool, claimOpts(a, { batchSize: 1 }))).batches;
    const bb = (await claimBatches(pool, claimOpts(b, { batchSize: 1 }))).batches;
    expect(ba.map(keysOf)).toEqual([[3100], [3101]]);
    // One log row (the change is stored once for both consumers).
    expect(await clearTail(pool, 'src2', 3101n)).toBe(1);
    expect((await batchRows(pool, a)).map((r) => r.batch_id)).toEqual([ba[0].batchId]);
    expect((await batchRows(pool, b)).map((r) => r.batch_id)).toEqual([bb[0].batchId]);
  });
});

describe('consumer removal and vacuum', () => {
  it('deleteConsumer removes the consumer\'s batches and attempt log with its messages', async () => {
    const gone = await webhook('to-delete');
    const kept = await webhook('to-keep');
    await insertMessages(pool, gone, rows(5000, ['a', 'b']));
    await insertMessages(pool, kept, rows(5000, ['a', 'b']));
    await claimBatches(pool, claimOpts(gone, { batchSize: 1 }));
    await claimBatches(pool, claimOpts(kept, { batchSize: 1 }));
    const attempt = `INSERT INTO sluice.webhook_attempts (consumer_id, batch_id, attempt, started_at, duration_ms, outcome, message_count)
      VALUES ($1, gen_random_uuid(), 1, now(), 5, 'retry', 1)`;
    await pool.query(attempt, [gone]);
    await pool.query(attempt, [kept]);
    const attempts = async (id: string) =>
      (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.webhook_attempts WHERE consumer_id = $1', [id])).rows[0].n;
    await deleteConsumer(pool, 'to-delete');
    expect(await batchRows(pool, gone)).toEqual([]);
    expect(await batchRows(pool, kept)).toHaveLength(2);
    expect(await attempts(gone)).toBe(0);
    expect(await attempts(kept)).toBe(1);
  });

  it('vacuums webhook_batches once enough of its rows are dead', async () => {
    const id = await webhook('vacuumed');
    await insertMessages(pool, id, rows(6000, Array.from({ length: 40 }, (_, i) => `g${i}`)));
    const { batches } = await claimBatches(pool, claimOpts(id, { batches: 40, batchSize: 1 }));
    expect(batches).toHaveLength(40);
    await ackBatches(pool, id, 'test', batches.map((b) => ({ batch: b, facts: facts(b, 200) })));
    const stat = async () =>
      (
        await pool.query<{ dead: number; vacuums: number }>(
          `SELECT n_dead_tup::int AS dead, vacuum_count::int AS vacuums FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname = 'webhook_batches'`,
        )
      ).rows[0];
    // Statistics reach the shared counters asynchronously (at most once a second per backend).
    await eventually(async () => (await stat()).dead >= 40, 10_000, 100);
    const before = (await stat()).vacuums;
    expect(await vacuumBufferIfNeeded(pool, 1_000_000_000)).toBeNull();
    // With a high threshold for messages, webhook_batches still goes at min(threshold, 5000); here 40.
    expect(await vacuumBufferIfNeeded(pool, 40)).toBeGreaterThanOrEqual(40);
    await eventually(async () => (await stat()).vacuums > before, 10_000, 100);
    // The 3-second job vacuums this table alone, past its own threshold.
    expect(await vacuumBatchesIfNeeded(pool, 1_000_000_000)).toBeNull();
    await insertMessages(pool, id, rows(6100, Array.from({ length: 40 }, (_, i) => `g${i}`)));
    const more = (await claimBatches(pool, claimOpts(id, { batches: 40, batchSize: 1 }))).batches;
    expect(more).toHaveLength(40);
    await ackBatches(pool, id, 'test', more.map((b) => ({ batch: b, facts: facts(b, 200) })));
    await eventually(async () => (await stat()).dead >= 40, 10_000, 100);
    const messagesVacuums = async () =>
      (await pool.query<{ n: number }>(`SELECT vacuum_count::int AS n FROM pg_stat_user_tables WHERE schemaname = 'sluice' AND relname = 'messages'`)).rows[0].n;
    const batchesBefore = (await stat()).vacuums;
    const messagesBefore = await messagesVacuums();
    expect(await vacuumBatchesIfNeeded(pool, 40)).toBeGreaterThanOrEqual(40);
    await eventually(async () => (await stat()).vacuums > batchesBefore, 10_000, 100);
    expect(await messagesVacuums()).toBe(messagesBefore);
  });
});

describe('an ack racing a rewind', () => {
  // The rewind commits while the ack statement waits on the rows it marked:
  // the ack's snapshot predates the marks, so its own statement neither
  // deletes the rows (they are replay now) nor clears their mark. Before the
  // follow-up in ackBatches they stayed marked with their batch gone, and
  // their groups never went out again (found by test/rewind-crash.test.ts).
  it('leaves the batch\'s rows waiting to be sent again, not marked replay with no batch', async () => {
    const id = await webhook('ack-race');
    await insertMessages(pool, id, rows(1000, ['a', 'a', 'b']));
    const [batch] = (await claimBatches(pool, claimOpts(id))).batches;
    expect(keysOf(batch)).toEqual([1000, 1001, 1002]);

    const rewinder = await pool.connect();
    try {
      await rewinder.query('BEGIN');
      expect(Number((await rewinder.query('SELECT sluice.rewind_consumer($1, 0, 0) AS n', [id])).rows[0].n)).toBe(3);
      const ack = ackBatches(pool, id, 'test', [{ batch, facts: facts(batch, 200) }]);
      // The ack waits on the rows' locks (its snapshot is taken), then the rewind commits.
      await eventually(async () => (await pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%sluice.webhook_batches%'`)).rowCount! > 0, 10_000, 20);
      await rewinder.query('COMMIT');
      await ack;
    } finally {
      rewinder.release();
    }
    expect((await pool.query('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1 AND replay', [id])).rows[0].n).toBe(0);
    const again = await claimBatches(pool, claimOpts(id));
    expect(again.batches.map(keysOf)).toEqual([[1000, 1001, 1002]]);
  });
});

describe('a rewind with rows already taken in past the point', () => {
  // A claim takes in ~100 rows ahead of its batches (more when groups are
  // blocked); the next claim tops up only what it lacks. Rows taken in past
  // the point must not stay waiting through a rewind, or a group's later
  // change goes before its earlier ones are taken in again (seen under load
  // in test/rewind-crash.test.ts).
  it('sends a group\'s changes again from its first, not its pending later one first', async () => {
    const id = await webhook('rewind-ahead');
    // 300 changes of one group: the first claim sends the first and, finding
    // its second batch blocked, takes in the rest ahead.
    await insertMessages(pool, id, rows(1000, Array(300).fill('a')));
    const [first] = (await claimBatches(pool, claimOpts(id, { batches: 2, batchSize: 1 }))).batches;
    expect(keysOf(first)).toEqual([1000]);
    expect((await pool.query('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1', [id])).rows[0].n).toBeGreaterThan(101);
    await ackBatches(pool, id, 'test', [{ batch: first, facts: facts(first, 200) }]);
    await pool.query('SELECT sluice.rewind_consumer($1, 0, 0)', [id]);
    const again = await claimBatches(pool, claimOpts(id, { batches: 1, batchSize: 1 }));
    expect(again.batches.map(keysOf)).toEqual([[1000]]);
  });
});
