// Start positions and rewinds through the real API, on a real capture: a
// consumer created with `start` gets exactly the retained changes from its
// point on (pulled over the pull API), a rewind delivers them again in order
// per group, and every refusal (unknown consumer, a point that does not parse
// or that retention has dropped) answers 4xx and changes nothing. Also
// `retention` on sources, `start` through `sluice config apply`, and `sluice
// rewind` as a child process.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyConfig, exportConfig } from '../src/config/apply.js';
import { ConfigError, loadConfig, stringifyConfig } from '../src/config/load.js';
import { migrate, MIGRATIONS_DIR } from '../src/db/migrate.js';
import { createPool } from '../src/db/pool.js';
import { formatLsn } from '../src/log/points.js';
import { ADMIN_TOKEN, expectRejections, startApi, type ApiFixture } from './api-fixture.js';
import { eventually, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';
import { runCli } from './helpers/child.js';

let f: ApiFixture;
let capture: CaptureFixture;
/** The log's rows, in commit order: [lsn text, committed_at]. */
let logRows: Array<{ lsn: string; idx: number; at: Date; what: string }>;
/** Between the first three changes (A) and the last three (B). */
let midTime: string;

const SOURCE = { name: 'main', tables: ['public.orders', 'public.users'] };
const consumer = (name: string, extra: object = {}) => ({ name, source: 'main', kind: 'pull', tables: ['public.orders'], ...extra });

async function logged(): Promise<typeof logRows> {
  const { rows } = await f.pool.query<{ lsn: string; idx: number; at: Date; what: string }>(
    `SELECT commit_lsn::text AS lsn, commit_idx AS idx, committed_at AS at, action || ':' || (payload::jsonb -> 'record' ->> 'id') AS what
       FROM sluice.log ORDER BY commit_lsn, commit_idx`,
  );
  return rows;
}

async function waitForLog(n: number): Promise<void> {
  await eventually(async () => (await logged()).length >= n);
}

interface Pulled {
  what: string;
  key: [number, number];
  group: string;
}

/**
 * Everything the consumer can take now, acked as it goes: a group's next
 * change is handed out only once the one before it is acked.
 */
async function drain(name: string): Promise<Pulled[]> {
  const out: Pulled[] = [];
  for (let round = 0; round < 50; round++) {
    const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 100 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) return out;
    for (const { data } of items) {
      out.push({ what: `${data.action}:${data.record.id}`, key: [data.metadata.commit_lsn, data.metadata.commit_idx], group: String(data.record.id) });
    }
    const ack = await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) });
    expect(ack.status).toBe(200);
  }
  throw new Error('drain did not end');
}

/** What each group received, in order: per-group order is what must hold. */
function byGroup(items: Pulled[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const i of items) (out[i.group] ??= []).push(i.what);
  return out;
}

/** Everything a refusal must leave as it was. */
async function snapshot(): Promise<string> {
  const q = async (sql: string) => JSON.stringify((await f.pool.query(sql)).rows);
  return [
    await q('SELECT name, config, updated_at FROM sluice.consumers ORDER BY name'),
    await q('SELECT consumer_id, commit_lsn, commit_idx, updated_at FROM sluice.consumer_positions ORDER BY consumer_id'),
    await q('SELECT consumer_id, commit_lsn, commit_idx, state, replay, delivery_token, deliver_count FROM sluice.messages ORDER BY 1, 2, 3'),
    await q('SELECT name, config, updated_at FROM sluice.sources ORDER BY name'),
  ].join('\n');
}

