// `npm run bench`: every benchmark, one after another, each on its own fresh
// embedded Postgres, then a summary beside the issue's targets. Prints figures;
// asserts nothing. BENCH_SCALE=0.1 runs a tenth of each backlog; BENCH_ONLY=
// capture,pull,push,latency,retention,rewind,filters,backfill,publish,subjects,metrics,scale,console picks some.
import os from 'node:os';
import { runCaptureBench } from './capture.js';
import { runLatencyBench } from './latency.js';
import { compareNeighbours, fmtPercentiles } from './neighbours.js';
import { runPullBench } from './pull.js';
import { runPushBench } from './push.js';
import { median, runFilterBench, runReplayBench, runTransformBench } from './filters.js';
import { runRetentionBench } from './retention.js';
import { runRewindBench } from './rewind.js';
import { runBackfillBench } from './backfill.js';
import { runBackfillLatencyBench } from './backfill-latency.js';
import { runSubjectsBench } from './subjects.js';
import { runPublishBench } from './publish.js';
import { runMetricsBench } from './metrics.js';
import { runScaleBench } from './scale.js';
import { runConsoleBench } from './console.js';

const scale = Number(process.env.BENCH_SCALE ?? 1);
const only = process.env.BENCH_ONLY?.split(',');
const n = (x: number) => Math.max(1000, Math.round(x * scale));
const want = (name: string) => !only || only.includes(name);
const rows: Array<[string, string, string]> = [];
const fmt = (x: number) => Math.round(x).toLocaleString('en');

console.log(`sluice bench: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, scale ${scale}\n`);

