// Two gateway processes, eight workers, one consumer, a producer that keeps
// inserting: random acks, nacks, late acks and visibility expiries. A trigger
// (test database only) logs every delivery and every ack with a sequence
// number, and the log is checked afterwards: nothing lost, each message acked
// exactly once, and no message of a group handed out before every earlier one
// of its group was acked.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { countMessages, createConsumer, insertMessages } from './helpers/buffer.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

const GATEWAY = fileURLToPath(new URL('./fixtures/pull-gateway.ts', import.meta.url));
const MAX_ACK_PENDING = 30;
const GROUPS = 12;

let pg: TestPg;
let pool: Pool;
let url: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  pg = await startTestPg();
  url = await pg.createDatabase('pull_concurrency');
  pool = createPool(url, { max: 6 });
  await migrate(pool);
  // The delivery log: test-only, beside (not in) the sluice schema.
  await pool.query(`
    CREATE TABLE delivery_log (seq bigserial PRIMARY KEY, ev text NOT NULL, lsn bigint NOT NULL, grp text, token integer);
    CREATE FUNCTION log_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        INSERT INTO delivery_log (ev, lsn, grp, token) VALUES ('ack', OLD.commit_lsn, OLD.group_key, OLD.delivery_token);
      -- A claim with room inserts rows already handed out (migrations/0013):
      -- an INSERT with a token is a delivery too.
      ELSIF NEW.delivery_token IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.delivery_token IS DISTINCT FROM OLD.delivery_token) THEN
        INSERT INTO delivery_log (ev, lsn, grp, token) VALUES ('deliver', NEW.commit_lsn, NEW.group_key, NEW.delivery_token);
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER log_delivery AFTER INSERT OR UPDATE OR DELETE ON sluice.messages FOR EACH ROW EXECUTE FUNCTION log_delivery();`);
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await pool?.end();
  await pg?.stop();
});

