// Backfills on a real capture through the real API: a consumer gets its
// table's existing rows as `read` messages, interleaved with live changes by
// watermarks, so that applying what it receives, in order, to an empty copy
// yields the table, even while clients write to it throughout. Only the
// backfilled consumer gets the rows; a row changed between a chunk's
// watermarks is not sent stale; bad requests are 4xx and start nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack } from '../src/backfill/staged.js';
import { ADMIN_TOKEN, startApi, type ApiFixture } from './api-fixture.js';
import { backfillCommand } from '../src/cli/backfill.js';
import { CliError } from '../src/cli/context.js';
import { formatStatus, statusReport } from '../src/cli/status.js';
import { applyConfig } from '../src/config/apply.js';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { storeChunk, writeBatch, type LogRow } from '../src/buffer/writer.js';
import { claim } from '../src/buffer/claim.js';
import { cancelBackfill, stageChunk, unsealChunks } from '../src/backfill/queries.js';
import { consumerConfig, eventually, insertConsumer, sourceConfig, startCapture, storeSource, type CaptureFixture } from './helpers/capture.js';

let f: ApiFixture;
let capture: CaptureFixture;

const TABLES = ['public.accounts', 'public.pairs', 'public.orders'];

/** Everything the pull consumer can take now, acked as it goes, in the order received. */
async function drain(name: string, maxRounds = 500, untilEmpty = true): Promise<any[]> {
  const out: any[] = [];
  for (let round = 0; round < maxRounds; round++) {
    const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 500 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) return out;
    for (const { data } of items) out.push(data);
    expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
  }
  if (!untilEmpty) return out;
  throw new Error('drain did not end');
}

/** Applies messages in the order received to an empty copy, keyed by record_pks. */
function materialise(messages: any[]): Map<string, any> {
  const copy = new Map<string, any>();
  for (const m of messages) {
    const key = JSON.stringify(m.metadata.record_pks);
    if (m.action === 'delete') copy.delete(key);
    else copy.set(key, m.record);
  }
  return copy;
}

async function waitDone(consumer: string, timeoutMs = 60_000): Promise<any[]> {
  return eventually(async () => {
    const r = await f.call('GET', `/api/consumers/${consumer}/backfills`);
    expect(r.status).toBe(200);
    const data = r.body.data as any[];
    return data.length > 0 && data.every((b) => b.state !== 'running') ? data : null;
  }, timeoutMs);
}

beforeAll(async () => {
  f = await startApi('backfill');
  await f.pool.query(`
    CREATE TABLE public.accounts (id bigint PRIMARY KEY, v integer NOT NULL, note text, big bigint, updated_at timestamptz NOT NULL DEFAULT now());
    CREATE INDEX ON public.accounts (updated_at);
    CREATE TABLE public.pairs (a text, b integer, v integer, PRIMARY KEY (a, b));
    INSERT INTO public.accounts (id, v, note, big, updated_at)
      SELECT g, 0, 'row ' || g || ' "quoted" ünï', 9007199254740993 + g, timestamptz '2026-11-01T00:00:00Z' + g * interval '1 minute'
      FROM generate_series(1, 3000) g;
    INSERT INTO public.pairs SELECT chr(97 + g % 5), g, 0 FROM generate_series(1, 1500) g;
    ANALYZE public.accounts; ANALYZE public.pairs;`);
  expect((await f.call('POST', '/api/sources', { name: 'main', tables: TABLES })).status).toBe(201);
  capture = await startCapture(f.url, sourceConfig('main', TABLES), []);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await f?.stop();
});