if (want('capture')) {
  // Fan-out: the same backlog with 1 and with 10 consumers on the same table.
  // Store once: capture writes each change once whatever the consumer count.
  const one = await runCaptureBench(n(1_000_000), console.log, { consumers: 1 });
  const ten = await runCaptureBench(n(1_000_000), console.log, { consumers: 10 });
  rows.push(['capture: backlog → buffer, 1 consumer', `${fmt(one.captureRate)} changes/s (${(one.ratio * 100).toFixed(0)}% of the library alone: ${fmt(one.ceilingRate)}/s), peak RSS ${one.peakRssMb.toFixed(0)} MB (${one.startRssMb.toFixed(0)} MB before it started)`, '≥ 60,000/s, ≤ 250 MB']);
  rows.push(['capture: the same, 10 consumers on the table', `${fmt(ten.captureRate)} changes/s = ${(ten.captureRate / one.captureRate).toFixed(2)} × 1 consumer`, '≥ 0.7 × 1 consumer']);
  const perChange = (r: typeof one) => `${r.bytesPerChange.toFixed(0)} B/change (tables ${(r.tableBytes / r.changes).toFixed(0)} + WAL ${(r.walBytes / r.changes).toFixed(0)})`;
  rows.push(['capture: buffer bytes, 1 consumer / 10', `${perChange(one)} / ${perChange(ten)}`, '']);
  const extra = (ten.tableBytes + ten.walBytes - one.tableBytes - one.walBytes) / (9 * one.changes);
  rows.push(['capture: bytes/change per extra consumer', `${extra.toFixed(1)} B ((B10 - B1) / (9 × N): heap, TOAST, indexes, WAL)`, '≤ 64 B']);
}
if (want('pull')) {
  const r = await runPullBench({ messages: n(1_000_000), workers: 8, batchSize: 100, log: (l) => console.log(l) });
  rows.push(['pull: 8 workers receive(100) → ack', `${fmt(r.messagesPerSecond)} messages/s`, '≥ 25,000/s']);
}
if (want('push')) {
  const big = await runPushBench({ messages: n(1_000_000), groups: 10_000, batchSize: 100, maxInFlight: 8 });
  rows.push(['push: batch 100, max_in_flight 8', `${fmt(big.perSecond)} changes/s`, '≥ 25,000/s']);
  // One POST per change: throughput is max_in_flight over the round trip.
  const one = await runPushBench({ messages: n(100_000), groups: 10_000, batchSize: 1, maxInFlight: 128 });
  rows.push(['push: batch 1, max_in_flight 128', `${fmt(one.perSecond)} changes/s`, '≥ 8,000/s']);
  // What a failing group costs its neighbours is a delay, not a rate: the same
  // steady load with and without one group the receiver refuses.
  const { baseline, failing } = await compareNeighbours(2000, Math.max(5, Math.round(20 * scale)));
  rows.push(['push: 2,000/s, 1,001 groups, commit → receipt', fmtPercentiles(baseline.latency), '']);
  rows.push(['push: the same with one group failing', `${fmtPercentiles(failing.latency)} (healthy groups)`, '']);
  rows.push(['push: … delay it added to its neighbours', `${fmtPercentiles(failing.heldBack)} (${failing.heldBack.count} messages)`, 'p99 < 500 ms']);
}
if (want('filters')) {
  // Alternating pairs (BENCH_ROUNDS, default 1), reported as medians.
  const f = await runFilterBench(n(200_000), Number(process.env.BENCH_ROUNDS ?? 1));
  const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);
  rows.push(['filters: pull with a 3-condition where', `${fmt(median(f.pull.filtered))}/s = ${ratio(f.pull.filtered, f.pull.plain)} × unfiltered`, '≥ 0.9 ×']);
  rows.push(['filters: push batch 100 with a 3-condition where', `${fmt(median(f.push.filtered))}/s = ${ratio(f.push.filtered, f.push.plain)} × unfiltered`, '≥ 0.9 ×']);
  const t = await runTransformBench(n(200_000), console.log, Number(process.env.BENCH_ROUNDS ?? 1));
  rows.push(['transforms: push batch 100, a function on every message', `${fmt(t.transformed)}/s (${t.perCallUs.toFixed(1)} µs per call; main thread ${t.mainThreadUs.toFixed(1)} µs)`, '≥ 25,000/s']);
  const r = await runReplayBench(n(1_000_000));
  rows.push([`replay: 1% of ${fmt(r.changes)} retained changes`, `first message ${fmt(r.firstMessageMs)} ms; ${fmt(r.walkedPerSecond)} changes walked/s`, 'first < 2 s']);
}
if (want('latency')) {
  const pull = await runLatencyBench('pull', 1000, 20);
  rows.push(['latency: commit → pull receive at 1,000/s', `p50 ${pull.p50} ms, p99 ${pull.p99} ms`, 'p50 ≤ 20, p99 ≤ 100 ms']);
  const hook = await runLatencyBench('webhook', 1000, 20);
  rows.push(['latency: commit → webhook receipt at 1,000/s', `p50 ${hook.p50} ms, p99 ${hook.p99} ms`, 'p50 ≤ 20, p99 ≤ 100 ms']);
}
if (want('retention')) {
  const r = await runRetentionBench(n(1_000_000));
  rows.push([`retention: drop a window of ${fmt(r.changes)} changes`, `${fmt(r.dropMs)} ms (${fmt(r.partitionBytes / 2 ** 20)} MiB), ${r.deadRows} dead rows left`, '< 1 s, no VACUUM']);
}

if (want('rewind')) {
  const r = await runRewindBench(n(1_000_000), 8);
  rows.push([`rewind: ${fmt(r.changes)} acked changes to earliest`, `first message ${fmt(r.firstMessageMs)} ms after the rewind began (rewind itself ${fmt(r.rewindMs)} ms)`, '≤ 1 s']);
  rows.push(['rewind: … then drained by 8 pull workers', `${fmt(r.drainPerSecond)} messages/s`, 'the pull rate']);
}

if (want('backfill')) {
  const r = await runBackfillBench(n(1_000_000), 5000);
  // Its RSS is the bench's whole process (capture and runner in it, beside the bench's clients); the gateway's own is below.
  rows.push([`backfill: ${fmt(r.rows)} rows of ~200 bytes into the buffer, chunk ${fmt(r.chunkSize)}`, `${fmt(r.rowsPerSecond)} rows/s; bench process peak RSS ${fmt(r.peakRssMb)} MB`, '≥ 50,000 rows/s']);
  rows.push(['backfill: a single-row update client on the same table', `${fmt(r.writerBefore)}/s before, ${fmt(r.writerDuring)}/s during`, 'print']);
  for (const chunk of [1000, 5000]) {
    const l = await runBackfillLatencyBench(n(1_000_000), 500, chunk);
    rows.push([`backfill: live changes during it, chunk ${fmt(chunk)}`, `p50 ${l.p50} ms, p99 ${l.p99} ms at ${l.rate}/s (backfill ${fmt(l.rowsPerSecond)} rows/s; gateway peak RSS ${l.peakRssMb} MB)`, 'p99 ≤ 200 ms at 500/s; gateway ≤ 300 MB']);
  }
}

