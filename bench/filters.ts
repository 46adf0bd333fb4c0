// Filters, transforms and replay by query. Prints figures; asserts nothing.
//   npx tsx bench/filters.ts [changes] [replayChanges]   (BENCH_ROUNDS: rounds of each comparison, default 2)
// 1. Delivery with a 3-condition where filter (every change passes, so both
//    runs deliver the same messages) against the same drain unfiltered: pull
//    (8 HTTP workers, receive 100 → ack) and push (batch 100), alternating.
// 2. A push drain (batch 100) with a function transform on every message,
//    against the same drain without one, alternating; and the function's cost
//    per call through apply() alone, batches of 100 (best of five rounds).
// 3. Replay by query: N retained changes, all acked; a replay selecting 1%
//    (spread evenly); the time from starting it to the first message claimed,
//    and the drain of the rest through the pull API.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { ack, claim } from '../src/buffer/claim.js';
import { withTransaction } from '../src/db/pool.js';
import { createReplay, replayStarted, runReplays } from '../src/log/replay.js';
import { compileTransform } from '../src/pipeline/transform/compile.js';
import { servedMetadataJson } from '../src/buffer/message.js';
import { insertSeries } from '../test/helpers/buffer.js';
import { runPullBench } from './pull.js';
import { runPushBench } from './push.js';

// Both bench payloads (bench/pull.ts's and bench/push.ts's) have these columns.
const WHERE = "status = 'paid' AND amount >= 10 AND note LIKE '%order%'";
const PULL_WHERE = "status = 'paid' AND amount >= 10 AND customer LIKE 'customer-%'";
const COLUMNS = { id: 'int8', group: 'text', status: 'text', amount: 'numeric', customer: 'text', note: 'text' };
const patch = (where: string) => ({
  config: { filter: { where: { 'public.orders': where } } },
  filterColumns: { 'public.orders': COLUMNS },
});

/** The pull drain's consumer with the 3-condition where (bench/sql-profile.ts pull-where uses it too). */
export const PULL_WHERE_PATCH = patch(PULL_WHERE);

export interface FilterBenchResult {
  pull: { plain: number[]; filtered: number[] };
  push: { plain: number[]; filtered: number[] };
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function runFilterBench(changes = 200_000, rounds = 2, log = console.log): Promise<FilterBenchResult> {
  const out: FilterBenchResult = { pull: { plain: [], filtered: [] }, push: { plain: [], filtered: [] } };
  const quiet = () => {};
  for (let i = 0; i < rounds; i++) {
    out.pull.plain.push((await runPullBench({ messages: changes, workers: 8, batchSize: 100, log: quiet })).messagesPerSecond);
    out.pull.filtered.push((await runPullBench({ messages: changes, workers: 8, batchSize: 100, log: quiet, consumerPatch: PULL_WHERE_PATCH })).messagesPerSecond);
    log(`filters: pull round ${i + 1}: unfiltered ${out.pull.plain.at(-1)}/s, where (3 conditions) ${out.pull.filtered.at(-1)}/s`);
    const push = { messages: changes, groups: 10_000, batchSize: 100, maxInFlight: 8 };
    out.push.plain.push((await runPushBench(push)).perSecond);
    out.push.filtered.push((await runPushBench({ ...push, consumerPatch: patch(WHERE) })).perSecond);
    log(`filters: push round ${i + 1}: unfiltered ${out.push.plain.at(-1)}/s, where (3 conditions) ${out.push.filtered.at(-1)}/s`);
  }
  log(`filters: pull where/unfiltered ${(median(out.pull.filtered) / median(out.pull.plain)).toFixed(2)} (medians), push ${(median(out.push.filtered) / median(out.push.plain)).toFixed(2)}`);
  return out;
}

export interface TransformBenchResult {
  plain: number;
  transformed: number;
  /** The function through apply() alone, batches of 100: wall µs per message, and the main thread's share. */
  perCallUs: number;
  mainThreadUs: number;
}

// A typical reshaping: a few fields of the record and the metadata.
const FUNCTION = '(m) => ({ id: m.record.id, status: m.record.status, amount: m.record.amount, at: m.metadata.commit_timestamp, kind: m.action })';

/** The transform's function through apply() alone, batches of 100: best of five rounds of 200 calls, wall and main-thread µs a message. */
export async function functionCost(): Promise<{ perCallUs: number; mainThreadUs: number }> {
  // As the renderer hands them over: the stored payload, and the consumer's served metadata apart.
  const sample = JSON.stringify({
    record: { id: 1, group: 'g1', status: 'paid', amount: '19.90', note: 'an order of some size' },
    changes: null, action: 'insert',
    metadata: { table_schema: 'public', table_name: 'orders', commit_timestamp: '2026-01-01T00:00:00.000000Z', commit_lsn: 1, commit_idx: 0,
      idempotency_key: 'MTow', record_pks: ['1'], database_name: 'app', transaction_annotations: null },
  });
  const served = servedMetadataJson({
    id: '0b5e7c2a-3f7e-4c59-9d0e-5a1f0c3e2b11', name: 'bench', annotations: {},
    database: { id: '5f0c3e2b-0b5e-4c59-9d0e-7c2a3f7e1111', name: 'src', annotations: {}, database: 'postgres', hostname: 'localhost' },
  });
  const batch = Array.from({ length: 100 }, () => sample);
  const fn = compileTransform({ function: FUNCTION });
  try {
    for (let i = 0; i < 200; i++) await fn.apply(batch, served);
    // Best of five: the machine is shared, and the least disturbed round is the function's cost.
    let perCallUs = Infinity;
    let mainThreadUs = Infinity;
    for (let round = 0; round < 5; round++) {
      const calls = 200;
      const idle = performance.eventLoopUtilization();
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) await fn.apply(batch, served);
      perCallUs = Math.min(perCallUs, ((performance.now() - t0) * 1000) / (calls * 100));
      mainThreadUs = Math.min(mainThreadUs, (performance.eventLoopUtilization(idle).active * 1000) / (calls * 100));
    }
    return { perCallUs, mainThreadUs };
  } finally {
    await fn.close();
  }
}