beforeAll(async () => {
  f = await startApi('log_positions');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  capture = await startCapture(f.url, sourceConfig('main', SOURCE.tables), []);
  // A: three changes, one transaction each; then, a moment later, B: three more.
  await f.pool.query(`INSERT INTO orders VALUES (1, 'new')`);
  await f.pool.query(`INSERT INTO orders VALUES (2, 'new')`);
  await f.pool.query(`UPDATE orders SET status = 'paid' WHERE id = 1`);
  await waitForLog(3);
  // committed_at has microseconds, a Date milliseconds: 1 ms past the last of A
  // is after it, and B starts 30 ms later.
  midTime = new Date((await logged())[2].at.getTime() + 1).toISOString();
  await new Promise((r) => setTimeout(r, 30));
  await f.pool.query(`INSERT INTO orders VALUES (3, 'new')`);
  await f.pool.query(`UPDATE orders SET status = 'paid' WHERE id = 2`);
  await f.pool.query(`INSERT INTO users VALUES (1, 'ann')`);
  await waitForLog(6);
  logRows = await logged();
  expect(logRows.map((r) => r.what)).toEqual(['insert:1', 'insert:2', 'update:1', 'insert:3', 'update:2', 'insert:1']);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await f?.stop();
});

const A = ['insert:1', 'insert:2', 'update:1'];
const B = ['insert:3', 'update:2'];

describe('start', () => {
  it('earliest gets every retained change committed before it was created; now gets none of them', async () => {
    expect((await f.call('POST', '/api/consumers', consumer('from-earliest', { start: 'earliest' }))).status).toBe(201);
    expect((await f.call('POST', '/api/consumers', consumer('from-now'))).status).toBe(201);
    const all = await drain('from-earliest');
    expect(all.map((i) => i.what).sort()).toEqual([...A, ...B].sort());
    expect(byGroup(all)).toEqual({ '1': ['insert:1', 'update:1'], '2': ['insert:2', 'update:2'], '3': ['insert:3'] });
    expect(await drain('from-now')).toEqual([]);
    // ...and it gets what is committed after it was created.
    await f.pool.query(`INSERT INTO orders VALUES (4, 'new')`);
    await waitForLog(7);
    const later = await eventually(async () => {
      const got = await drain('from-now');
      return got.length ? got : null;
    });
    expect(later.map((i) => i.what)).toEqual(['insert:4']);
    expect((await drain('from-earliest')).map((i) => i.what)).toEqual(['insert:4']);
  });

  it('a timestamp in the middle of the log gets exactly the changes committed after it; an LSN those from it on', async () => {
    const r = await f.call('POST', '/api/consumers', consumer('from-time', { start: midTime, group_by: false }));
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.start).toBe(midTime);
    expect((await drain('from-time')).map((i) => i.what)).toEqual([...B, 'insert:4']);
    const lsn = formatLsn(logRows[3].lsn);
    expect((await f.call('POST', '/api/consumers', consumer('from-lsn', { start: lsn, group_by: false }))).status).toBe(201);
    expect((await drain('from-lsn')).map((i) => i.what)).toEqual([...B, 'insert:4']);
    // A time after every captured change: from the newest on, as "now".
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await f.call('POST', '/api/consumers', consumer('from-future', { start: future }))).status).toBe(201);
    expect(await drain('from-future')).toEqual([]);
  });

  it('is read only at creation: PATCH refuses another value and accepts the stored one back', async () => {
    const before = await snapshot();
    await expectRejections(f, [['PATCH', '/api/consumers/from-time', { start: 'earliest' }, 422, /start: applies only when a consumer is created.*rewind/]]);
    expect(await snapshot()).toBe(before);
    const same = await f.call('PATCH', '/api/consumers/from-time', { start: midTime, annotations: { x: 1 } });
    expect(same.status).toBe(200);
  });
});

