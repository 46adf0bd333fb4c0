// Rewind under load (issue 10): a real gateway process (`sluice start`)
// captures `items` for a webhook consumer posting to a receiver on 127.0.0.1
// that answers in 30–60 ms. About 2,000 changes are delivered, then, while
// live inserts and updates keep arriving, the consumer is rewound to
// `earliest` through `POST /api/consumers/hook/rewind`; during the replay the
// gateway is killed with SIGKILL twice (each time while the receiver holds one
// of its requests) and restarted. Judged from the receiver's log, with two
// facts read from the buffer (the `sluice.changes` view, and the order in
// which the rewind and each webhook batch were made, recorded by triggers).
//
// What is checked:
// - Nothing missing: every change of `items` in `sluice.changes` (all of them
//   retained: nothing is old enough for retention; their count is what the
//   producer committed) arrives, at or after the rewind call was sent, in a
//   batch made after the rewind (a "replay batch"); and every message carries
//   its change's commit position and idempotency key as the view has them.
// - Per-group order (group = row primary key). Walk each row's messages in
//   arrival order (a POST's messages in body order), over the deliveries that
//   arrived from the moment the rewind call was sent. Each message's
//   (commit_lsn, commit_idx) is >= the one before it, except:
//   (a) an exact redelivery: a webhook-id the receiver had already seen (a
//       batch out at a kill, sent again whole; batches resent with other
//       messages are reported separately);
//   (b) the rewind's restart, once per row: a step back to the row's first
//       change (where the replay of `earliest` begins for the row), when every
//       message of the row before it in the walk came in a batch made before
//       the rewind (a batch already out when the rewind landed, which finishes
//       that delivery first, see docs/api.md "Rewind");
//   (c) a capture replay: after a restart whose log says it removed a partly
//       stored transaction from `from` on, a change is delivered again under
//       a new webhook-id if its earlier delivery, before that restart, was in
//       a batch naming a change at or past `from` (the same allowance as
//       test/gateway-crash.test.ts).
//   The row's last message is its last change.
// - No overlap (rule 3): over the whole log, no two requests carrying the same
//   row are open at the same time (a request runs from its first bytes to the
//   receiver's answer; one open at a kill ends at the kill).
// - The kills landed during the replay: at each, some change committed before
//   the rewind had not yet arrived in a replay batch.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, sql } from './helpers/capture.js';
import { ChangeLog, ITEMS_TABLE, seen, type SeenMessage } from './helpers/change-log.js';
import { type Child } from './helpers/child.js';
import { captureReplays, killDuringDelivery, problemKinds, startGateway } from './helpers/gateway-process.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { inconsistentBatches, sleep, startReceiver, TEST_SECRET, type Delivery, type Receiver } from './helpers/receiver.js';

const BEFORE_REWIND = 2_000;
const KILLS = 2;
const TOKEN = 'rewind-crash-admin-token';

let db: TestPg;
let url: string;
let receiver: Receiver;
let dir: string;
const children = new Set<Child>();

