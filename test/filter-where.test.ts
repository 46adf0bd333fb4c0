// filter.where through the real API on a real capture: a consumer takes in
// only the changes whose row passes its table's SQL expression (pulled over
// HTTP, and posted to a real webhook receiver), exactly (int8 beyond 2^53,
// numeric), in order per row; a change filtered out leaves no delivery state
// and never holds up its group; a bad expression is refused when saved, with
// the table and the character, and nothing is saved.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claim } from '../src/buffer/claim.js';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { formatStatus, statusReport } from '../src/cli/status.js';
import { applyConfig } from '../src/config/apply.js';
import { ConfigError } from '../src/config/errors.js';
import { loadConfig } from '../src/config/load.js';
import { consumerFilter } from '../src/pipeline/filter/consumer-filter.js';
import { WalkAhead } from '../src/pipeline/filter/walk.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { claimBatches } from '../src/push/queries.js';
import { startApi, type ApiFixture } from './api-fixture.js';
import { eventually, quietLog, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

let f: ApiFixture;
let capture: CaptureFixture;
let receiver: Receiver;

const TABLES = ['public.invoices', 'public.orders'];
const PAID = "status = 'paid' AND amount >= 100 AND deleted_at IS NULL";

async function logCount(): Promise<number> {
  return (await f.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.log')).rows[0].n;
}

async function consumerId(name: string): Promise<string> {
  return (await f.pool.query<{ id: string }>('SELECT id FROM sluice.consumers WHERE name = $1', [name])).rows[0].id;
}

/** Everything the pull consumer can take now, acked as it goes: "<action>:<table>:<id>:<status>". */
async function drain(name: string): Promise<string[]> {
  const out: string[] = [];
  for (let round = 0; round < 100; round++) {
    const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 100 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) return out;
    // record_pks: the key as text (record.id beyond 2^53 would round in JSON.parse).
    for (const { data } of items) out.push(`${data.action}:${data.metadata.table_name}:${data.metadata.record_pks[0]}:${data.record.status}`);
    expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
  }
  throw new Error('drain did not end');
}

/**
 * A consumer of public.invoices whose filter passes region = its name, and
 * `count` new rows from `first`: all in its region, or (alternate) every
 * other one. Returns the consumer as the gateway loads it.
 */
async function regionConsumer(name: string, kind: 'pull' | 'webhook', first: number, count: number, alternate: boolean, extra: object = {}) {
  const created = await f.call('POST', '/api/consumers', {
    name, source: 'main', kind, tables: ['public.invoices'],
    filter: { where: { 'public.invoices': `region = '${name}'` } },
    ...extra,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const before = await logCount();
  await f.pool.query(
    `INSERT INTO invoices SELECT g, 'paid', 1, CASE WHEN $3 AND g % 2 = 1 THEN 'other' ELSE $4 END, NULL FROM generate_series($1::bigint, $2::bigint) g`,
    [first, first + count - 1, alternate, name],
  );
  await eventually(async () => ((await logCount()) >= before + count ? true : null));
  const registry = new ConsumerRegistry(f.pool);
  await registry.reload();
  return registry.get(name)!;
}

beforeAll(async () => {
  f = await startApi('filter_where');
  await f.pool.query(`CREATE TABLE public.invoices (
    id bigint PRIMARY KEY, status text, amount numeric(40, 10), region text, deleted_at timestamptz)`);
  receiver = await startReceiver();
  expect((await f.call('POST', '/api/sources', { name: 'main', tables: TABLES })).status).toBe(201);
  capture = await startCapture(f.url, sourceConfig('main', TABLES), []);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await receiver?.close();
  await f?.stop();
});

describe('filter.where', () => {
  it('delivers exactly the rows that pass, in order per row; what fails leaves nothing and blocks nothing', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'paid', source: 'main', kind: 'pull', tables: TABLES, start: 'earliest',
      filter: { where: { invoices: PAID } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // The key is qualified; orders has no where and passes whole.
    expect(created.body.filter).toEqual({ where: { 'public.invoices': PAID } });

    const before = await logCount();
    await f.pool.query(`INSERT INTO invoices VALUES (1, 'paid', 150, 'eu', NULL)`); // passes
    await f.pool.query(`UPDATE invoices SET status = 'void' WHERE id = 1`); // fails: never taken in
    await f.pool.query(`UPDATE invoices SET status = 'paid', amount = 99.9999999999 WHERE id = 1`); // fails: below 100
    await f.pool.query(`UPDATE invoices SET amount = 100 WHERE id = 1`); // passes (exactly 100)
    await f.pool.query(`INSERT INTO invoices VALUES (2, 'paid', 500, 'us', now())`); // fails: deleted
    await f.pool.query(`INSERT INTO invoices VALUES (3, NULL, 500, 'us', NULL)`); // NULL status: NULL, filtered out
    await f.pool.query(`INSERT INTO invoices VALUES (9007199254740993, 'paid', 123456789012345678901234567890, 'eu', NULL)`); // passes
    await f.pool.query(`INSERT INTO orders VALUES (7, 'new')`); // no where on orders: passes
    await f.pool.query(`DELETE FROM invoices WHERE id = 1`); // a delete's key-only record: status is NULL, filtered out
    await eventually(async () => (await logCount()) >= before + 9);

    // Pull hands out the heads of groups: the order holds per row.
    const expected = ['insert:invoices:1:paid', 'insert:invoices:9007199254740993:paid', 'insert:orders:7:new', 'update:invoices:1:paid'];
    expect(await drain('paid')).toEqual(expected);
    // Nothing kept for the changes filtered out, and the position is past them all.
    const id = await consumerId('paid');
    expect((await f.pool.query('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1', [id])).rows[0].n).toBe(0);

    // A rewind delivers the same again: the filter is applied as the log is walked.
    const rewound = await f.call('POST', '/api/consumers/paid/rewind', { to: 'earliest' });
    expect(rewound.status, JSON.stringify(rewound.body)).toBe(200);
    expect(await drain('paid')).toEqual(expected);
  });

  it('int8 beyond 2^53 and 30-digit numerics compare exactly', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'exact', source: 'main', kind: 'pull', tables: ['public.invoices'], start: 'earliest',
      filter: { where: { 'public.invoices': 'id = 9007199254740993 AND amount > 123456789012345678901234567889.9999999999' } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // 9007199254740992 is the same double as ...993; it must not pass.
    await f.pool.query(`INSERT INTO invoices VALUES (9007199254740992, 'paid', 123456789012345678901234567890, 'eu', NULL)`);
    const before = await logCount();
    await f.pool.query(`UPDATE invoices SET region = 'us' WHERE id = 9007199254740993`);
    await eventually(async () => (await logCount()) >= before + 1);
    expect(await drain('exact')).toEqual(['insert:invoices:9007199254740993:paid', 'update:invoices:9007199254740993:paid']);
  });

  it('a selective filter walks far through the log in one receive', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'rare', source: 'main', kind: 'pull', tables: ['public.invoices'],
      filter: { where: { 'public.invoices': "region = 'rare'" } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const before = await logCount();
    await f.pool.query(`INSERT INTO invoices SELECT g, 'paid', 1, CASE WHEN g % 1000 = 0 THEN 'rare' ELSE 'common' END, NULL
      FROM generate_series(100000, 104999) g`);
    await eventually(async () => (await logCount()) >= before + 5000, 30_000);
    const r = await f.call('POST', '/api/http_pull_consumers/rare/receive', { batch_size: 10 });
    expect(r.status).toBe(200);
    expect(r.body.data.map((i: any) => i.data.record.id)).toEqual([100000, 101000, 102000, 103000, 104000]);
    // It walked 5,000 changes, and kept rows of none of the others.
    expect((await f.pool.query('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1', [await consumerId('rare')])).rows[0].n).toBe(5);
  });

  it('a webhook consumer receives only the changes that pass, over HTTP', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'eu-hook', source: 'main', kind: 'webhook', tables: ['public.invoices'], start: 'earliest',
      filter: { actions: ['insert'], where: { 'public.invoices': "region IN ('eu') AND id < 100" } },
      webhook: { url: `http://127.0.0.1:${receiver.port}/hook`, batch_size: 10, allow_private_ranges: ['127.0.0.0/8'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const registry = new ConsumerRegistry(f.pool);
    await registry.reload();
    const dispatcher = new Dispatcher({ pool: f.pool, consumers: registry, instanceId: 'test', log: quietLog });
    dispatcher.start();
    try {
      await eventually(async () => (receiver.accepted().length >= 1 ? true : null));
      await new Promise((r) => setTimeout(r, 500));
      expect(receiver.accepted().map((m: any) => `${m.action}:${m.record.id}`)).toEqual(['insert:1']);
    } finally {
      await dispatcher.stop();
    }
  });

  it('a claim leaves out the payloads its walk read, and the gateway fills them in; rows left waiting come back with theirs', async () => {
    const c = await regionConsumer('reuse', 'pull', 300000, 6, false);
    const walked = (await new WalkAhead(f.pool).take(c.id, 6, consumerFilter(c)!))!;
    expect(walked.lsns).toHaveLength(6);
    const stored = async (lsn: string, idx: number) =>
      (await f.pool.query<{ payload: string }>('SELECT payload FROM sluice.log WHERE commit_lsn = $1 AND commit_idx = $2', [lsn, idx])).rows[0].payload;
    expect(walked.payloads[0]).toBe(await stored(walked.lsns[0], walked.idxs[0]));
    // What the claim itself answers (rolled back): no payload on the walked rows it hands out.
    const tx = await f.pool.connect();
    try {
      await tx.query('BEGIN');
      const { rows } = await tx.query(
        `SELECT payload IS NULL AS none FROM sluice.claim_messages_walked($1, 3, 60000, NULL, NULL, false, $2::bigint, $3, $4::bigint, $5, $6::bigint[], $7::int[])`,
        [c.id, walked.fromLsn, walked.fromIdx, walked.toLsn, walked.toIdx, walked.lsns, walked.idxs],
      );
      expect(rows.map((r) => r.none)).toEqual([true, true, true]);
    } finally {
      await tx.query('ROLLBACK');
      tx.release();
    }
    // Through claim(): the payloads, as stored.
    const first = await claim(f.pool, { walked, consumerId: c.id, limit: 3, visibilityMs: 60_000, deadLetterBlocksGroup: false });
    expect(first.messages).toHaveLength(3);
    for (const m of first.messages) expect(m.payload).toBe(await stored(m.commitLsn, m.commitIdx));
    // The three admitted and left waiting: a later claim (no walk of its own) reads theirs from the buffer.
    const rest = await claim(f.pool, { walked: null, consumerId: c.id, limit: 10, visibilityMs: 60_000, deadLetterBlocksGroup: false });
    expect(rest.messages.map((m) => JSON.parse(m.payload).metadata.record_pks[0])).toEqual(['300003', '300004', '300005']);
    for (const m of rest.messages) expect(m.payload).toBe(await stored(m.commitLsn, m.commitIdx));
  });

  it("admission takes the walked rows in with the walk's group keys and commit times, as the log has them; a consumer with its own group_by gets its own", async () => {
    // The rows a claim took in, beside their log rows.
    const admitted = async (consumer: string) =>
      (
        await f.pool.query<{ same_time: boolean; group_key: string; log_group: string }>(
          `SELECT m.created_at = l.committed_at AS same_time, m.group_key, l.group_key AS log_group
           FROM sluice.messages m JOIN sluice.log l ON l.commit_lsn = m.commit_lsn AND l.commit_idx = m.commit_idx
           WHERE m.consumer_id = $1 ORDER BY m.commit_lsn, m.commit_idx`,
          [consumer],
        )
      ).rows;
    const c = await regionConsumer('keyed', 'pull', 310000, 4, false);
    const walked = (await new WalkAhead(f.pool).take(c.id, 4, consumerFilter(c)!))!;
    const { rows: log } = await f.pool.query<{ group_key: string; at: string }>(
      'SELECT group_key, committed_at::text AS at FROM sluice.log WHERE (commit_lsn, commit_idx) IN (SELECT * FROM unnest($1::bigint[], $2::int[])) ORDER BY commit_lsn, commit_idx',
      [walked.lsns, walked.idxs],
    );
    expect(walked.groups).toEqual(log.map((r) => r.group_key));
    expect(walked.times).toEqual(log.map((r) => r.at));
    // The old walk (a gateway not yet upgraded) reads the same rows.
    const walk = (fn: string) =>
      f.pool.query(`SELECT from_lsn, from_idx, commit_lsn, commit_idx, table_name, payload FROM sluice.${fn}($1, NULL, NULL, 10, false)`, [c.id]);
    expect((await walk('walk_log')).rows).toEqual((await walk('walk_log_rows')).rows);
    const got = await claim(f.pool, { walked, consumerId: c.id, limit: 4, visibilityMs: 60_000, deadLetterBlocksGroup: false });
    expect(got.messages.map((m) => JSON.parse(m.payload).metadata.record_pks[0])).toEqual(['310000', '310001', '310002', '310003']);
    const rows = await admitted(c.id);
    expect(rows).toHaveLength(4);
    for (const r of rows) expect(r).toEqual({ same_time: true, group_key: r.log_group, log_group: r.log_group });
    expect(got.messages.map((m) => m.groupKey)).toEqual(rows.map((r) => r.log_group));

    // Grouped by its own columns: the group key comes from the row (read from the log), not the walk's default one.
    const g = await regionConsumer('keyed-grouped', 'pull', 320000, 4, false, { group_by: { 'public.invoices': ['region'] } });
    const gWalked = (await new WalkAhead(f.pool).take(g.id, 4, consumerFilter(g)!))!;
    await claim(f.pool, { walked: gWalked, consumerId: g.id, limit: 4, visibilityMs: 60_000, deadLetterBlocksGroup: false });
    const grouped = await admitted(g.id);
    expect(grouped).toHaveLength(4);
    for (const r of grouped) {
      expect(r.same_time).toBe(true);
      expect(r.group_key).not.toBe(r.log_group);
      expect(r.group_key).toContain('keyed-grouped');
    }
  });

  it('a webhook claim hands out new batches as keys: the gateway fills in what its walk read and reads the rest from the log; rows left waiting come back with theirs', async () => {
    const c = await regionConsumer('hook-reuse', 'webhook', 500000, 6, false, {
      webhook: { url: `http://127.0.0.1:${receiver.port}/hook`, batch_size: 3, allow_private_ranges: ['127.0.0.0/8'] },
    });
    const before = await logCount();
    const walked = (await new WalkAhead(f.pool).take(c.id, 6, consumerFilter(c)!))!;
    expect(walked.lsns).toHaveLength(6);
    const stored = async (lsn: string, idx: number) =>
      (await f.pool.query<{ payload: string }>('SELECT payload FROM sluice.log WHERE commit_lsn = $1 AND commit_idx = $2', [lsn, idx])).rows[0].payload;
    const tx = await f.pool.connect();
    try {
      await tx.query('BEGIN');
      const { rows } = await tx.query(
        `SELECT payload IS NULL AS none FROM sluice.claim_webhook_batches_walked($1, 1, 3, 60000, false, true, $2::bigint, $3, $4::bigint, $5, $6::bigint[], $7::int[])`,
        [c.id, walked.fromLsn, walked.fromIdx, walked.toLsn, walked.toIdx, walked.lsns, walked.idxs],
      );
      expect(rows.map((r) => r.none)).toEqual([true, true, true]);
    } finally {
      await tx.query('ROLLBACK');
      tx.release();
    }
    const opts = { consumerId: c.id, batches: 1, batchSize: 3, leaseMs: 60_000, deadLetterBlocksGroup: false, fresh: true };
    const first = await claimBatches(f.pool, { ...opts, walked });
    expect(first.batches).toHaveLength(1);
    for (let i = 0; i < 3; i++) expect(first.batches[0].payloads[i]).toBe(await stored(first.batches[0].lsns[i], first.batches[0].idxs[i]));
    // The three admitted and left waiting: a later claim without a walk hands
    // them out as keys too, and the gateway reads theirs from the log.
    const rest = await claimBatches(f.pool, { ...opts, walked: null });
    const b = rest.batches[0];
    expect(b.payloads.map((p) => JSON.parse(p).metadata.record_pks[0])).toEqual(['500003', '500004', '500005']);
    for (let i = 0; i < 3; i++) expect(b.payloads[i]).toBe(await stored(b.lsns[i], b.idxs[i]));
    // After a rewind the consumer holds rows past its position, which a walk
    // from there need not name: the gateway reads those from the log.
    expect((await f.call('POST', '/api/consumers/hook-reuse/rewind', { to: 'earliest' })).status).toBe(200);
    await f.pool.query(`INSERT INTO invoices SELECT g, 'paid', 1, 'hook-reuse', NULL FROM generate_series(500006, 500008) g`);
    await eventually(async () => ((await logCount()) >= before + 3 ? true : null));
    const again = (await new WalkAhead(f.pool).take(c.id, 100, consumerFilter(c)!))!;
    const later = await claimBatches(f.pool, { ...opts, batches: 5, walked: again });
    const keys = later.batches.flatMap((x) => x.lsns.map((lsn, i) => ({ lsn, idx: x.idxs[i], payload: x.payloads[i] })));
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect(k.payload).toBe(await stored(k.lsn, k.idx));
  });

  it('a walk started ahead is cut or carried on to the size of the claim that takes it: no change skipped or taken twice', async () => {
    const c = await regionConsumer('ahead', 'pull', 200000, 60, true);
    const filter = consumerFilter(c)!;
    const walks = new WalkAhead(f.pool);
    const got: string[] = [];
    const sizes: number[] = [];
    // Claim sizes, each walk started ahead at the size of the claim before.
    for (const [want, next] of [[10, 5], [8, 12], [4, 4], [30, 0]] as const) {
      const walked = await walks.take(c.id, want, filter);
      const r = await claim(f.pool, { walked, consumerId: c.id, limit: want, visibilityMs: 60_000, deadLetterBlocksGroup: false });
      got.push(...r.messages.map((m) => JSON.parse(m.payload).metadata.record_pks[0]));
      sizes.push(r.messages.length);
      walks.claimed(c.id, walked!, new Set(r.messages.map((m) => `${m.commitLsn}:${m.commitIdx}`)), next ? { want: next, filter } : null);
    }
    // Each claim got what it asked for (5 walked ahead carried on to 8, 12 cut to 4) ...
    expect(sizes).toEqual([10, 8, 4, 8]);
    // ... and every other row passes: 30 of them, in order, each once.
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => String(200000 + 2 * i)));
  });

  it('a walk chained from the end of the one a claim takes is used only when that claim took the whole walk: no change skipped or taken twice', async () => {
    const c = await regionConsumer('chained', 'pull', 400000, 80, true);
    const filter = consumerFilter(c)!;
    const got: string[] = [];
    const key = (m: { commitLsn: string; commitIdx: number }) => `${m.commitLsn}:${m.commitIdx}`;
    // One claim as a process makes it: take, chain the next walk, claim, report.
    const step = async (walks: WalkAhead, want: number, limit = want) => {
      const walked = (await walks.take(c.id, want, filter))!;
      walks.chain(c.id, walked, { want, filter });
      const r = await claim(f.pool, { walked, consumerId: c.id, limit, visibilityMs: 60_000, deadLetterBlocksGroup: false });
      got.push(...r.messages.map((m) => JSON.parse(m.payload).metadata.record_pks[0]));
      walks.claimed(c.id, walked, new Set(r.messages.map(key)), null);
      return { ...walked, n: r.messages.length };
    };
    const a = new WalkAhead(f.pool);
    const b = new WalkAhead(f.pool);
    // Taken whole: the next walk is the chained one, starting where this one ended.
    const w1 = await step(a, 5);
    const w2 = await step(a, 5);
    expect([w2.fromLsn, w2.fromIdx, w2.n]).toEqual([w1.toLsn, w1.toIdx, 5]);
    // Another process claims meanwhile, from the position (w2's end): a's
    // chained walk, also from there, no longer starts at the position, and
    // its claim takes none of it in (nothing else waits) ...
    const wb = await step(b, 5);
    expect([wb.fromLsn, wb.fromIdx, wb.n]).toEqual([w2.toLsn, w2.toIdx, 5]);
    const refused = await step(a, 5);
    expect([refused.fromLsn, refused.fromIdx, refused.n]).toEqual([w2.toLsn, w2.toIdx, 0]);
    // ... so it is dropped: the next walk starts from the position.
    const w3 = await step(a, 5, 3);
    expect([w3.fromLsn, w3.fromIdx, w3.n]).toEqual([wb.toLsn, wb.toIdx, 3]);
    // Keys left waiting (the claim had room for 3 of 5, all 5 admitted): the
    // chained walk is dropped too, and the next starts from the position, w3's end.
    const w4 = await step(a, 5);
    expect([w4.fromLsn, w4.fromIdx]).toEqual([w3.toLsn, w3.toIdx]);
    for (let i = 0; i < 10 && got.length < 40; i++) await step(a, 5);
    expect(got).toEqual(Array.from({ length: 40 }, (_, i) => String(400000 + 2 * i)));
  });

  // Walks chained beside claims, and the tails of cut walks kept for the next
  // claim, under the real webhook worker and concurrent pull receives: every
  // change that passes arrives once, in order per row; none that fails does.
  const ROWS = 300;
  const changesOf = async (first: number, region: string) => {
    const before = await logCount();
    await f.pool.query(`INSERT INTO invoices SELECT g, 'new', 1, CASE WHEN g % 2 = 0 THEN $2 ELSE 'other' END, NULL
      FROM generate_series($1::bigint, $1::bigint + ${ROWS - 1}) g`, [first, region]);
    await f.pool.query(`UPDATE invoices SET status = 'paid' WHERE id BETWEEN $1 AND $1 + ${ROWS - 1}`, [first]);
    await f.pool.query(`UPDATE invoices SET status = 'shipped' WHERE id BETWEEN $1 AND $1 + ${ROWS - 1}`, [first]);
    await eventually(async () => ((await logCount()) >= before + 3 * ROWS ? true : null));
    // Each row passing the filter, its three changes in order.
    const want = new Map<string, string[]>();
    for (let id = first; id < first + ROWS; id += 2) want.set(String(id), ['insert:new', 'update:paid', 'update:shipped']);
    return want;
  };
  const byRow = (seen: Array<{ action: string; record: { id: unknown; status: string }; metadata: { record_pks: string[] } }>) => {
    const got = new Map<string, string[]>();
    for (const m of seen) {
      const id = m.metadata.record_pks[0];
      if (!got.has(id)) got.set(id, []);
      got.get(id)!.push(`${m.action}:${m.record.status}`);
    }
    return got;
  };

  it('a filtered webhook drain over many claims delivers every passing change once, in order per row', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'drain-hook', source: 'main', kind: 'webhook', tables: ['public.invoices'],
      filter: { where: { 'public.invoices': "region = 'drain-hook'" } },
      webhook: { url: `http://127.0.0.1:${receiver.port}/drain`, batch_size: 7, max_in_flight: 4, allow_private_ranges: ['127.0.0.0/8'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const want = await changesOf(600000, 'drain-hook');
    const mine = () => receiver.accepted().filter((m: any) => Number(m.metadata.record_pks[0]) >= 600000 && Number(m.metadata.record_pks[0]) < 600000 + ROWS);
    const registry = new ConsumerRegistry(f.pool);
    await registry.reload();
    const dispatcher = new Dispatcher({ pool: f.pool, consumers: registry, instanceId: 'test', log: quietLog });
    dispatcher.start();
    try {
      await eventually(async () => (mine().length >= 3 * want.size ? true : null), 30_000);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      await dispatcher.stop();
    }
    expect(mine()).toHaveLength(3 * want.size);
    expect(byRow(mine())).toEqual(want);
  });

  it('concurrent filtered pull receives of different sizes take every passing change once, in order per row', async () => {
    const created = await f.call('POST', '/api/consumers', {
      name: 'drain-pull', source: 'main', kind: 'pull', tables: ['public.invoices'],
      filter: { where: { 'public.invoices': "region = 'drain-pull'" } },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const want = await changesOf(700000, 'drain-pull');
    const seen: any[] = [];
    // Receives of several sizes at once: the claims that serve them (one per
    // consumer at a time, several receives each) vary in size.
    const worker = async (size: number) => {
      for (let round = 0, empty = 0; round < 500 && empty < 3; round++) {
        const r = await f.call('POST', '/api/http_pull_consumers/drain-pull/receive', { batch_size: size });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        const items = r.body.data as Array<{ ack_id: string; data: any }>;
        if (items.length === 0) {
          empty++;
          await new Promise((res) => setTimeout(res, 50));
          continue;
        }
        empty = 0;
        seen.push(...items.map((i) => i.data));
        expect((await f.call('POST', '/api/http_pull_consumers/drain-pull/ack', { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
      }
    };
    await Promise.all([3, 7, 25, 60].map(worker));
    expect(seen).toHaveLength(3 * want.size);
    expect(byRow(seen)).toEqual(want);
  });

  it('refuses a bad expression when saved, with the table and the character, and saves nothing', async () => {
    const cases: Array<[string, RegExp]> = [
      ['status = ', /at character \d+: syntax error at end of input/],
      ['colour = 1', /at character 1: .*column "colour"/],
      ["lower(status) = 'x'", /at character 1: .*lower/],
      ["amount >= 'lots'", /at character \d+: .*numeric/],
      ['status = 1; DROP TABLE invoices', /at character/],
    ];
    for (const [expression, reason] of cases) {
      const r = await f.call('POST', '/api/consumers', {
        name: 'bad', source: 'main', kind: 'pull', tables: ['public.invoices'], filter: { where: { 'public.invoices': expression } },
      });
      expect(r.status, expression).toBe(422);
      const errors = r.body.validation_errors['filter.where["public.invoices"]'];
      expect(errors?.[0], `${expression}: ${JSON.stringify(r.body)}`).toMatch(reason);
      expect(r.body.summary).not.toMatch(/\n\s+at /);
      expect((await f.call('GET', '/api/consumers/bad')).status).toBe(404);
    }
    // A table that is not one of the consumer's.
    const other = await f.call('POST', '/api/consumers', {
      name: 'bad', source: 'main', kind: 'pull', tables: ['public.invoices'], filter: { where: { 'public.orders': "status = 'x'" } },
    });
    expect(other.status).toBe(422);
    expect(JSON.stringify(other.body.validation_errors)).toMatch(/not one of this consumer's tables/);
    // A PATCH that breaks an existing filter changes nothing.
    const patched = await f.call('PATCH', '/api/consumers/paid', { filter: { where: { 'public.invoices': 'nope > 1' } } });
    expect(patched.status).toBe(422);
    expect((await f.call('GET', '/api/consumers/paid')).body.filter).toEqual({ where: { 'public.invoices': PAID } });
  });

  it('config apply checks the filter against the source too, naming consumers[i]', async () => {
    const yaml = (where: string) => `
sources:
  - name: main
    tables: [${TABLES.join(', ')}]
consumers:
  - name: from-config
    source: main
    kind: pull
    tables: [public.invoices]
    filter:
      where:
        public.invoices: "${where}"
`;
    const bad = loadConfig({ text: yaml('amount >= 1 AND colour IS NULL') }, {});
    const err = await applyConfig(f.pool, bad).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues[0].path).toBe('consumers[0].filter.where["public.invoices"]');
    expect((err as ConfigError).issues[0].reason).toMatch(/at character 17: .*colour/);
    // A syntax error is caught when the file is loaded, before any database.
    expect(() => loadConfig({ text: yaml('amount >= AND') }, {})).toThrow(/consumers\[0\]\.filter\.where\["public\.invoices"\]: at character \d+/);
    await applyConfig(f.pool, loadConfig({ text: yaml('amount >= 1') }, {}), { prune: false });
    const stored = await f.pool.query('SELECT filter_columns FROM sluice.consumers WHERE name = $1', ['from-config']);
    expect(stored.rows[0].filter_columns['public.invoices']).toMatchObject({ id: 'int8', amount: 'numeric', status: 'text' });
  });

  it('shows in sluice status', async () => {
    // Built by statusReport from the stored consumer, printed by formatStatus.
    const report = await statusReport(f.pool, null, f.url);
    const paid = report.consumers.find((c) => c.name === 'paid');
    expect(paid?.filter).toBe(`where public.invoices: ${PAID}`);
    expect(formatStatus(report)).toContain(`filter: where public.invoices: ${PAID}`);
  });
});