describe('rewind', () => {
  it('to earliest delivers every retained change of its tables again, in order per group; a timestamp those after it', async () => {
    const r = await f.call('POST', '/api/consumers/from-earliest/rewind', { to: 'earliest' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toEqual({
      redelivering: 6,
      from: { commit_lsn: formatLsn(logRows[0].lsn), committed_at: logRows[0].at.toISOString() },
    });
    const again = await drain('from-earliest');
    expect(again.map((i) => i.what).sort()).toEqual([...A, ...B, 'insert:4'].sort());
    expect(byGroup(again)).toEqual({ '1': ['insert:1', 'update:1'], '2': ['insert:2', 'update:2'], '3': ['insert:3'], '4': ['insert:4'] });

    const t = await f.call('POST', '/api/consumers/from-earliest/rewind', { to: midTime });
    expect(t.body).toEqual({ redelivering: 3, from: { commit_lsn: formatLsn(logRows[3].lsn), committed_at: logRows[3].at.toISOString() } });
    expect((await drain('from-earliest')).map((i) => i.what).sort()).toEqual([...B, 'insert:4'].sort());
  });

  it('while messages are in flight: they are delivered again after the ones before them', async () => {
    const first = await f.call('POST', '/api/http_pull_consumers/from-time/receive', { batch_size: 100 });
    expect(first.body.data).toHaveLength(0);
    // from-time: no grouping, so everything after the point is handed out at once.
    expect((await f.call('POST', '/api/consumers/from-time/rewind', { to: formatLsn(logRows[3].lsn) })).body.redelivering).toBe(3);
    const out = await f.call('POST', '/api/http_pull_consumers/from-time/receive', { batch_size: 100 });
    expect(out.body.data.map((i: any) => `${i.data.action}:${i.data.record.id}`)).toEqual([...B, 'insert:4']);
    // Rewound while all three are out: the acks end those deliveries, and the
    // three come again, in order.
    const rewound = await f.call('POST', '/api/consumers/from-time/rewind', { to: formatLsn(logRows[3].lsn) });
    expect(rewound.body.redelivering).toBe(3);
    await f.call('POST', '/api/http_pull_consumers/from-time/ack', { ack_ids: out.body.data.map((i: any) => i.ack_id) });
    expect((await drain('from-time')).map((i) => i.what)).toEqual([...B, 'insert:4']);
  });

  it('a time after every change: nothing to deliver again', async () => {
    const r = await f.call('POST', '/api/consumers/from-now/rewind', { to: new Date(Date.now() + 3_600_000).toISOString() });
    expect(r.body).toEqual({ redelivering: 0, from: { commit_lsn: null, committed_at: null } });
  });

  it('refusals answer 4xx and change nothing', async () => {
    const before = await snapshot();
    await expectRejections(f, [
      ['POST', '/api/consumers/nope/rewind', { to: 'earliest' }, 404, /Consumer "nope" does not exist/],
      ['POST', '/api/consumers/from-now/rewind', { to: 'yesterday' }, 422, { to: [expect.stringMatching(/^must be "earliest", an RFC 3339 timestamp/)] }],
      ['POST', '/api/consumers/from-now/rewind', { to: 'now' }, 422, /Invalid request: to: must be "earliest"/],
      ['POST', '/api/consumers/from-now/rewind', { to: '2026-02-30T10:00:00Z' }, 422, { to: [expect.any(String)] }],
      ['POST', '/api/consumers/from-now/rewind', { to: '16/ZZ' }, 422, { to: [expect.any(String)] }],
      ['POST', '/api/consumers/from-now/rewind', {}, 422, { to: ['is required'] }],
      ['POST', '/api/consumers/from-now/rewind', { to: 5 }, 422, /to/],
      ['POST', '/api/consumers/from-now/rewind', { to: 'earliest', from: 'x' }, 422, /from.*not a known field/],
      ['POST', '/api/consumers/from-now/rewind', '[1]', 400, /JSON object/],
    ]);
    const noToken = await f.call('POST', '/api/consumers/from-now/rewind', { to: 'earliest' }, null);
    expect(noToken.status).toBe(401);
    expect(await snapshot()).toBe(before);
  });
});

describe('points older than what retention kept', () => {
  // As retention records a drop: every change before the fourth is gone.
  const dropA = () =>
    f.pool.query(`INSERT INTO sluice.log_horizons (source_no, dropped_lsn) SELECT log_no, $1 FROM sluice.sources WHERE name = 'main'
      ON CONFLICT (source_no) DO UPDATE SET dropped_lsn = excluded.dropped_lsn`, [logRows[3].lsn]);
  const oldest = () => `the oldest retained change of this source is at LSN ${formatLsn(logRows[3].lsn)}, committed at ${logRows[3].at.toISOString()}`;

  it('are refused with 422 naming the oldest retained point, for rewinds and starts; nothing changes', async () => {
    await dropA();
    const before = await snapshot();
    const early = formatLsn(logRows[1].lsn);
    const [expectedOldest] = [oldest()];
    await expectRejections(f, [
      ['POST', '/api/consumers/from-now/rewind', { to: early }, 422, { to: [`LSN ${early} is older than what the log retains: ${expectedOldest}. Use that point or a later one, or "earliest"`] }],
      ['POST', '/api/consumers/from-now/rewind', { to: logRows[0].at.toISOString() }, 422, { to: [expect.stringContaining(expectedOldest)] }],
      ['POST', '/api/consumers', consumer('too-old', { start: early }), 422, { start: [expect.stringContaining(expectedOldest)] }],
      ['POST', '/api/consumers', consumer('too-old', { start: midTime }), 422, { start: [expect.stringContaining(expectedOldest)] }],
      ['POST', '/api/consumers', consumer('bad-start', { start: 'yesterday' }), 422, { start: [expect.stringMatching(/^must be now, earliest/)] }],
    ]);
    expect(await snapshot()).toBe(before);
    // The oldest retained point itself, and earliest, are fine.
    expect((await f.call('POST', '/api/consumers/from-now/rewind', { to: formatLsn(logRows[3].lsn) })).body.redelivering).toBe(3);
    expect((await f.call('POST', '/api/consumers/from-now/rewind', { to: 'earliest' })).body.redelivering).toBe(6);
  });

  it('sluice config apply: a config error at consumers[i].start, nothing applied', async () => {
    const before = await snapshot();
    const config = loadConfig({
      text: `
sources: [{ name: main, tables: [public.orders, public.users] }]
consumers:
  - { name: cfg-ok, source: main, kind: pull, tables: [public.orders] }
  - { name: cfg-old, source: main, kind: pull, tables: [public.orders], start: "${formatLsn(logRows[0].lsn)}" }
`,
    });
    const err = await applyConfig(f.pool, config).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toEqual([{ path: 'consumers[1].start', reason: expect.stringContaining(oldest()) }]);
    expect(await snapshot()).toBe(before);
  });
});

describe('sluice config apply', () => {
  it('creates a consumer at its start; a later change of start is not applied, and said so', async () => {
    const yaml = (start: string) => `
sources: [{ name: main, tables: [public.orders, public.users] }]
consumers: [{ name: cfg-lsn, source: main, kind: pull, tables: [public.orders], group_by: false, start: "${start}" }]
`;
    const notes: string[] = [];
    const plan = await applyConfig(f.pool, loadConfig({ text: yaml(formatLsn(logRows[4].lsn)) }), { onNote: (t) => notes.push(t) });
    expect(plan.map((p) => `${p.action} ${p.name}`)).toEqual(['create cfg-lsn']);
    await f.deps.consumers.reload();
    expect((await drain('cfg-lsn')).map((i) => i.what)).toEqual(['update:2', 'insert:4']);
    const before = await snapshot();
    expect(await applyConfig(f.pool, loadConfig({ text: yaml('earliest') }), { onNote: (t) => notes.push(t) })).toEqual([]);
    expect(notes).toEqual([expect.stringMatching(/^consumer cfg-lsn: start "earliest" is not applied: start is read only when a consumer is created/)]);
    expect(await snapshot()).toBe(before);
  });
});

describe('retention on sources', () => {
  it('shown with its defaults, changed by PATCH, refused out of range with the path; nothing changes then', async () => {
    const got = await f.call('GET', '/api/sources/main');
    expect(got.body.retention).toEqual({ max_age: '168h', max_size: '20GB' });
    const before = await snapshot();
    await expectRejections(f, [
      ['PATCH', '/api/sources/main', { retention: { max_age: '0.5s' } }, 422, { 'retention.max_age': ['must be at least 1s'] }],
      ['PATCH', '/api/sources/main', { retention: { max_size: '200TB' } }, 422, { 'retention.max_size': ['must be at most 100TB'] }],
      ['PATCH', '/api/sources/main', { retention: { max_age: 'forever' } }, 422, { 'retention.max_age': [expect.stringMatching(/^must be a duration/)] }],
      ['POST', '/api/sources', { name: 'other', tables: ['public.items'], retention: { keep: 1 } }, 422, { 'retention.keep': [expect.stringMatching(/^unknown key/)] }],
    ]);
    expect(await snapshot()).toBe(before);
    const patched = await f.call('PATCH', '/api/sources/main', { retention: { max_age: '2d' } });
    expect(patched.status).toBe(200);
    expect(patched.body.retention).toEqual({ max_age: '48h', max_size: '20GB' });
    expect((await f.call('GET', '/api/sources')).body.data[0].retention).toEqual({ max_age: '48h', max_size: '20GB' });
    expect(stringifyConfig(await exportConfig(f.pool))).toMatch(/\n    retention:\n      max_age: 48h\n      max_size: 20GB\n/);
  });

  it('sources stored before retention existed get the defaults on upgrade (migration 0012)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-migrations-'));
    const pool = createPool(await f.pg.createDatabase('upgrade_0012'), { max: 1 });
    try {
      cpSync(MIGRATIONS_DIR, dir, { recursive: true, filter: (p) => !/\/00(1[1-9]|[2-9]\d)_[^/]*$/.test(p) });
      await migrate(pool, dir);
      await pool.query(`INSERT INTO sluice.sources (name, config) VALUES ('old', '{"name": "old", "tables": ["public.orders"]}')`);
      await migrate(pool);
      const { rows } = await pool.query(`SELECT config -> 'retention' AS r FROM sluice.sources`);
      expect(rows).toEqual([{ r: { max_age_ms: 7 * 86_400_000, max_size_bytes: 20 * 1024 ** 3 } }]);
    } finally {
      await pool.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is in the OpenAPI document, with rewind', async () => {
    const doc = (await f.call('GET', '/api/openapi.json')).body;
    const post = doc.paths['/api/sources'].post.requestBody.content['application/json'].schema;
    expect(Object.keys(post.properties.retention.properties)).toEqual(['max_age', 'max_size']);
    const rewind = doc.paths['/api/consumers/{name}/rewind'].post;
    expect(rewind.requestBody.content['application/json'].schema.required).toEqual(['to']);
    expect(Object.keys(rewind.responses['200'].content['application/json'].schema.properties)).toEqual(['redelivering', 'from']);
  });
});

