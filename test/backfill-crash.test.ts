// Backfills survive kill -9, at full scale: three webhook consumers are
// backfilled at once, each from its own 100,000-row table (a bigint key; a
// composite key, served as row messages; a bigint key read from a point of a
// start column on), while eight clients insert, update and delete rows of all
// three throughout, and the gateway (`sluice start`, a real process) is
// killed with SIGKILL twice during the backfills. The receiver applies every
// message, in the order it gets them, to an empty copy of each table; at the
// end each copy equals its table row for row: every backfill resumed from its
// last stored chunk, no row went missing, and no read row arrived after a
// newer change of its row.
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Child } from './helpers/child.js';
import { sql } from './helpers/capture.js';
import { startGateway, type Gateway } from './helpers/gateway-process.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { sleep, TEST_SECRET, type Receiver } from './helpers/receiver.js';

const ROWS = 100_000;
const CHUNK = 1000;
const TOKEN = 'backfill-crash-admin-token';
/** updated_at of row g is FROM_BASE + g minutes: `from` leaves out the first 20,000. */
const START_FROM = '2026-11-14T21:20:00Z';

let db: TestPg;
let url: string;
let dir: string;
let server: http.Server;
let hookUrl: string;
const children = new Set<Child>();

/** Per consumer: the copy its messages make, and the idempotency keys of each row's read messages. */
interface Copy {
  rows: Map<string, any>;
  /** Per key, what was applied, in order (for the failure message). */
  history: Map<string, string[]>;
  reads: Map<string, Set<string>>;
  messages: number;
}
const copies: Record<string, Copy> = {};
for (const name of ['items', 'pairs', 'recent']) copies[name] = { rows: new Map(), history: new Map(), reads: new Map(), messages: 0 };

/** Applied on arrival, as a receiver would: per row, a later message is never sent while an earlier one is unanswered. */
function apply(consumer: string, m: any): void {
  const copy = copies[consumer];
  copy.messages++;
  const key = JSON.stringify(m.metadata.record_pks);
  if (!copy.history.has(key)) copy.history.set(key, []);
  copy.history.get(key)!.push(`${m.metadata.commit_lsn}:${m.metadata.commit_idx} ${m.action ?? (m.deleted ? 'tombstone' : 'row')} v=${m.record?.v}`);
  if ('deleted' in m) {
    // message_kind: row
    if (m.deleted) copy.rows.delete(key);
    else copy.rows.set(key, m.record);
  } else if (m.action === 'delete') copy.rows.delete(key);
  else copy.rows.set(key, m.record);
  if (m.action === 'read') {
    if (!copy.reads.has(key)) copy.reads.set(key, new Set());
    copy.reads.get(key)!.add(m.metadata.idempotency_key);
  }
}

beforeAll(async () => {
  db = await startTestPg();
  url = await db.createDatabase('backfill_crash');
  await sql(
    url,
    `CREATE TABLE public.items (id bigint PRIMARY KEY, v int NOT NULL, note text);
     INSERT INTO public.items SELECT g, 0, 'item ' || g FROM generate_series(1, ${ROWS}) g;
     CREATE TABLE public.pairs (a text, b int, v int NOT NULL, PRIMARY KEY (a, b));
     INSERT INTO public.pairs SELECT chr(97 + g % 7), g, 0 FROM generate_series(1, ${ROWS}) g;
     CREATE TABLE public.recent (id bigint PRIMARY KEY, v int NOT NULL, updated_at timestamptz NOT NULL);
     CREATE INDEX ON public.recent (updated_at);
     INSERT INTO public.recent SELECT g, 0, timestamptz '2026-11-01T00:00:00Z' + g * interval '1 minute' FROM generate_series(1, ${ROWS}) g;
     ANALYZE`,
  );
  // The receiver: answers at once, applies each message on arrival.
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const consumer = (req.url ?? '').slice(1);
      for (const m of JSON.parse(Buffer.concat(chunks).toString('utf8')).data) apply(consumer, m);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  hookUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-backfill-crash-'));
  const consumer = (name: string, extra = '') => `
  - name: ${name}
    source: app
    kind: webhook
    tables: [public.${name}]${extra}
    webhook:
      url: ${hookUrl}/${name}
      secrets: ["${TEST_SECRET}"]
      batch_size: 500
      batch_timeout: 0ms
      max_in_flight: 4
      timeout: 3s
      retry: { initial: 100ms, cap: 1s }
      allow_private_ranges: ["127.0.0.0/8"]`;
  writeFileSync(
    path.join(dir, 'sluice.yaml'),
    `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - name: app
    tables: [public.items, public.pairs, public.recent]
consumers:${consumer('items')}${consumer('pairs', '\n    message_kind: row')}${consumer('recent')}
`,
  );
}, 120_000);

