// The audit's kill -9 run, kept as a test (rules 2 and 3, issue 16): a real
// gateway process (`sluice start`) captures 20,000 changes in ~2,000
// transactions (then a trickle until the last kill) and POSTs them to a
// receiver on 127.0.0.1 that answers in 20–50 ms; it is killed with SIGKILL
// 10 times during the load, each time while the receiver holds at least one
// of its requests. Judged from the receiver's log alone, as an endpoint sees it.
//
// What "order never broken" means with at-least-once delivery, per row (the
// consumer groups by primary key; v numbers a row's changes from 0), over the
// row's messages in arrival order (the messages of one POST in body order):
// - each message is the row's next change after the one received just before
//   it (v = previous v + 1), or a step back to a change received already (a
//   redelivery); never a step forward over a change not yet received;
// - a resend of a batch (same webhook-id: it was in flight at a kill) comes
//   before any other batch carries that row: between a webhook-id's first and
//   last arrival the row arrives in no other webhook-id (rule 3: nothing later
//   while an earlier message is out);
// - the row's last message is its last change (a receiver applying messages
//   as they come ends with the right state).
// Duplicates: every copy of a change carries the idempotency key and commit
// position of its first delivery (and that position is its transaction's); a
// resend repeats its batch's messages exactly; a change comes again under a
// new webhook-id only when a capture replay, logged by a restart between the
// two deliveries, explains it: the change lies at or past where the replay
// began, or its earlier delivery carried one that does (a replay removes the
// batches naming such changes; their other changes are batched anew).
// Nothing is missing, and the messages of every delivery open at a kill
// arrive again after it.
//
// Each rule failed on a deliberately broken build (one run each, reverted):
// acking a batch before POSTing it (messages out at a kill never sent again,
// changes never received); resends with an altered idempotency key; a resent
// batch not blocking its group in the claim (steps forward, a stale last
// arrival, a row arriving while its batch was out); the gateway forgetting its
// batches out at startup (changes again under new webhook-ids with no replay);
// resends one message short and commit_lsn off by 8 (batches resent with other
// messages, positions not their transactions'); capture confirming commits as
// they arrive (changes never received, 2 runs of 2).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, sql } from './helpers/capture.js';
import { ChangeLog, commitPositions, ITEMS_TABLE, seen, type SeenMessage } from './helpers/change-log.js';
import { type Child } from './helpers/child.js';
import { captureReplays, killDuringDelivery, problemKinds, startGateway } from './helpers/gateway-process.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { inconsistentBatches, sleep, startReceiver, TEST_SECRET, type Delivery, type Receiver } from './helpers/receiver.js';

const TARGET = 20_000;
const KILLS = 10;

let db: TestPg;
let url: string;
let receiver: Receiver;
let dir: string;
const children = new Set<Child>();

beforeAll(async () => {
  db = await startTestPg();
  url = await db.createDatabase('gateway_crash');
  await sql(url, ITEMS_TABLE);
  receiver = await startReceiver(() => ({ status: 200, delayMs: 20 + Math.random() * 30 }));
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-gateway-crash-'));
  writeFileSync(
    path.join(dir, 'sluice.yaml'),
    `
http: { host: 127.0.0.1, port: 0 }
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
      batch_size: 10
      batch_timeout: 0ms
      max_in_flight: 8
      timeout: 3s
      retry: { initial: 100ms, cap: 1s }
      allow_private_ranges: ["127.0.0.0/8"]
`,
  );
});