beforeAll(async () => {
  db = await startTestPg();
  url = await db.createDatabase('rewind_crash');
  await sql(url, ITEMS_TABLE);
  receiver = await startReceiver(() => ({ status: 200, delayMs: 30 + Math.random() * 30 }));
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-rewind-crash-'));
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
      batch_size: 5
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

const start = () => startGateway(url, dir, receiver, children);

/**
 * Triggers (test only) numbering, in one sequence, every webhook batch made
 * and every move back of a consumer's position (a rewind, or a capture replay
 * at startup). Batches and rewinds of one consumer are made under its
 * advisory lock, so this order is their commit order.
 */
const WATCH = `
CREATE TABLE public.rewind_watch (seq bigserial PRIMARY KEY, kind text NOT NULL, batch_id uuid, lsns bigint[], idxs int[], at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.rewind_watch_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.rewind_watch (kind, batch_id, lsns, idxs) VALUES ('batch', NEW.batch_id, NEW.lsns, NEW.idxs); RETURN NULL; END $$;
CREATE FUNCTION public.rewind_watch_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.rewind_watch (kind) VALUES ('back'); RETURN NULL; END $$;
CREATE TRIGGER rewind_watch_batch AFTER INSERT ON sluice.webhook_batches FOR EACH ROW EXECUTE FUNCTION public.rewind_watch_batch();
CREATE TRIGGER rewind_watch_back AFTER UPDATE ON sluice.consumer_positions FOR EACH ROW
  WHEN ((NEW.commit_lsn, NEW.commit_idx) < (OLD.commit_lsn, OLD.commit_idx)) EXECUTE FUNCTION public.rewind_watch_back();`;

const cmp = (a: SeenMessage, b: SeenMessage) => (a.lsn === b.lsn ? a.idx - b.idx : a.lsn < b.lsn ? -1 : 1);
const keyOf = (m: SeenMessage) => `${m.lsn}:${m.idx}`;

interface Receipt {
  webhookId: string;
  delivery: number;
  m: SeenMessage;
}

describe('rewind to earliest under load, the gateway killed twice during the replay', () => {
  it('every retained change arrives again after the rewind, per-row order holds, no row in two requests at once', async () => {
    const began = Date.now();
    const gateways = [await start()];
    const current = () => gateways[gateways.length - 1];
    await eventually(async () => (await sql(url, `SELECT 1 FROM pg_replication_slots WHERE slot_name = 'sluice_app' AND active`)).rowCount === 1, 30_000);
    await sql(url, WATCH);

    // Phase 1: ~2,000 changes at up to 700/s over 200 rows (each row updated
    // ~10 times), delivered. Then a live trickle (a transaction every 60 ms)
    // until the last restart.
    const producer = new pg.Client({ connectionString: url });
    await producer.connect();
    const run = new ChangeLog({ rows: 200, maxChanges: 10 });
    let live = true;
    const producing = (async () => {
      const start = Date.now();
      const deadline = start + 60_000;
      while ((run.expected < BEFORE_REWIND || live) && Date.now() < deadline) {
        await run.transaction(producer);
        const due = run.expected < BEFORE_REWIND ? start + (run.expected / 700) * 1000 : Date.now() + 60;
        await sleep(Math.max(0, due - Date.now()));
      }
    })();
    const received = () => new Set(receiver.deliveries.flatMap((d) => d.messages.map((msg) => keyOf(seen(msg))))).size;
    await eventually(async () => run.expected >= BEFORE_REWIND && received() >= BEFORE_REWIND, 30_000, 100);

    // The rewind, while live changes arrive.
    const rewindSentAt = receiver.deliveries.length;
    const response = await fetch(`${current().api}/api/consumers/hook/rewind`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: 'earliest' }),
    });
    const rewound = (await response.json()) as { redelivering: number };
    expect(response.status, JSON.stringify(rewound)).toBe(200);
    const retainedAtRewind = (await sql(url, `SELECT (commit_lsn - '0/0')::text AS lsn, commit_idx AS idx FROM sluice.changes WHERE table_name = 'items'`)).rows.map(
      (r: { lsn: string; idx: number }) => `${r.lsn}:${r.idx}`,
    );
    expect(rewound.redelivering).toBeGreaterThanOrEqual(BEFORE_REWIND);
    const watch = async () => (await sql(url, `SELECT seq::int, kind, batch_id FROM public.rewind_watch ORDER BY seq`)).rows as Array<{ seq: number; kind: string; batch_id: string | null }>;
    const rewindSeq = (await watch()).find((w) => w.kind === 'back')?.seq;
    expect(rewindSeq).toBeDefined();

    /** Changes committed before the rewind not yet received in a replay batch. */
    const replayLeft = async () => {
      const replayIds = new Set((await watch()).filter((w) => w.kind === 'batch' && w.seq > rewindSeq!).map((w) => 'msg_' + w.batch_id!.replace(/-/g, '')));
      const got = new Set(receiver.deliveries.slice(rewindSentAt).filter((d) => replayIds.has(d.id)).flatMap((d) => d.messages.map((msg) => keyOf(seen(msg)))));
      return retainedAtRewind.filter((k) => !got.has(k)).length;
    };

    // Two kills during the replay, each while the receiver holds a request of the running gateway.
    const kills: Array<{ at: number; open: Delivery[]; replayLeft: number }> = [];
    for (let k = 0; k < KILLS; k++) {
      await sleep(500 + Math.random() * 500);
      const { at, open } = await killDuringDelivery(current(), receiver, `kill ${k + 1}`);
      kills.push({ at, open, replayLeft: await replayLeft() });
      gateways.push(await start());
    }
    await sleep(1000);
    live = false;
    await producing;
    await producer.end();

    // Everything captured and delivered: the view holds every committed
    // change, the consumer's position is at the log's end, nothing left to send.
    await eventually(
      async () => {
        const { rows } = await sql(
          url,
          `SELECT (SELECT count(*)::int FROM sluice.changes WHERE table_name = 'items') = $1
              AND (SELECT (p.commit_lsn, p.commit_idx) >= (l.commit_lsn, l.commit_idx)
                     FROM sluice.consumer_positions p, sluice.consumers c,
                          LATERAL (SELECT commit_lsn, commit_idx FROM sluice.log ORDER BY commit_lsn DESC, commit_idx DESC LIMIT 1) l
                    WHERE c.id = p.consumer_id AND c.name = 'hook')
              AND NOT EXISTS (SELECT 1 FROM sluice.messages) AND NOT EXISTS (SELECT 1 FROM sluice.webhook_batches) AS done`,
          [run.expected],
        );
        return rows[0].done;
      },
      60_000,
      250,
    ).catch(async (err) => {
      const state = await sql(
        url,
        `SELECT (SELECT count(*) FROM sluice.changes WHERE table_name = 'items') AS logged,
                (SELECT json_agg(p) FROM sluice.consumer_positions p) AS positions,
                (SELECT max((commit_lsn, commit_idx)::text) FROM sluice.log) AS tail,
                (SELECT json_agg(json_build_object('lsn', commit_lsn, 'idx', commit_idx, 'state', state, 'replay', replay, 'token', delivery_token, 'group', group_key)) FROM sluice.messages) AS messages,
                (SELECT json_agg(b) FROM sluice.webhook_batches b) AS batches,
                (SELECT json_agg(w) FROM public.rewind_watch w WHERE kind = 'back' OR EXISTS (SELECT 1 FROM sluice.messages m WHERE m.replay AND m.commit_lsn = ANY (w.lsns))) AS watch,
                (SELECT json_agg(a) FROM sluice.webhook_attempts a WHERE a.batch_id IN (SELECT w.batch_id FROM public.rewind_watch w, sluice.messages m WHERE m.replay AND m.commit_lsn = ANY (w.lsns))) AS attempts`,
      );
      console.log(run.expected, JSON.stringify(state.rows[0]).slice(0, 8000), current().child.output.slice(-20).join('\n'));
      throw err;
    });
    await current().child.stop();
    const took = Date.now() - began;

    const deliveries = receiver.deliveries;
    const problems: string[] = [];
    const { rows: logRows } = await sql(
      url,
      `SELECT (commit_lsn - '0/0')::text AS lsn, commit_idx AS idx, idempotency_key AS key, (record ->> 'id')::int AS id, (record ->> 'v')::int AS v
         FROM sluice.changes WHERE table_name = 'items' ORDER BY commit_lsn, commit_idx`,
    );
    const truth = new Map<string, { lsn: string; idx: number; key: string }>(logRows.map((r: any) => [`row ${r.id} v${r.v}`, r]));
    if (truth.size !== run.expected) problems.push(`${truth.size} changes in sluice.changes for ${run.expected} committed`);
    for (let id = 1; id <= run.rows; id++) for (let v = 0; v <= run.versions[id]; v++) if (!truth.has(`row ${id} v${v}`)) problems.push(`row ${id} v${v} not in sluice.changes`);
    /** Per row, its first change (where the replay of `earliest` begins). */
    const firstOfRow = new Map<number, string>();
    for (const r of logRows as any[]) if (!firstOfRow.has(r.id)) firstOfRow.set(r.id, `${r.lsn}:${r.idx}`);

    // Every message as the view has its change.
    for (const d of deliveries) {
      for (const msg of d.messages) {
        const m = seen(msg);
        const t = truth.get(`row ${m.id} v${m.v}`);
        if (!t) problems.push(`row ${m.id} v${m.v}: delivered, not in sluice.changes`);
        else if (t.lsn !== String(m.lsn) || t.idx !== m.idx || t.key !== m.key) problems.push(`row ${m.id} v${m.v}: delivered as ${keyOf(m)} '${m.key}', logged as ${t.lsn}:${t.idx} '${t.key}'`);
      }
    }
    for (const id of inconsistentBatches(deliveries)) problems.push(`${id} resent with other messages`);

    // Nothing missing after the rewind: each change in a replay batch arriving from the rewind call on.
    const seqOfBatch = new Map((await watch()).filter((w) => w.kind === 'batch').map((w) => ['msg_' + w.batch_id!.replace(/-/g, ''), w.seq]));
    const replayBatch = (webhookId: string) => (seqOfBatch.get(webhookId) ?? 0) > rewindSeq!;
    const after = deliveries.slice(rewindSentAt).map((d, i) => ({ d, i: rewindSentAt + i }));
    const gotAfter = new Set(after.filter(({ d }) => replayBatch(d.id)).flatMap(({ d }) => d.messages.map((msg) => keyOf(seen(msg)))));
    for (const r of logRows as any[]) if (!gotAfter.has(`${r.lsn}:${r.idx}`)) problems.push(`row ${r.id} v${r.v} (${r.lsn}:${r.idx}) not received after the rewind`);
    if (after.some(({ d }) => !seqOfBatch.has(d.id))) problems.push(`a delivery after the rewind whose batch was never made`);

    // Per-row order from the rewind call on (rules a–c of the header).
    const replaysAt = captureReplays(gateways);
    const maxLsn = deliveries.map((d) => d.messages.reduce((max, msg) => (seen(msg).lsn > max ? seen(msg).lsn : max), -1n));
    const byRow = new Map<number, Receipt[]>();
    for (const { d, i } of after) {
      for (const msg of d.messages) {
        const r = { webhookId: d.id, delivery: i, m: seen(msg) };
        if (!byRow.has(r.m.id)) byRow.set(r.m.id, []);
        byRow.get(r.m.id)!.push(r);
      }
    }
    const firstIndexOfId = new Map<string, number>();
    deliveries.forEach((d, i) => firstIndexOfId.set(d.id, firstIndexOfId.get(d.id) ?? i));
    const allowed = { redelivery: 0, restart: 0, captureReplay: 0 };
    for (const [id, receipts] of byRow) {
      let restarted = false;
      receipts.forEach((r, k) => {
        if (k === 0 || cmp(r.m, receipts[k - 1].m) >= 0) return;
        const p = receipts[k - 1];
        const made = (w: string) => (replayBatch(w) ? 'made after the rewind' : 'made before the rewind');
        const step = `row ${id}: ${keyOf(r.m)} (v${r.m.v}, ${r.webhookId}, delivery ${r.delivery}) after ${keyOf(p.m)} (v${p.m.v}, delivery ${p.delivery}, ${made(p.webhookId)})`;
        if (firstIndexOfId.get(r.webhookId)! < r.delivery) return void allowed.redelivery++;
        if (!restarted && keyOf(r.m) === firstOfRow.get(id) && receipts.slice(0, k).every((e) => !replayBatch(e.webhookId))) {
          restarted = true;
          return void allowed.restart++;
        }
        const earlier = receipts.slice(0, k).filter((e) => keyOf(e.m) === keyOf(r.m));
        const beforeWindow = deliveries.slice(0, rewindSentAt).flatMap((d, i) => (d.messages.some((msg) => keyOf(seen(msg)) === keyOf(r.m)) ? [i] : []));
        const earlierAt = [...earlier.map((e) => e.delivery), ...beforeWindow];
        if (replaysAt.some((p) => r.delivery >= p.deliveredBefore && earlierAt.some((i) => i < p.deliveredBefore && (r.m.lsn >= p.from || maxLsn[i] >= p.from)))) {
          return void allowed.captureReplay++;
        }
        problems.push(`order: ${step}`);
      });
      const last = receipts[receipts.length - 1].m;
      if (last.v !== run.versions[id]) problems.push(`row ${id}: last arrival v${last.v}, last change v${run.versions[id]}`);
    }

    // No two requests carrying one row open at once (rule 3), over the whole log.
    const endOf = (d: Delivery) => Math.min(d.answeredAt ?? Infinity, ...kills.filter((k) => k.open.includes(d)).map((k) => k.at));
    const openByRow = new Map<number, Delivery[]>();
    for (const d of deliveries) {
      for (const id of new Set(d.messages.map((msg) => seen(msg).id))) {
        for (const o of openByRow.get(id) ?? []) {
          if (o.startedAt < endOf(d) && d.startedAt < endOf(o)) problems.push(`row ${id}: ${d.id} (delivery ${d.n}) began while ${o.id} (delivery ${o.n}) was open`);
        }
        if (!openByRow.has(id)) openByRow.set(id, []);
        openByRow.get(id)!.push(d);
      }
    }

    const figures = {
      changes: run.expected,
      redelivering: rewound.redelivering,
      deliveries: deliveries.length,
      afterRewind: after.length,
      kills: kills.map((k) => ({ open: k.open.length, replayLeft: k.replayLeft })),
      allowed,
      captureReplays: replaysAt.length,
      seconds: Math.round(took / 1000),
    };
    const kinds = problemKinds(problems);
    console.log(JSON.stringify(figures));
    expect({ kinds, first: problems.slice(0, 10), figures }).toEqual({ kinds: {}, first: [], figures });
    expect(kills).toHaveLength(KILLS);
    // The kills landed during the replay, with requests out.
    expect(kills.every((k) => k.open.length > 0 && k.replayLeft > 0)).toBe(true);
  }, 150_000);
});