afterAll(async () => {
  await Promise.all([...children].map((c) => c.kill9()));
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await db?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('three backfills at once with the gateway killed twice during them', () => {
  it('each resumes from its last chunk; each copy made from what the receiver got equals its table', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    // startGateway reads only how many deliveries the receiver has seen.
    const receiver = { deliveries: [] } as unknown as Receiver;
    try {
      let g: Gateway = await startGateway(url, dir, receiver, children);
      const api = (p: string, init?: RequestInit) =>
        fetch(`http://${g.api.replace(/^https?:\/\//, '')}${p}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
      let writing = true;
      let ops = 0;
      const writers = Array.from({ length: 8 }, async (_, w) => {
        const end = Date.now() + 180_000;
        while (writing && Date.now() < end) {
          const id = 1 + Math.floor(Math.random() * (ROWS + 2000));
          const roll = Math.random();
          try {
            if (w % 3 === 0) {
              if (roll < 0.7) await pool.query('UPDATE public.items SET v = v + 1 WHERE id = $1', [id]);
              else if (roll < 0.85) await pool.query('DELETE FROM public.items WHERE id = $1', [id]);
              else await pool.query(`INSERT INTO public.items VALUES ($1, 100, 'new') ON CONFLICT (id) DO UPDATE SET v = public.items.v + 1`, [id]);
            } else if (w % 3 === 1) {
              const a = String.fromCharCode(97 + (id % 7));
              if (roll < 0.7) await pool.query('UPDATE public.pairs SET v = v + 1 WHERE a = $1 AND b = $2', [a, id]);
              else if (roll < 0.85) await pool.query('DELETE FROM public.pairs WHERE a = $1 AND b = $2', [a, id]);
              else await pool.query('INSERT INTO public.pairs VALUES ($1, $2, 100) ON CONFLICT (a, b) DO UPDATE SET v = public.pairs.v + 1', [a, id]);
            } else {
              // An update moves the row past the backfill's cursor (updated_at = now()).
              if (roll < 0.7) await pool.query('UPDATE public.recent SET v = v + 1, updated_at = now() WHERE id = $1', [id]);
              else if (roll < 0.85) await pool.query('DELETE FROM public.recent WHERE id = $1', [id]);
              else await pool.query('INSERT INTO public.recent VALUES ($1, 100, now()) ON CONFLICT (id) DO UPDATE SET v = public.recent.v + 1, updated_at = now()', [id]);
            }
            ops++;
          } catch {
            // the gateway's kills never touch the source; a failed write changes nothing
          }
          await sleep(2);
        }
      });
      const bodies: Record<string, object> = {
        items: { chunk_size: CHUNK, max_rows_per_second: 8000 },
        pairs: { chunk_size: CHUNK, max_rows_per_second: 8000 },
        recent: { chunk_size: CHUNK, max_rows_per_second: 8000, start: { column: 'updated_at', from: START_FROM } },
      };
      for (const [name, body] of Object.entries(bodies)) {
        const started = await api(`/api/consumers/${name}/backfills`, { method: 'POST', body: JSON.stringify(body) });
        expect(started.status, await started.clone().text()).toBe(201);
      }
      const progress = async () =>
        (await pool.query(`SELECT table_name, state, rows_read::int AS n FROM sluice.backfills ORDER BY table_name`)).rows as { table_name: string; state: string; n: number }[];
      const least = async () => Math.min(...(await progress()).map((p) => p.n));
      const atKills: number[][] = [];
      for (let k = 0; k < 2; k++) {
        const floor = (k + 1) * 25_000;
        for (const until = Date.now() + 60_000; (await least()) < floor && Date.now() < until; ) await sleep(20);
        atKills.push((await progress()).map((p) => p.n));
        g.child.proc.kill('SIGKILL');
        await g.child.kill9();
        g = await startGateway(url, dir, receiver, children);
      }
      for (const until = Date.now() + 120_000; (await progress()).some((p) => p.state === 'running') && Date.now() < until; ) await sleep(100);
      writing = false;
      await Promise.all(writers);
      expect((await progress()).map((p) => p.state)).toEqual(['done', 'done', 'done']);
      // Every write captured and delivered: a marker row in each table, then nothing pending.
      await pool.query(`INSERT INTO public.items VALUES (-1, -1, 'marker'); INSERT INTO public.pairs VALUES ('z', -1, -1);
        INSERT INTO public.recent VALUES (-1, -1, now())`);
      const marked = () => ['items', 'pairs', 'recent'].every((t) => [...copies[t].rows.values()].some((r) => r.v === -1));
      for (const until = Date.now() + 120_000; !marked() && Date.now() < until; ) await sleep(50);
      expect(marked()).toBe(true);
      // Other rows' messages may still be out (order is per row): wait until none is.
      const idle = async () => {
        for (const name of ['items', 'pairs', 'recent']) {
          const st = (await (await api(`/api/consumers/${name}/stats`)).json()) as { pending: number; in_flight: number };
          if (st.pending !== 0 || st.in_flight !== 0) return false;
        }
        return true;
      };
      for (const until = Date.now() + 120_000; !(await idle()) && Date.now() < until; ) await sleep(100);
      expect(await idle()).toBe(true);

      // Both kills during the backfills, each with rows still to read.
      expect(atKills.flat().every((n) => n > 0 && n < ROWS)).toBe(true);
      expect(ops).toBeGreaterThan(1000);
      // A read row arrives twice (under two keys) only if its chunk was in
      // progress at a kill: at most one chunk per kill. (Not for `recent`: a
      // row updated during its backfill moves ahead of the cursor and is read
      // again, rightly. Row messages carry no action, so `pairs` is not counted.)
      const twice = [...copies.items.reads.values()].filter((keys) => keys.size > 1).length;
      expect(twice).toBeLessThanOrEqual(2 * CHUNK);
      expect(copies.items.reads.size).toBeGreaterThan(50_000);

      const compare = (name: string, table: any[], keyOf: (r: any) => string, required: (r: any) => boolean) => {
        const copy = copies[name].rows;
        const inTable = new Set(table.map(keyOf));
        const wrong = table
          .filter((r) => (copy.has(keyOf(r)) || required(r)) && JSON.stringify(pick(copy.get(keyOf(r)), Object.keys(r))) !== JSON.stringify(r))
          .map((r) => `${keyOf(r)}: table ${JSON.stringify(r)}, copy ${JSON.stringify(copy.get(keyOf(r)))}, applied ${JSON.stringify(copies[name].history.get(keyOf(r)))}`);
        const extra = [...copy.keys()].filter((k) => !inTable.has(k));
        return { name, wrong: wrong.slice(0, 5), wrongCount: wrong.length, extra: extra.slice(0, 5) };
      };
      const pick = (o: any, keys: string[]) => (o === undefined ? undefined : Object.fromEntries(keys.map((k) => [k, o[k]])));
      const items = (await pool.query(`SELECT id::int AS id, v, note FROM public.items`)).rows;
      const pairs = (await pool.query(`SELECT a, b, v FROM public.pairs`)).rows;
      const recent = (await pool.query(`SELECT id::int AS id, v, updated_at >= $1 AS due FROM public.recent`, [START_FROM])).rows;
      expect(compare('items', items, (r) => JSON.stringify([String(r.id)]), () => true)).toEqual({ name: 'items', wrong: [], wrongCount: 0, extra: [] });
      expect(copies.items.rows.size).toBe(items.length);
      expect(compare('pairs', pairs, (r) => JSON.stringify([r.a, String(r.b)]), () => true)).toEqual({ name: 'pairs', wrong: [], wrongCount: 0, extra: [] });
      expect(copies.pairs.rows.size).toBe(pairs.length);
      // From a point on: every row at or after it (read, or changed since) is
      // in the copy; rows before it are there only if a change sent them.
      const due = new Set(recent.filter((r) => r.due).map((r) => r.id));
      expect(compare('recent', recent.map(({ id, v }) => ({ id, v })), (r) => JSON.stringify([String(r.id)]), (r) => due.has(r.id))).toEqual({
        name: 'recent',
        wrong: [],
        wrongCount: 0,
        extra: [],
      });
      expect(copies.recent.rows.size).toBeGreaterThanOrEqual(due.size);
    } finally {
      await pool.end();
    }
  }, 600_000);
});