describe('backfills', () => {
  it('sends every existing row as a read message to the backfilled consumer only, with exact values and progress', async () => {
    for (const name of ['bf-all', 'bf-none']) {
      const r = await f.call('POST', '/api/consumers', { name, source: 'main', kind: 'pull', tables: ['public.accounts'] });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    const started = await f.call('POST', '/api/consumers/bf-all/backfills', { chunk_size: 250 });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    expect(started.body.data).toHaveLength(1);
    expect(started.body.data[0]).toMatchObject({ table: 'public.accounts', state: 'running', chunk_size: 250, rows_estimate: 3000 });
    // A second one of the same table while it runs: 409, nothing starts.
    const again = await f.call('POST', '/api/consumers/bf-all/backfills', {});
    if (again.status !== 201) expect(again.status).toBe(409);

    const [done] = await waitDone('bf-all');
    expect(done).toMatchObject({ state: 'done', rows_read: 3000, rows_sent: 3000, eta_seconds: 0 });
    const got = await drain('bf-all');
    expect(got).toHaveLength(3000);
    expect(got.every((m) => m.action === 'read' && m.changes === null)).toBe(true);
    const first = got.find((m) => m.record.id === 1);
    expect(first.record).toMatchObject({ id: 1, v: 0, note: 'row 1 "quoted" ünï', updated_at: '2026-11-01T00:01:00.000000Z' });
    expect(first.metadata).toMatchObject({ table_schema: 'public', table_name: 'accounts', record_pks: ['1'] });
    // int8 beyond 2^53 keeps its digits (read on the stored text: JSON.parse would round it).
    const { rows: stored } = await f.pool.query(
      `SELECT payload FROM sluice.log WHERE action = 'read' AND payload LIKE '{"record":{"id":1,%'`,
    );
    expect(stored).toHaveLength(1);
    expect(stored[0].payload).toContain('"big":9007199254740994,');
    expect(new Set(got.map((m) => m.metadata.idempotency_key)).size).toBe(3000);
    expect(new Set(got.map((m) => m.record.id)).size).toBe(3000);
    // The other consumer of the table gets none of them, and does not count them pending.
    expect((await f.call('GET', '/api/consumers/bf-none/stats')).body.pending).toBe(0);
    expect(await drain('bf-none')).toEqual([]);
  }, 120_000);

  it('reads from a point of a start column on, in that column\'s order', async () => {
    expect((await f.call('POST', '/api/consumers', { name: 'bf-from', source: 'main', kind: 'pull', tables: ['public.accounts'] })).status).toBe(201);
    const r = await f.call('POST', '/api/consumers/bf-from/backfills', {
      table: 'accounts',
      start: { column: 'updated_at', from: '2026-11-02T00:00:00Z' },
      chunk_size: 300,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.data[0].start).toEqual({ column: 'updated_at', from: '2026-11-02T00:00:00Z' });
    const [done] = await waitDone('bf-from');
    // updated_at = 2026-11-01 + id minutes: ids 1440..3000.
    expect(done).toMatchObject({ state: 'done', rows_read: 1561, rows_sent: 1561 });
    const got = await drain('bf-from');
    expect(got.map((m) => m.record.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 1561 }, (_, i) => 1440 + i));
  }, 60_000);

  it('bad requests are 4xx and start nothing; a cancel stops a backfill at once', async () => {
    expect((await f.call('POST', '/api/consumers', { name: 'bf-bad', source: 'main', kind: 'pull', tables: ['public.accounts', 'public.pairs'] })).status).toBe(201);
    const count = async () => (await f.pool.query('SELECT count(*)::int AS n FROM sluice.backfills')).rows[0].n;
    const before = await count();
    const cases: Array<[unknown, string, RegExp]> = [
      [{ table: 'public.orders' }, 'table', /not one of this consumer's tables/],
      [{ table: 'public.accounts', start: { column: 'nope', from: '1' } }, 'start.column', /does not exist/],
      [{ table: 'public.accounts', start: { column: 'v', from: '1' } }, 'start.column', /leads no btree index: CREATE INDEX/],
      [{ table: 'public.accounts', start: { column: 'updated_at', from: 'not a time' } }, 'start.from', /is not a value of column "updated_at"/],
      [{ chunk_size: 0 }, 'chunk_size', /./],
      [{ start: { column: 'updated_at' } }, 'start', /./],
    ];
    for (const [body, field, reason] of cases) {
      const r = await f.call('POST', '/api/consumers/bf-bad/backfills', body);
      expect(r.status, JSON.stringify(r.body)).toBe(422);
      expect(typeof r.body.summary).toBe('string');
      const messages = Object.entries(r.body.validation_errors ?? {}).filter(([k]) => k.startsWith(field)).flatMap(([, v]) => v as string[]);
      expect(messages.join(' '), JSON.stringify(r.body)).toMatch(reason);
    }
    expect((await f.call('POST', '/api/consumers/nobody/backfills', {})).status).toBe(404);
    // A consumer whose filter leaves out read rows would take none in.
    expect((await f.call('POST', '/api/consumers', { name: 'bf-noread', source: 'main', kind: 'pull', tables: ['public.accounts'], filter: { actions: ['insert'] } })).status).toBe(201);
    const noRead = await f.call('POST', '/api/consumers/bf-noread/backfills', {});
    expect(noRead.status).toBe(422);
    expect(noRead.body.validation_errors['filter.actions'][0]).toMatch(/add "read"/);
    expect(await count()).toBe(before);

    // Slow on purpose (10 rows a second), then cancelled.
    const started = await f.call('POST', '/api/consumers/bf-bad/backfills', { table: 'public.pairs', chunk_size: 10, max_rows_per_second: 10 });
    expect(started.status).toBe(201);
    const id = started.body.data[0].id;
    await eventually(async () => (await f.call('GET', `/api/consumers/bf-bad/backfills/${id}`)).body.rows_read > 0);
    // A second one of the same table while this one runs: 409, nothing starts.
    const second = await f.call('POST', '/api/consumers/bf-bad/backfills', { table: 'public.pairs' });
    expect(second.status, JSON.stringify(second.body)).toBe(409);
    expect(second.body.summary).toMatch(/already running/);
    expect((await f.call('GET', '/api/consumers/bf-bad/backfills')).body.data).toHaveLength(1);
    // sluice status shows it, with its progress.
    const report = await statusReport(f.pool, null, f.url);
    const line = formatStatus(report);
    expect(line).toMatch(/bf-bad \(pull, active\).*\n    backfill: public\.pairs \[[#-]{30}\] \d+ of ~1,500 rows/);
    const cancelled = await f.call('DELETE', `/api/consumers/bf-bad/backfills/${id}`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.state).toBe('cancelled');
    const readAtCancel = cancelled.body.rows_read;
    expect(readAtCancel).toBeLessThan(1500);
    expect((await f.call('DELETE', `/api/consumers/bf-bad/backfills/${id}`)).status).toBe(409);
    expect((await f.call('GET', `/api/consumers/bf-bad/backfills/999999`)).status).toBe(404);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await f.call('GET', `/api/consumers/bf-bad/backfills/${id}`)).body).toMatchObject({ state: 'cancelled', rows_read: readAtCancel });
    expect((await drain('bf-bad')).length).toBe(readAtCancel);
  }, 60_000);

  it('pauses while its consumer has more than max_backlog messages not taken in, and goes on once they are', async () => {
    expect((await f.call('POST', '/api/consumers', { name: 'bf-slow', source: 'main', kind: 'pull', tables: ['public.pairs'] })).status).toBe(201);
    const r = await f.call('POST', '/api/consumers/bf-slow/backfills', { chunk_size: 100, max_backlog: 300 });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const id = r.body.data[0].id;
    const read = async () => (await f.call('GET', `/api/consumers/bf-slow/backfills/${id}`)).body;
    await eventually(async () => (await read()).rows_read >= 300);
    await new Promise((res) => setTimeout(res, 1500));
    // Over the limit by one chunk at most, and staying there while nobody receives.
    const paused = await read();
    expect(paused.state).toBe('running');
    expect(paused.rows_read).toBeLessThanOrEqual(400);
    await new Promise((res) => setTimeout(res, 1200));
    expect((await read()).rows_read).toBe(paused.rows_read);
    // Received (and so taken in): it goes on, and every row arrives.
    const got: any[] = [];
    const deadline = Date.now() + 60_000;
    while ((await read()).state === 'running' && Date.now() < deadline) got.push(...(await drain('bf-slow', 5, false)));
    expect((await read())).toMatchObject({ state: 'done', rows_read: 1500 });
    got.push(...(await drain('bf-slow')));
    expect(new Set(got.filter((m) => m.action === 'read').map((m) => JSON.stringify(m.metadata.record_pks))).size).toBe(1500);
  }, 90_000);

  it('leaves out a row read stale: one changed between its chunk\'s watermarks', async () => {
    // On a source no capture runs, so the watermark is stored by hand, at a
    // known position, through the writer capture uses (the runner never sees it).
    await storeSource(f.pool, sourceConfig('side', ['public.users']));
    const consumerId = await insertConsumer(f.pool, consumerConfig('side-c', 'side', ['public.users']));
    const no = (await f.pool.query(`SELECT log_no FROM sluice.sources WHERE name = 'side'`)).rows[0].log_no;
    await f.pool.query('SELECT sluice.log_cover($1, 1000, 3000, 3600)', [no]);
    const id = (await f.pool.query(
      `INSERT INTO sluice.backfills (consumer_id, schema_name, table_name, key_columns, chunk_size, chunk_no, chunk_low_lsn, chunk_last_key, chunk_rows, chunk_final)
       VALUES ($1, 'public', 'users', '{id}', 3, 1, 1000, '{3}', 3, true) RETURNING id::text AS id`, [consumerId])).rows[0].id;
    // Row 2 changed between the marks (1000 .. 2000), row 3 after the high one.
    for (const [lsn, key] of [[1500, 2], [2500, 3]]) {
      await f.pool.query(
        `INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
         VALUES ($1, $2, 0, 'public', 'users', 'update', $3, now(), '{}')`, [no, lsn, `public.users:["${key}"]`]);
    }
    const rows = (chunk: number) => {
      const records = pack([1, 2, 3].map((k) => `{"id":${k},"name":"old\\ttab"}`));
      const pks = pack([1, 2, 3].map((k) => `["${k}"]`));
      return { chunk, schema: 'public', table: 'users', records: records.text, recordEnds: records.ends, pks: pks.text, pkEnds: pks.ends };
    };
    // Capture seals the chunk with the watermark's transaction, and its rows
    // go in once that has committed (migrations/0028).
    const mark = async (chunk: number, commitLsn: bigint) => {
      const sealed = await writeBatch(f.pool, {
        sourceName: 'side',
        sourceNo: no,
        rows: [],
        marks: [{ backfillId: id, chunk, rows: rows(chunk), commitLsn, committedAt: '2026-12-06T00:00:00.000000Z', databaseName: 'app' }],
        checkpoint: null,
        lastCommitAt: null,
      });
      for (const c of sealed) await storeChunk(f.pool, no, c);
    };
    const reads = async () =>
      (await f.pool.query(`SELECT commit_lsn::int, commit_idx, payload, for_consumer FROM sluice.log WHERE source_no = $1 AND action = 'read' ORDER BY commit_idx`, [no])).rows;
    // A watermark of a chunk no longer staged stores nothing.
    await mark(0, 1900n);
    expect(await reads()).toEqual([]);
    await mark(1, 2000n);
    const stored = await reads();
    expect(stored.map((r) => JSON.parse(r.payload).record.id)).toEqual([1, 3]);
    expect(stored.every((r) => r.for_consumer === consumerId && r.commit_lsn === 2000)).toBe(true);
    const m = JSON.parse(stored[0].payload);
    expect(m).toEqual({
      record: { id: 1, name: 'old\ttab' },
      changes: null,
      action: 'read',
      metadata: {
        table_schema: 'public',
        table_name: 'users',
        commit_timestamp: '2026-12-06T00:00:00.000000Z',
        commit_lsn: 2000,
        commit_idx: 0,
        idempotency_key: Buffer.from('2000:0').toString('base64'),
        record_pks: ['1'],
        database_name: 'app',
        transaction_annotations: null,
      },
    });
    const b = (await f.pool.query(`SELECT state, rows_read, rows_sent, last_key, chunk_low_lsn FROM sluice.backfills WHERE id = $1::bigint`, [id])).rows[0];
    expect(b).toEqual({ state: 'done', rows_read: '3', rows_sent: '2', last_key: ['3'], chunk_low_lsn: null });
    // Its watermark met again (it cannot be, past the durable position; but if it were): nothing more.
    await mark(1, 2100n);
    expect(await reads()).toHaveLength(2);
  });

  it('a sealed chunk holds back only its own consumer, at its watermark, until its rows are stored', async () => {
    // As above, on a source no capture runs: the batches are written by hand.
    await storeSource(f.pool, sourceConfig('seal', ['public.users']));
    const filled = await insertConsumer(f.pool, consumerConfig('seal-filled', 'seal', ['public.users']));
    const other = await insertConsumer(f.pool, consumerConfig('seal-other', 'seal', ['public.users']));
    const no = (await f.pool.query(`SELECT log_no FROM sluice.sources WHERE name = 'seal'`)).rows[0].log_no;
    await f.pool.query('SELECT sluice.log_cover($1, 1000, 3000, 3600)', [no]);
    const id = (await f.pool.query(
      `INSERT INTO sluice.backfills (consumer_id, schema_name, table_name, key_columns, chunk_size, chunk_no, chunk_low_lsn, chunk_last_key, chunk_rows, chunk_final)
       VALUES ($1, 'public', 'users', '{id}', 2, 1, 1000, '{2}', 2, false) RETURNING id::text AS id`, [filled])).rows[0].id;
    const change = (lsn: bigint, key: number): LogRow => ({
      commitLsn: lsn, commitIdx: 0, schema: 'public', table: 'users', action: 'update', groupKey: `public.users:["${key}"]`,
      committedAt: '2026-12-07T00:00:00.000000Z', payload: `{"record":{"id":${key}},"at":${lsn}}`, wake: [],
    });
    const records = pack(['{"id":1}', '{"id":2}']);
    const pks = pack(['["1"]', '["2"]']);
    // One batch: a change before the watermark (row 5), the watermark at 2000, a change after it (row 1).
    const sealed = await writeBatch(f.pool, {
      sourceName: 'seal',
      sourceNo: no,
      rows: [change(1500n, 5), change(2500n, 1)],
      marks: [{
        backfillId: id, chunk: 1, commitLsn: 2000n, committedAt: '2026-12-07T00:00:00.000000Z', databaseName: 'app',
        rows: { chunk: 1, schema: 'public', table: 'users', records: records.text, recordEnds: records.ends, pks: pks.text, pkEnds: pks.ends },
      }],
      checkpoint: null,
      lastCommitAt: null,
    });
    expect(sealed.map((c) => [c.backfillId, c.chunk, c.consumer])).toEqual([[id, 1, filled]]);
    const horizon = async (consumer: string) => (await f.pool.query(`SELECT sluice.admission_horizon($1)::text AS h`, [consumer])).rows[0].h;
    expect(await horizon(filled)).toBe('2000');
    expect(await horizon(other)).toBe('9223372036854775807');
    const take = async (consumerId: string) =>
      (await claim(f.pool, { consumerId, limit: 100, visibilityMs: 60_000, deadLetterBlocksGroup: false })).messages.map(
        (m) => `${m.commitLsn}:${m.commitIdx}`,
      );
    // The other consumer goes on past the watermark; the backfilled one stops before it.
    expect(await take(other)).toEqual(['1500:0', '2500:0']);
    expect(await take(filled)).toEqual(['1500:0']);
    expect(await take(filled)).toEqual([]);
    // Stored: the chunk's rows come at the watermark, then the change after it
    // (row 1's, behind its read row in the same group).
    expect(await storeChunk(f.pool, no, sealed[0])).toBe(true);
    expect(await horizon(filled)).toBe('9223372036854775807');
    expect(await take(filled)).toEqual(['2000:0', '2000:1']);
    // Stored once: a second store of the same seal finds it gone and stores nothing.
    expect(await storeChunk(f.pool, no, sealed[0])).toBe(false);
    const b = (await f.pool.query(`SELECT rows_read, rows_sent, last_key, chunk_low_lsn FROM sluice.backfills WHERE id = $1::bigint`, [id])).rows[0];
    expect(b).toEqual({ rows_read: '2', rows_sent: '2', last_key: ['2'], chunk_low_lsn: null });
    expect((await f.pool.query(`SELECT count(*)::int AS n FROM sluice.backfill_seals WHERE backfill_id = $1::bigint`, [id])).rows[0].n).toBe(0);
  });

  it('seals: the next chunk is sealed while one is stored, stored only after it; seals whose rows are gone are dropped', async () => {
    await storeSource(f.pool, sourceConfig('seal2', ['public.users']));
    const filled = await insertConsumer(f.pool, consumerConfig('seal2-filled', 'seal2', ['public.users']));
    const no = (await f.pool.query(`SELECT log_no FROM sluice.sources WHERE name = 'seal2'`)).rows[0].log_no;
    await f.pool.query('SELECT sluice.log_cover($1, 1000, 9000, 3600)', [no]);
    const id = (await f.pool.query(
      `INSERT INTO sluice.backfills (consumer_id, schema_name, table_name, key_columns, chunk_size)
       VALUES ($1, 'public', 'users', '{id}', 2) RETURNING id::text AS id`, [filled])).rows[0].id;
    const horizon = async () => (await f.pool.query(`SELECT sluice.admission_horizon($1)::text AS h`, [filled])).rows[0].h;
    const seals = async () => (await f.pool.query(`SELECT chunk_no FROM sluice.backfill_seals WHERE backfill_id = $1::bigint ORDER BY chunk_no`, [id])).rows.map((r) => r.chunk_no);
    const progress = async () => (await f.pool.query(`SELECT last_key, rows_read::int FROM sluice.backfills WHERE id = $1::bigint`, [id])).rows[0];
    const chunk = (keys: number[], chunkNo: number, hw: bigint) => {
      const records = pack(keys.map((k) => `{"id":${k}}`));
      const pks = pack(keys.map((k) => `["${k}"]`));
      return {
        backfillId: id, chunk: chunkNo, commitLsn: hw, committedAt: '2026-12-07T00:00:00.000000Z', databaseName: 'app', consumer: filled,
        rows: { chunk: chunkNo, schema: 'public', table: 'users', records: records.text, recordEnds: records.ends, pks: pks.text, pkEnds: pks.ends },
      };
    };
    const seal = async (chunkNo: number, lsn: number) => (await f.pool.query('SELECT sluice.backfill_seal($1::bigint, $2, $3) AS c', [id, chunkNo, lsn])).rows[0].c;
    // Chunk 1 (rows 1, 2) staged and sealed; then chunk 2 (3, 4), read after it, staged and sealed before chunk 1 is stored.
    expect(await stageChunk(f.pool, id, { lowLsn: 1000n, afterKey: null, lastKey: ['2'], rows: 2, final: false })).toBe(1);
    expect(await seal(2, 2000)).toBeNull(); // only the chunk staged
    expect(await seal(1, 2000)).toBe(filled);
    expect(await seal(1, 2000)).toBeNull(); // once
    expect(await stageChunk(f.pool, id, { lowLsn: 2100n, afterKey: ['2'], lastKey: ['4'], rows: 2, final: false })).toBe(2);
    expect(await seal(2, 3000)).toBe(filled);
    expect(await seals()).toEqual([1, 2]);
    expect(await horizon()).toBe('2000');
    // Chunk 2 cannot be stored before chunk 1: nothing is.
    expect(await storeChunk(f.pool, no, chunk([3, 4], 2, 3000n))).toBe(false);
    expect(await progress()).toEqual({ last_key: null, rows_read: 0 });
    expect(await storeChunk(f.pool, no, chunk([1, 2], 1, 2000n))).toBe(true);
    expect(await horizon()).toBe('3000');
    expect(await storeChunk(f.pool, no, chunk([3, 4], 2, 3000n))).toBe(true);
    expect(await progress()).toEqual({ last_key: ['4'], rows_read: 4 });
    expect(await horizon()).toBe('9223372036854775807');
    expect((await f.pool.query(`SELECT commit_lsn::int, commit_idx FROM sluice.log WHERE source_no = $1 AND action = 'read' ORDER BY 1, 2`, [no])).rows)
      .toEqual([{ commit_lsn: 2000, commit_idx: 0 }, { commit_lsn: 2000, commit_idx: 1 }, { commit_lsn: 3000, commit_idx: 0 }, { commit_lsn: 3000, commit_idx: 1 }]);
    // Seals whose rows are gone (a process ended): dropped but those kept, and
    // the chunks read again from the progress stored.
    expect(await stageChunk(f.pool, id, { lowLsn: 3100n, afterKey: ['4'], lastKey: ['6'], rows: 2, final: false })).toBe(3);
    expect(await seal(3, 4000)).toBe(filled);
    expect(await stageChunk(f.pool, id, { lowLsn: 4100n, afterKey: ['6'], lastKey: ['8'], rows: 2, final: false })).toBe(4);
    expect(await seal(4, 5000)).toBe(filled);
    expect(await unsealChunks(f.pool, id, [4])).toBe(1);
    expect(await seals()).toEqual([4]);
    expect(await horizon()).toBe('5000');
    // Chunk 4's store finds chunk 3 not stored: nothing, and it is dropped next.
    expect(await storeChunk(f.pool, no, chunk([7, 8], 4, 5000n))).toBe(false);
    expect(await unsealChunks(f.pool, id, [])).toBe(1);
    expect(await horizon()).toBe('9223372036854775807');
    // A cancel drops a backfill's seals.
    expect(await stageChunk(f.pool, id, { lowLsn: 5100n, afterKey: ['4'], lastKey: ['6'], rows: 2, final: false })).toBe(5);
    expect(await seal(5, 6000)).toBe(filled);
    expect(await horizon()).toBe('6000');
    expect(await cancelBackfill(f.pool, id)).toBe(true);
    expect(await seals()).toEqual([]);
    expect(await horizon()).toBe('9223372036854775807');
  });

  it('materialises the table from what the consumer receives while clients write to it throughout', async () => {
    for (const [name, table] of [['mat', 'public.accounts'], ['mat-pairs', 'public.pairs']]) {
      const r = await f.call('POST', '/api/consumers', { name, source: 'main', kind: 'pull', tables: [table] });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    let writing = true;
    let ops = 0;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      const end = Date.now() + 60_000;
      while (writing && Date.now() < end) {
        const id = 1 + Math.floor(Math.random() * 3300);
        const roll = Math.random();
        if (roll < 0.6) await f.pool.query('UPDATE public.accounts SET v = v + 1, updated_at = now() WHERE id = $1', [id]);
        else if (roll < 0.75) await f.pool.query('DELETE FROM public.accounts WHERE id = $1', [id]);
        else if (roll < 0.9) await f.pool.query(`INSERT INTO public.accounts (id, v, note) VALUES ($1, 100, 'new') ON CONFLICT (id) DO UPDATE SET v = public.accounts.v + 1`, [id]);
        else {
          const b = 1 + Math.floor(Math.random() * 1500);
          await f.pool.query('UPDATE public.pairs SET v = v + 1 WHERE a = $1 AND b = $2', [String.fromCharCode(97 + (b % 5)), b]);
        }
        ops++;
        if (w === 0 && ops % 50 === 0) await new Promise((r) => setTimeout(r, 1));
      }
    });
    await new Promise((r) => setTimeout(r, 200));
    const a = await f.call('POST', '/api/consumers/mat/backfills', { chunk_size: 100 });
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    const p = await f.call('POST', '/api/consumers/mat-pairs/backfills', { chunk_size: 100 });
    expect(p.status, JSON.stringify(p.body)).toBe(201);
    // Drained as it goes, like a real receiver: order per row is the pull API's.
    const received: any[] = [];
    const pairsReceived: any[] = [];
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      // Writers keep adding: take what is there, a few rounds at a time.
      received.push(...(await drain('mat', 20, false)));
      pairsReceived.push(...(await drain('mat-pairs', 20, false)));
      const states = [...(await f.call('GET', '/api/consumers/mat/backfills')).body.data, ...(await f.call('GET', '/api/consumers/mat-pairs/backfills')).body.data];
      if (states.every((b: any) => b.state !== 'running')) break;
    }
    writing = false;
    await Promise.all(writers);
    const [doneA] = await waitDone('mat');
    expect(doneA.state).toBe('done');
    // Every write captured (capture stores in commit order: a later marker row
    // stored means every write before it is), then drained.
    await f.pool.query(`INSERT INTO public.orders VALUES (424242, 'marker')`);
    await eventually(async () => (await f.pool.query(`SELECT 1 FROM sluice.log WHERE table_name = 'orders' AND payload LIKE '%424242%'`)).rows.length > 0);
    received.push(...(await drain('mat')));
    pairsReceived.push(...(await drain('mat-pairs')));

    expect(ops).toBeGreaterThan(100);
    expect(received.some((m) => m.action === 'read')).toBe(true);
    expect(received.some((m) => m.action !== 'read')).toBe(true);
    const copy = materialise(received);
    const table = (await f.pool.query('SELECT id, v, note FROM public.accounts ORDER BY id')).rows;
    expect(copy.size).toBe(table.length);
    for (const row of table) {
      const got = copy.get(JSON.stringify([String(row.id)]));
      expect(got, `row ${row.id}`).toBeDefined();
      expect({ id: got.id, v: got.v, note: got.note }, `row ${row.id}`).toEqual({ id: Number(row.id), v: row.v, note: row.note });
    }
    const pairs = materialise(pairsReceived);
    const pairRows = (await f.pool.query('SELECT a, b, v FROM public.pairs')).rows;
    expect(pairs.size).toBe(pairRows.length);
    for (const row of pairRows) {
      const got = pairs.get(JSON.stringify([row.a, String(row.b)]));
      expect(got).toEqual(row);
    }
  }, 180_000);

  it('sluice backfill starts one through the API and follows it to the end in plain lines', async () => {
    expect((await f.call('POST', '/api/consumers', { name: 'bf-cli', source: 'main', kind: 'pull', tables: ['public.pairs'] })).status).toBe(201);
    const url = await f.app.listen({ host: '127.0.0.1', port: 0 });
    const lines: string[] = [];
    const out = { write: (s: string) => void lines.push(s), isTTY: false };
    const flags = { url, token: ADMIN_TOKEN, 'chunk-size': '400' };
    await backfillCommand(['bf-cli'], flags, {}, out);
    expect(lines[0]).toMatch(/^bf-cli: backfill \d+ of public.pairs started\n$/);
    expect(lines[lines.length - 1]).toMatch(/^public.pairs \[#{30}\] 1,500 of ~1,500 rows .*done\n$/);
    expect((await drain('bf-cli')).length).toBe(1500);
    // Refusals are one line and no stack: a second start is fine (the first ended), a bad table is not.
    await expect(backfillCommand(['bf-cli'], { ...flags, table: 'public.orders' }, {}, out)).rejects.toThrow(/backfill refused \(422\): .*not one of this consumer's tables/);
    await expect(backfillCommand(['bf-cli'], { ...flags, column: 'b' }, {}, out)).rejects.toBeInstanceOf(CliError);
  }, 60_000);

  it('backfill: true on a new consumer (API and config file) starts a backfill of each table with it, once', async () => {
    const viaApi = await f.call('POST', '/api/consumers', { name: 'bf-new', source: 'main', kind: 'pull', tables: ['public.pairs'], backfill: true });
    expect(viaApi.status, JSON.stringify(viaApi.body)).toBe(201);
    expect((await waitDone('bf-new'))[0]).toMatchObject({ table: 'public.pairs', state: 'done', rows_read: 1500 });
    expect((await drain('bf-new')).length).toBe(1500);
    // Refused with the consumer: neither is saved.
    const refused = await f.call('POST', '/api/consumers', { name: 'bf-new-2', source: 'main', kind: 'pull', tables: ['public.pairs'], backfill: true, filter: { actions: ['insert'] } });
    expect(refused.status).toBe(422);
    expect(refused.body.validation_errors.backfill[0]).toMatch(/add "read"/);
    expect((await f.call('GET', '/api/consumers/bf-new-2')).status).toBe(404);

    const text = (extra: string) => [
      'sources:',
      '  - {name: main, tables: [public.accounts, public.pairs, public.orders]}',
      'consumers:',
      `  - {name: bf-file, source: main, kind: pull, tables: [public.pairs], backfill: true${extra}}`,
    ].join('\n');
    await expect(applyConfig(f.pool, loadConfig({ text: text(', filter: {actions: [insert]}') }, {}))).rejects.toSatisfy(
      (e) => e instanceof ConfigError && e.issues.some((i) => i.path === 'consumers[0].backfill' && /add "read"/.test(i.reason)),
    );
    expect((await f.call('GET', '/api/consumers/bf-file')).status).toBe(404);
    await applyConfig(f.pool, loadConfig({ text: text('') }, {}));
    expect((await waitDone('bf-file'))[0]).toMatchObject({ state: 'done', rows_read: 1500 });
    // A gateway reloads its consumers on the config notification; this app is built without that listener.
    await f.deps.consumers.reload();
    expect((await drain('bf-file')).length).toBe(1500);
    // Applied again: read once, at creation; nothing new starts.
    await applyConfig(f.pool, loadConfig({ text: text('') }, {}));
    expect((await f.call('GET', '/api/consumers/bf-file/backfills')).body.data).toHaveLength(1);
  }, 60_000);

  it('message_kind row: each message is the row a change left (deletes as tombstones), so backfill plus live rows is the table', async () => {
    await f.pool.query(`CREATE TABLE public.kv (k text PRIMARY KEY, v bigint NOT NULL, note text);
      INSERT INTO public.kv SELECT 'k' || g, CASE WHEN g = 200 THEN 9007199254740993 ELSE g END, 'n' || g FROM generate_series(1, 200) g`);
    const sources = await f.call('PATCH', '/api/sources/main', { tables: [...TABLES, 'public.kv'] });
    expect(sources.status, JSON.stringify(sources.body)).toBe(200);
    await capture.stop();
    capture = await startCapture(f.url, sourceConfig('main', [...TABLES, 'public.kv']), []);
    const made = await f.call('POST', '/api/consumers', { name: 'rows', source: 'main', kind: 'pull', tables: ['public.kv'], message_kind: 'row', backfill: true });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    expect(made.body.message_kind).toBe('row');
    await f.pool.query(`UPDATE public.kv SET v = v + 1, note = 'changed' WHERE k IN ('k1', 'k2');
      DELETE FROM public.kv WHERE k IN ('k3', 'k2');
      INSERT INTO public.kv VALUES ('new', 1, NULL)`);
    await waitDone('rows');
    const got = await eventually(async () => {
      const all = [...(await drain('rows'))];
      return all.length > 0 ? all : null;
    });
    await f.pool.query(`INSERT INTO public.orders VALUES (525252, 'marker')`);
    await eventually(async () => (await f.pool.query(`SELECT 1 FROM sluice.log WHERE table_name = 'orders' AND payload LIKE '%525252%'`)).rows.length > 0);
    got.push(...(await drain('rows')));
    for (const m of got) {
      expect(Object.keys(m)).toEqual(['record', 'deleted', 'metadata']);
      expect(m.metadata).toMatchObject({ table_schema: 'public', table_name: 'kv', consumer: { name: 'rows' } });
    }
    const tombstones = got.filter((m) => m.deleted);
    expect(tombstones.map((m) => m.record).sort((a, b) => a.k.localeCompare(b.k))).toEqual([{ k: 'k2' }, { k: 'k3' }]);
    const copy = new Map<string, any>();
    for (const m of got) {
      if (m.deleted) copy.delete(m.record.k);
      else copy.set(m.record.k, m.record);
    }
    const table = (await f.pool.query(`SELECT k, v::float8 AS v, note FROM public.kv`)).rows;
    expect(copy.size).toBe(table.length);
    for (const row of table) expect(copy.get(row.k), row.k).toEqual(row);
    const r = await f.call('POST', '/api/consumers/rows/transform/test', { table: 'public.kv', transform: { path: 'deleted' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(Object.keys(r.body.input)).toEqual(['record', 'deleted', 'metadata']);
    expect(r.body.output).toBe(false);
    // Values keep their digits: the row text is the stored text, reshaped.
    expect((await f.call('POST', '/api/consumers/rows/rewind', { to: 'earliest' })).status).toBe(200);
    // (Read as text: JSON.parse would round it. A rewind is taken in as the log is walked.)
    const rawText = await eventually(async () => {
      const raw = await f.app.inject({ method: 'POST', url: '/api/http_pull_consumers/rows/receive', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: { batch_size: 1000 } });
      expect(raw.statusCode).toBe(200);
      const ackIds = (JSON.parse(raw.body).data as Array<{ ack_id: string }>).map((i) => i.ack_id);
      if (ackIds.length > 0) expect((await f.call('POST', '/api/http_pull_consumers/rows/ack', { ack_ids: ackIds })).status).toBe(200);
      return raw.body.includes('"k":"k200"') ? raw.body : null;
    });
    expect(rawText).toContain('"record":{"k":"k200","v":9007199254740993,"note":"n200"},"deleted":false,"metadata":{');
    await drain('rows');
    // Switched back to change messages: the same log, served as changes.
    expect((await f.call('PATCH', '/api/consumers/rows', { message_kind: 'change' })).status).toBe(200);
    await f.deps.consumers.reload();
    expect((await f.call('POST', '/api/consumers/rows/rewind', { to: 'earliest' })).status).toBe(200);
    const changes = await eventually(async () => {
      const some = await drain('rows');
      return some.length > 0 ? some : null;
    });
    expect(changes.every((m) => typeof m.action === 'string' && !('deleted' in m))).toBe(true);
  }, 60_000);
});