afterAll(async () => {
  await Promise.all([...children].map((c) => c.kill9()));
  await receiver?.close();
  await db?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const start = () => startGateway(url, dir, receiver, children);

interface Receipt {
  webhookId: string;
  /** Index of its delivery in the receiver's log. */
  delivery: number;
  m: SeenMessage;
}

/** Per row id, its messages in arrival order. */
function receiptsByRow(deliveries: Delivery[]): Map<number, Receipt[]> {
  const out = new Map<number, Receipt[]>();
  deliveries.forEach((d, i) => {
    for (const msg of d.messages) {
      const r = { webhookId: d.id, delivery: i, m: seen(msg) };
      if (!out.has(r.m.id)) out.set(r.m.id, []);
      out.get(r.m.id)!.push(r);
    }
  });
  return out;
}

/** The order rules of the header comment, for one row whose last change is v = last. */
function orderProblems(id: number, receipts: Receipt[], last: number): string[] {
  const problems: string[] = [];
  let previous = -1;
  for (const r of receipts) {
    if (r.m.v > previous + 1) problems.push(`row ${id}: v${r.m.v} arrived ${previous < 0 ? 'first' : `right after v${previous}`}`);
    previous = r.m.v;
  }
  if (previous !== last) problems.push(`row ${id}: last arrival v${previous}, last change v${last}`);
  const span = new Map<string, [number, number]>();
  receipts.forEach((r, k) => span.set(r.webhookId, [span.get(r.webhookId)?.[0] ?? k, k]));
  for (const [webhookId, [first, lastSeen]] of span) {
    for (let k = first + 1; k < lastSeen; k++) {
      if (receipts[k].webhookId !== webhookId) problems.push(`row ${id}: ${receipts[k].webhookId} (v${receipts[k].m.v}) arrived while ${webhookId} was out`);
    }
  }
  return problems;
}

describe('the gateway killed with SIGKILL under load', () => {
  it('10 kills during 20,000 changes to a slow receiver: nothing missing, duplicates keep their key, per-row order holds', async () => {
    const began = Date.now();
    const gateways = [await start()];
    const current = () => gateways[gateways.length - 1];
    // Capture streams (the slot is in use) before anything is committed.
    await eventually(async () => (await sql(url, `SELECT 1 FROM pg_replication_slots WHERE slot_name = 'sluice_app' AND active`)).rowCount === 1, 30_000);
    await sql(url, `SELECT pg_create_logical_replication_slot('gateway_crash_check', 'pgoutput')`);

    const producer = new pg.Client({ connectionString: url });
    await producer.connect();
    const run = new ChangeLog({ rows: 1_000, maxChanges: 19 });
    // At most 700 changes/s up to the target (so capture too is cut by kills),
    // then, until the last kill, one small transaction every 100 ms, so every
    // kill finds deliveries in flight however fast the machine drains the rest.
    let killing = true;
    const producing = (async () => {
      const start = Date.now();
      const deadline = start + 150_000;
      while ((run.expected < TARGET || killing) && Date.now() < deadline) {
        await run.transaction(producer);
        const due = run.expected < TARGET ? start + (run.expected / 700) * 1000 : Date.now() + 100;
        await sleep(Math.max(0, due - Date.now()));
      }
    })();

    // Each kill lands while the receiver holds a request of the running
    // gateway: checked and signalled in one synchronous step, so the receiver
    // cannot answer in between.
    const kills: Delivery[][] = [];
    for (let k = 0; k < KILLS; k++) {
      await sleep(1000 + Math.random() * 1500);
      kills.push((await killDuringDelivery(current(), receiver, `kill ${k + 1}`)).open);
      gateways.push(await start());
    }
    killing = false;
    await producing;
    await producer.end();
    expect(run.expected).toBeGreaterThanOrEqual(TARGET);

    // Everything captured (the source's position is past the last commit) and
    // nothing left to send: no resend is still to come.
    const commitLsnOfXid = await commitPositions(url, 'gateway_crash_check', 'sluice_app');
    const lastCommit = run.commitLsnOf(run.transactions, commitLsnOfXid)!;
    await eventually(async () => {
      const { rows } = await sql(
        url,
        `SELECT (SELECT (confirmed_lsn - '0/0')::bigint FROM sluice.source_positions WHERE source_name = 'app') > $1::bigint
            AND NOT EXISTS (SELECT 1 FROM sluice.messages) AS done`,
        [lastCommit.toString()],
      );
      return rows[0].done;
    }, 120_000, 250).catch((err) => {
      console.log(current().child.output.slice(-20).join('\n'));
      throw err;
    });
    await current().child.stop();
    const took = Date.now() - began;
    const deliveries = receiver.deliveries;
    const changeKey = (m: SeenMessage) => `row ${m.id} v${m.v}`;
    const problems: string[] = [];

    // Nothing missing, nothing unknown.
    const byChange = new Map<string, Receipt[]>();
    const byRow = receiptsByRow(deliveries);
    for (const receipts of byRow.values()) {
      for (const r of receipts) {
        if (!byChange.has(changeKey(r.m))) byChange.set(changeKey(r.m), []);
        byChange.get(changeKey(r.m))!.push(r);
      }
    }
    for (let id = 1; id <= run.rows; id++) {
      for (let v = 0; v <= run.versions[id]; v++) if (!byChange.has(`row ${id} v${v}`)) problems.push(`row ${id} v${v} never received`);
    }
    if (byChange.size !== run.expected) problems.push(`${byChange.size} distinct changes received for ${run.expected} committed`);

    // Capture replays: from the restart's log, where the removed tail began
    // and how many deliveries the receiver had seen before that restart.
    const replaysAt = captureReplays(gateways);
    const maxLsn = deliveries.map((d) => d.messages.reduce((max, msg) => (seen(msg).lsn > max ? seen(msg).lsn : max), -1n));
    // A change may come again under a new webhook-id only if a replay came
    // between: it was captured again (at or past the replay's start), or it
    // sat in a batch that named such a change (the replay removed that batch
    // and its other changes were batched anew).
    const replayed = (earlier: Receipt[], again: Receipt) =>
      replaysAt.some(
        (p) => again.delivery >= p.deliveredBefore && earlier.some((e) => e.delivery < p.deliveredBefore && (e.m.lsn >= p.from || maxLsn[e.delivery] >= p.from)),
      );

    // Every copy of a change: its transaction's commit position and the same idempotency key.
    let duplicates = 0;
    let newIds = 0;
    for (const [change, receipts] of byChange) {
      const [first] = receipts;
      const truth = run.commitLsnOf(first.m.tx, commitLsnOfXid);
      if (first.m.lsn !== truth) problems.push(`${change}: commit_lsn ${first.m.lsn}, its transaction committed at ${truth}`);
      receipts.forEach((r, k) => {
        if (k === 0) return;
        duplicates++;
        if (r.m.key !== first.m.key || r.m.lsn !== first.m.lsn || r.m.idx !== first.m.idx) {
          problems.push(`${change}: again with key '${r.m.key}' at ${r.m.lsn}:${r.m.idx}, first with '${first.m.key}' at ${first.m.lsn}:${first.m.idx}`);
        }
        const earlier = receipts.slice(0, k);
        if (earlier.some((e) => e.webhookId === r.webhookId)) return;
        newIds++;
        if (!replayed(earlier, r)) problems.push(`${change}: again under a new webhook-id ${r.webhookId}, with no capture replay in between`);
      });
    }
    for (const id of inconsistentBatches(deliveries)) problems.push(`${id} resent with other messages`);

    // Per-row order.
    for (const [id, receipts] of byRow) problems.push(...orderProblems(id, receipts, run.versions[id] ?? -1));

    // Every message out at a kill arrives again after it.
    kills.forEach((open, k) => {
      for (const d of open) {
        const at = deliveries.indexOf(d);
        for (const msg of d.messages) {
          const m = seen(msg);
          if (!byChange.get(changeKey(m))!.some((r) => r.delivery > at)) problems.push(`kill ${k + 1}: ${changeKey(m)} in flight (${d.id}) never sent again`);
        }
      }
    });

    const resends = deliveries.length - new Set(deliveries.map((d) => d.id)).size;
    const figures = { kills: kills.length, openAtKills: kills.map((o) => o.length), deliveries: deliveries.length, resends, duplicates, newIds, captureReplays: replaysAt.length, seconds: Math.round(took / 1000) };
    // On failure: how many of each kind (numbers and ids blanked), and the first few.
    const kinds = problemKinds(problems);
    expect({ kinds, first: problems.slice(0, 10), figures }).toEqual({ kinds: {}, first: [], figures });
    expect(kills).toHaveLength(KILLS);
    expect(kills.every((open) => open.length > 0)).toBe(true);
    expect(resends).toBeGreaterThan(0);
  }, 240_000);
});
