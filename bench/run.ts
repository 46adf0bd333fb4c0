// `npm run bench`: every benchmark, one after another, each on its own fresh
// embedded Postgres, then a summary beside the issue's targets. Prints figures;
// asserts nothing. BENCH_SCALE=0.1 runs a tenth of each backlog; BENCH_ONLY=
// capture,pull,push,latency picks some.
import os from 'node:os';
import { runCaptureBench } from './capture.js';
import { runLatencyBench } from './latency.js';
import { compareNeighbours, fmtPercentiles } from './neighbours.js';
import { runPullBench } from './pull.js';
import { runPushBench } from './push.js';

const scale = Number(process.env.BENCH_SCALE ?? 1);
const only = process.env.BENCH_ONLY?.split(',');
const n = (x: number) => Math.max(1000, Math.round(x * scale));
const want = (name: string) => !only || only.includes(name);
const rows: Array<[string, string, string]> = [];
const fmt = (x: number) => Math.round(x).toLocaleString('en');

console.log(`sluice bench: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, scale ${scale}\n`);

if (want('capture')) {
  const r = await runCaptureBench(n(1_000_000));
  rows.push(['capture: backlog → buffer', `${fmt(r.captureRate)} changes/s (${(r.ratio * 100).toFixed(0)}% of the library alone: ${fmt(r.ceilingRate)}/s), peak RSS ${r.peakRssMb.toFixed(0)} MB`, '≥ 50,000/s, ≤ 250 MB']);
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
if (want('latency')) {
  const pull = await runLatencyBench('pull', 1000, 20);
  rows.push(['latency: commit → pull receive at 1,000/s', `p50 ${pull.p50} ms, p99 ${pull.p99} ms`, 'p50 ≤ 20, p99 ≤ 100 ms']);
  const hook = await runLatencyBench('webhook', 1000, 20);
  rows.push(['latency: commit → webhook receipt at 1,000/s', `p50 ${hook.p50} ms, p99 ${hook.p99} ms`, 'p50 ≤ 20, p99 ≤ 100 ms']);
}

console.log('\nSummary');
for (const [name, got, target] of rows) console.log(`  ${name.padEnd(46)} ${got.padEnd(70)} ${target && `target ${target}`}`.trimEnd());
