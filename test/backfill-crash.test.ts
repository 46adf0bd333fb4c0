// A backfill survives kill -9: a webhook consumer is backfilled from a
// 20,000-row table while four clients write to it throughout, and the gateway
// (`sluice start`, a real process) is killed with SIGKILL twice during the
// backfill. Applying every message the receiver got, in the order it got
// them, to an empty copy gives the table row for row: the backfill resumed
// from its last stored chunk, no row went missing, and no read row arrived
// after a newer change of its row.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Child } from './helpers/child.js';
import { sql } from './helpers/capture.js';
import { startGateway, type Gateway } from './helpers/gateway-process.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { sleep, startReceiver, TEST_SECRET, type Receiver } from './helpers/receiver.js';

const ROWS = 20_000;
const TOKEN = 'backfill-crash-admin-token';

let db: TestPg;
let url: string;
let receiver: Receiver;
let dir: string;
const children = new Set<Child>();

beforeAll(async () => {
  db = await startTestPg();
  url = await db.createDatabase('backfill_crash');
  await sql(url, `CREATE TABLE public.items (id bigint PRIMARY KEY, v int NOT NULL);
    INSERT INTO public.items SELECT g, 0 FROM generate_series(1, ${ROWS}) g; ANALYZE public.items`);
  receiver = await startReceiver(() => ({ status: 200, delayMs: 2 }));
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-backfill-crash-'));
  writeFileSync(
    path.join(dir, 'sluice.yaml'),
    `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - name: app
    tables: [public.items]
consumers:
  - name: hook
    source: app
    kind: webhook
    tables: [public.items]
    webhook:
      url: ${receiver.url}
      secrets: ["${TEST_SECRET}"]
      batch_size: 100
      batch_timeout: 0ms
      max_in_flight: 4
      timeout: 3s
      retry: { initial: 100ms, cap: 1s }
      allow_private_ranges: ["127.0.0.0/8"]
`,
  );
}, 60_000);

afterAll(async () => {
  await Promise.all([...children].map((c) => c.kill9()));
  await receiver?.close();
  await db?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a backfill with the gateway killed twice during it', () => {
  it('resumes from its last chunk; the copy made from what the receiver got equals the table', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 6 });
    try {
      let g: Gateway = await startGateway(url, dir, receiver, children);
      const api = (p: string, init?: RequestInit) =>
        fetch(`http://${g.api.replace(/^https?:\/\//, '')}${p}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
      let writing = true;
      let ops = 0;
      const writers = Array.from({ length: 4 }, async () => {
        const end = Date.now() + 90_000;
        while (writing && Date.now() < end) {
          const id = 1 + Math.floor(Math.random() * (ROWS + 500));
          const roll = Math.random();
          try {
            if (roll < 0.7) await pool.query('UPDATE public.items SET v = v + 1 WHERE id = $1', [id]);
            else if (roll < 0.85) await pool.query('DELETE FROM public.items WHERE id = $1', [id]);
            else await pool.query('INSERT INTO public.items VALUES ($1, 100) ON CONFLICT (id) DO UPDATE SET v = public.items.v + 1', [id]);
            ops++;
          } catch {
            // never expected; a failed write changes nothing
          }
          await sleep(2);
        }
      });
      // Slow enough (4,000 rows a second) that both kills land during it.
      const started = await api('/api/consumers/hook/backfills', { method: 'POST', body: JSON.stringify({ chunk_size: 200, max_rows_per_second: 4000 }) });
      expect(started.status, await started.clone().text()).toBe(201);
      const progress = async () => (await pool.query(`SELECT state, rows_read::int AS n FROM sluice.backfills`)).rows[0] as { state: string; n: number };
      const atKills: number[] = [];
      for (let k = 0; k < 2; k++) {
        const floor = (k + 1) * 5_000;
        for (const until = Date.now() + 30_000; (await progress()).n < floor && Date.now() < until; ) await sleep(20);
        atKills.push((await progress()).n);
        g.child.proc.kill('SIGKILL');
        await g.child.kill9();
        g = await startGateway(url, dir, receiver, children);
      }
      for (const until = Date.now() + 60_000; (await progress()).state === 'running' && Date.now() < until; ) await sleep(50);
      writing = false;
      await Promise.all(writers);
      expect((await progress()).state).toBe('done');
      // Every write captured and delivered: a marker row, then nothing pending.
      await pool.query('INSERT INTO public.items VALUES (-1, -1)');
      const seen = () => receiver.deliveries.some((d) => d.messages.some((m) => m.record?.id === -1));
      for (const until = Date.now() + 60_000; !seen() && Date.now() < until; ) await sleep(50);
      expect(seen()).toBe(true);
      // Other rows' messages may still be out (order is per row): wait until none is.
      const idle = async () => {
        const st = (await (await api('/api/consumers/hook/stats')).json()) as { pending: number; in_flight: number };
        return st.pending === 0 && st.in_flight === 0;
      };
      for (const until = Date.now() + 60_000; !(await idle()) && Date.now() < until; ) await sleep(100);
      expect(await idle()).toBe(true);

      // Both kills during the backfill, with rows still to read.
      expect(atKills.every((n) => n > 0 && n < ROWS)).toBe(true);
      expect(ops).toBeGreaterThan(200);
      const copy = new Map<number, number>();
      const messages = [...receiver.deliveries].sort((a, b) => a.n - b.n).flatMap((d) => d.messages);
      for (const m of messages) {
        if (m.action === 'delete') copy.delete(m.record.id);
        else copy.set(m.record.id, m.record.v);
      }
      expect(messages.some((m) => m.action === 'read')).toBe(true);
      // Read twice (under two keys) only rows of a chunk in progress at a kill:
      // at most one chunk (200 rows) per kill. Resent deliveries keep their key.
      const readKeys = new Map<number, Set<string>>();
      for (const m of messages.filter((x) => x.action === 'read')) {
        if (!readKeys.has(m.record.id)) readKeys.set(m.record.id, new Set());
        readKeys.get(m.record.id)!.add(m.metadata.idempotency_key);
      }
      expect([...readKeys.values()].filter((keys) => keys.size > 1).length).toBeLessThanOrEqual(2 * 200);
      const table = (await pool.query('SELECT id::int AS id, v FROM public.items')).rows as { id: number; v: number }[];
      const wrong = table.filter((r) => copy.get(r.id) !== r.v).map((r) => `${r.id}: table ${r.v}, copy ${copy.get(r.id)}`);
      const extra = [...copy.keys()].filter((id) => !table.some((r) => r.id === id));
      expect({ wrong: wrong.slice(0, 10), extra: extra.slice(0, 10) }).toEqual({ wrong: [], extra: [] });
      expect(copy.size).toBe(table.length);
    } finally {
      await pool.end();
    }
  }, 240_000);
});