function startGateway(): Promise<{ origin: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', GATEWAY], {
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('gateway did not start in 30 s')), 30_000);
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^PORT (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve({ origin: `http://127.0.0.1:${m[1]}`, child });
      }
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('two gateway processes, eight workers, one consumer', () => {
  it('loses nothing, acks each message once, and never breaks per-group order', async () => {
    const name = 'stress';
    const consumerId = await createConsumer(pool, { name, pull: { ack_wait_ms: 300, max_ack_pending: MAX_ACK_PENDING } });
    const gateways = await Promise.all([startGateway(), startGateway()]);
    const deadline = Date.now() + 45_000;
    const produced: { lsn: number; group: string | null }[] = [];
    let producing = true;
    const stats = { received: 0, acked: 0, staleAcks: 0, nacked: 0, dropped: 0, errors: [] as string[], maxInFlight: 0 };

    const producer = (async () => {
      let lsn = 1;
      const until = Date.now() + 8_000;
      while (Date.now() < until) {
        const batch = Array.from({ length: 1 + Math.floor(Math.random() * 8) }, () => {
          const g = Math.floor(Math.random() * (GROUPS + 2));
          // Most messages are grouped; a few (g >= GROUPS) are not.
          return { lsn: lsn++, group: g < GROUPS ? `g${g}` : null };
        });
        await insertMessages(pool, consumerId, batch);
        produced.push(...batch);
        stats.maxInFlight = Math.max(stats.maxInFlight, (await countMessages(pool, consumerId)).inFlight);
        await sleep(15 + Math.random() * 20);
      }
      producing = false;
    })();

    const post = (origin: string, route: string, body: unknown) =>
      fetch(`${origin}/api/http_pull_consumers/${name}/${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => {
        if (r.status !== 200) stats.errors.push(`${route} ${r.status} ${await r.text()}`);
        return (await r.json()) as { applied: number };
      });

    const worker = async (origin: string) => {
      // Bounded by the deadline; stops once production ended and the buffer is empty.
      while (Date.now() < deadline) {
        const batchSize = 1 + Math.floor(Math.random() * 10);
        const res = await fetch(`${origin}/api/http_pull_consumers/${name}/receive?batch_size=${batchSize}&wait_for=500`);
        if (res.status !== 200) {
          stats.errors.push(`receive ${res.status} ${await res.text()}`);
          continue;
        }
        const items = ((await res.json()) as { data: { ack_id: string }[] }).data;
        stats.received += items.length;
        if (items.length === 0) {
          if (!producing && (await countMessages(pool, consumerId)).total === 0) return;
          continue;
        }
        const toAck: string[] = [];
        const toNack: string[] = [];
        for (const item of items) {
          const roll = Math.random();
          if (roll < 0.12) toNack.push(item.ack_id);
          else if (roll < 0.24) stats.dropped++; // left to time out
          else toAck.push(item.ack_id);
        }
        // Sometimes work takes longer than the visibility timeout: the late
        // ack must then apply to nothing if the message went to someone else.
        if (Math.random() < 0.1) await sleep(250 + Math.random() * 200);
        if (toNack.length) stats.nacked += (await post(origin, 'nack', { ack_ids: toNack })).applied;
        if (toAck.length) {
          const { applied } = await post(origin, 'ack', { ack_ids: toAck });
          stats.acked += applied;
          stats.staleAcks += toAck.length - applied;
        }
      }
    };

    await Promise.all([producer, ...gateways.flatMap((g) => Array.from({ length: 4 }, () => worker(g.origin)))]);

    expect(stats.errors).toEqual([]);
    expect(produced.length).toBeGreaterThan(300);
    expect(await countMessages(pool, consumerId)).toEqual({ total: 0, dead: 0, inFlight: 0 });
    expect(stats.acked).toBe(produced.length);
    expect(stats.maxInFlight).toBeLessThanOrEqual(MAX_ACK_PENDING);

    const { rows: log } = await pool.query<{ seq: string; ev: string; lsn: string; grp: string | null }>(
      'SELECT seq, ev, lsn, grp FROM delivery_log ORDER BY seq',
    );
    const acks = log.filter((e) => e.ev === 'ack').map((e) => Number(e.lsn));
    expect(acks.length).toBe(produced.length);
    expect(new Set(acks).size).toBe(produced.length);
    expect(new Set(acks)).toEqual(new Set(produced.map((p) => p.lsn)));

    // Replay the log per group: a delivery is legal only when every earlier
    // message of its group has already been acked.
    const byGroup = new Map<string, number[]>();
    for (const p of produced) if (p.group) (byGroup.get(p.group) ?? byGroup.set(p.group, []).get(p.group)!).push(p.lsn);
    const ackedSoFar = new Set<number>();
    const violations: string[] = [];
    const ackOrder = new Map<string, number[]>();
    for (const e of log) {
      const lsn = Number(e.lsn);
      if (e.ev === 'ack') {
        ackedSoFar.add(lsn);
        if (e.grp) (ackOrder.get(e.grp) ?? ackOrder.set(e.grp, []).get(e.grp)!).push(lsn);
        continue;
      }
      if (!e.grp) continue;
      for (const earlier of byGroup.get(e.grp) ?? []) {
        if (earlier >= lsn) break;
        if (!ackedSoFar.has(earlier)) violations.push(`${lsn} delivered while ${earlier} (group ${e.grp}) was not acked`);
      }
    }
    expect(violations.slice(0, 5)).toEqual([]);
    for (const [g, order] of ackOrder) expect(order, `acks of ${g}`).toEqual(byGroup.get(g));

    // The mix really happened.
    expect(stats.nacked).toBeGreaterThan(0);
    expect(stats.dropped).toBeGreaterThan(0);
    expect(log.filter((e) => e.ev === 'deliver').length).toBeGreaterThan(produced.length);
  }, 60_000);
});