export async function runTransformBench(changes = 200_000, log = console.log, rounds = 1): Promise<TransformBenchResult> {
  const { perCallUs, mainThreadUs } = await functionCost();
  log(`transforms: function via apply(), batches of 100: ${perCallUs.toFixed(1)} µs per message (main thread ${mainThreadUs.toFixed(1)} µs), best of 5 rounds`);
  const push = { messages: changes, groups: 10_000, batchSize: 100, maxInFlight: 8 };
  const plain: number[] = [];
  const transformed: number[] = [];
  // Alternating pairs, reported as medians.
  for (let i = 0; i < rounds; i++) {
    plain.push((await runPushBench(push)).perSecond);
    transformed.push((await runPushBench({ ...push, consumerPatch: { config: { transform: { function: FUNCTION } } } })).perSecond);
    log(`transforms: push batch 100 round ${i + 1}: no transform ${plain.at(-1)}/s, function transform ${transformed.at(-1)}/s`);
  }
  const result = { plain: median(plain), transformed: median(transformed), perCallUs, mainThreadUs };
  log(`transforms: push batch 100: no transform ${result.plain}/s, function transform ${result.transformed}/s (${(result.transformed / result.plain).toFixed(2)} ×, medians)`);
  return result;
}

export interface ReplayBenchResult {
  changes: number;
  matching: number;
  firstMessageMs: number;
  drainSeconds: number;
  walkedPerSecond: number;
}

// 10 customers of the 977 in bench/pull.ts's payload: ~1.02% of the changes.
const CUSTOMERS = Array.from({ length: 10 }, (_, i) => `customer-${i * 97}`);

export async function runReplayBench(changes = 1_000_000, log = console.log): Promise<ReplayBenchResult> {
  let firstMessageMs = 0;
  let matching = 0;
  const r = await runPullBench({
    messages: changes,
    workers: 4,
    batchSize: 100,
    log,
    prepare: async (pool, consumerId) => {
      const fill0 = performance.now();
      const chunk = 250_000;
      for (let at = 0; at < changes; at += chunk) await insertSeries(pool, consumerId, 1_000 + at, Math.min(chunk, changes - at), Math.floor(changes / 10));
      await pool.query('VACUUM ANALYZE sluice.log');
      // Acked already: the consumer took in every change, and holds no delivery rows.
      await pool.query('UPDATE sluice.consumer_positions SET commit_lsn = $2, commit_idx = 0 WHERE consumer_id = $1', [consumerId, 1_000 + changes - 1]);
      await pool.query('DELETE FROM sluice.messages WHERE consumer_id = $1', [consumerId]);
      // The source's table, for the where's check against its columns.
      await pool.query('CREATE TABLE IF NOT EXISTS public.orders (id bigint PRIMARY KEY, status text, amount numeric, customer text, note text)');
      await pool.query('CHECKPOINT');
      for (let g = 0; g < changes; g++) if (CUSTOMERS.includes(`customer-${g % 977}`)) matching++;
      log(`replay: ${changes.toLocaleString('en')} retained changes, acked, in ${((performance.now() - fill0) / 1000).toFixed(1)} s; ${matching} match`);

      const t0 = performance.now();
      const name = (await pool.query<{ name: string; source_name: string }>('SELECT name, source_name FROM sluice.consumers WHERE id = $1', [consumerId])).rows[0];
      await withTransaction(pool, (db) =>
        createReplay(db, { id: consumerId, name: name.name, source: name.source_name, tables: ['public.orders'] },
          { where: `customer IN (${CUSTOMERS.map((c) => `'${c}'`).join(', ')})` }, String(pool.options.connectionString)),
      );
      replayStarted(consumerId);
      // What a receive does: a step of the replay, then the claim.
      await runReplays(pool, consumerId, 100);
      const first = await claim(pool, { consumerId, limit: 100, visibilityMs: 60_000, maxAckPending: 10_000, deadLetterBlocksGroup: false });
      firstMessageMs = performance.now() - t0;
      if (first.messages.length === 0) throw new Error('bench: nothing claimed after the replay began');
      const acked = await ack(pool, consumerId, first.messages.map((m) => m.ackId));
      log(`replay: first claim (${first.messages.length} messages) ${firstMessageMs.toFixed(0)} ms after the replay began`);
      return matching - acked.applied;
    },
  });
  const result = { changes, matching, firstMessageMs, drainSeconds: r.seconds, walkedPerSecond: Math.round(changes / r.seconds) };
  log(`replay: the rest drained in ${r.seconds.toFixed(1)} s (${result.walkedPerSecond.toLocaleString('en')} retained changes walked/s)`);
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [changes, replayChanges] = process.argv.slice(2).map(Number);
  // Rates on a shared machine swing by a fifth from run to run: BENCH_ROUNDS alternates more pairs.
  await runFilterBench(changes || undefined, Number(process.env.BENCH_ROUNDS ?? 2));
  await runTransformBench(changes || undefined, console.log, Number(process.env.BENCH_ROUNDS ?? 2));
  await runReplayBench(replayChanges || undefined);
}