if (want('publish')) {
  const r = await runPublishBench(Math.max(5, Math.round(10 * scale)));
  rows.push(['publish: batches of 100, 8 clients', `${fmt(r.batchPerSecond)} messages/s durable`, '≥ 50,000/s']);
  rows.push(['publish: the same with idempotency keys', `${fmt(r.keyedPerSecond)} messages/s durable`, '(no limit named)']);
  rows.push(['publish: one message per request, 32 clients', `${fmt(r.singlePerSecond)}/s, p99 ${r.singleP99.toFixed(1)} ms`, '≥ 5,000/s, p99 ≤ 50 ms']);
  rows.push(['publish → webhook at 1,000/s', `p50 ${r.webhookP50} ms, p99 ${r.webhookP99} ms (${r.webhookReceived}/${r.webhookSent})`, 'p99 ≤ 100 ms']);
}
if (want('subjects')) {
  const r = runSubjectsBench();
  rows.push([`subjects: a consumer with ${r.patterns} patterns`, `${(r.uncachedNs / 1000).toFixed(2)} µs a message (new subjects), ${(r.cachedNs / 1000).toFixed(3)} µs (repeated)`, '< 2 µs']);
}
if (want('metrics')) {
  const r = await runMetricsBench(500, 2);
  rows.push(['metrics: a scrape with 500 consumers', `p50 ${r.scrapeP50Ms} ms, max ${r.scrapeMaxMs} ms`, '< 50 ms']);
  const rate = (scraping: boolean) => {
    const xs = r.push.filter((p) => p.scraping === scraping).map((p) => p.perSecond);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  rows.push(['metrics: push batch 1, scraped every second', `${fmt(rate(true))}/s against ${fmt(rate(false))}/s (${((rate(true) / rate(false) - 1) * 100).toFixed(1)}%)`, 'under 2% lower']);
}
if (want('scale')) {
  for (const r of await runScaleBench(3)) {
    rows.push([`scale: ${r.mode} with ${r.processes} process${r.processes > 1 ? 'es' : ''}`, `${fmt(r.perSecond)} messages/s (CPU ms/1,000: gateways ${r.cpuMsPer1k.gateways}, Postgres ${r.cpuMsPer1k.postgres ?? '?'})`, '(measured, see docs/scaling.md)']);
  }
}

if (want('console')) {
  const r = await runConsoleBench(30, 2000);
  const avg = (m: string) => r.windows.filter((w) => w.mode === m).reduce((a, w, _, xs) => a + w.cpuPercent / xs.length, 0);
  rows.push(['console: JavaScript and CSS, gzipped', `${r.gzippedKb.toFixed(1)} KB`, '≤ 250 KB']);
  rows.push(['console: overview with 200 consumers drawn', `${r.renderMs.join(', ')} ms`, '≤ 1,000 ms']);
  for (const p of r.perPoll) rows.push([`console: one ${p.view} poll, gateway CPU`, `${p.cpuMs} ms: ${p.percentOfCore}% of a core every 3 s`, '≤ 2%']);
  for (const m of ['overview', 'consumer']) {
    rows.push([`console: ${m} polling, push at 2,000/s`, `gateway CPU ${avg(m).toFixed(1)}% against ${avg('none').toFixed(1)}% of a core (+${(avg(m) - avg('none')).toFixed(1)} points)`, '≤ 2% more']);
  }
}

console.log('\nSummary');
for (const [name, got, target] of rows) console.log(`  ${name.padEnd(46)} ${got.padEnd(70)} ${target && `target ${target}`}`.trimEnd());