describe('now', () => {
  it("is the source's WAL as the consumer is created, not what capture has written so far", async () => {
    await capture.stop();
    await f.pool.query(`INSERT INTO orders VALUES (9, 'while capture was down')`);
    expect((await f.call('POST', '/api/consumers', consumer('now-behind'))).status).toBe(201);
    capture = await startCapture(f.url, sourceConfig('main', SOURCE.tables), []);
    await eventually(async () => (await logged()).some((r) => r.what === 'insert:9'));
    expect(await drain('now-behind')).toEqual([]);
    expect((await drain('from-earliest')).map((i) => i.what)).toContain('insert:9');
  }, 60_000);
});

describe('sluice rewind', () => {
  it('asks the API and says how many changes come again; a refusal is one line and exit 1', async () => {
    const address = await f.app.listen({ host: '127.0.0.1', port: 0 });
    const run = (args: string[]) => runCli(['rewind', ...args], { SLUICE_URL: address, SLUICE_TOKEN: ADMIN_TOKEN });
    const ok = await run(['from-now', '--to', formatLsn(logRows[3].lsn)]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout.trim()).toBe(
      `from-now: 4 retained changes will be delivered again, from LSN ${formatLsn(logRows[3].lsn)} (committed ${logRows[3].at.toISOString()}).`,
    );
    const bad = await run(['from-now', '--to', 'yesterday']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^rewind refused \(422\): Invalid request: to: must be "earliest"/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    const usage = await run(['from-now']);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/usage: sluice rewind <consumer> --to <point>/);
  }, 60_000);
});
