// Publishing to a stream through the whole gateway (HTTP API, group commit,
// the buffer), from clients in a worker thread over loopback:
//   batch   8 clients, each publishing batches of 100 messages of ~200 bytes
//           back to back: messages/s made durable (200 answers); again with
//           an idempotency_key on every message;
//   single  32 clients publishing one message per request: requests/s and
//           the answer's latency p50/p99;
//   webhook 1,000 messages/s published one by one, received by a webhook
//           consumer of the stream on 127.0.0.1: publish → receipt p50/p99.
// The clients run in a worker thread (another core, not the gateway's event
// loop). Prints figures; asserts nothing.   npx tsx bench/publish.ts [seconds]
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { startEmbedded } from '../src/db/embedded.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { loadConfig } from '../src/config/load.js';
import { pct } from './latency.js';

export interface PublishBenchResult {
  batchPerSecond: number;
  keyedPerSecond: number;
  singlePerSecond: number;
  singleP50: number;
  singleP99: number;
  webhookP50: number;
  webhookP99: number;
  webhookReceived: number;
  webhookSent: number;
}

const TOKEN = 'bench-token-0123456789';
const require = createRequire(import.meta.url);

// CommonJS, evaluated in a worker thread: the publishing clients.
const CLIENTS = `
const { parentPort, workerData } = require('node:worker_threads');
const { Agent, request } = require(workerData.undici);
const agent = new Agent({ connections: 64, pipelining: 1 });
const data = (i) => ({ id: i, account: 'acct-' + (i % 1000), kind: 'order.created', total: '1234.56', note: 'x'.repeat(120) });
async function post(stream, body) {
  const r = await request(workerData.address + '/api/streams/' + stream + '/messages', {
    method: 'POST', dispatcher: agent,
    headers: { authorization: 'Bearer ' + workerData.token, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error('publish answered ' + r.statusCode + ': ' + text);
}
const phases = {
  async batch({ seconds, keyed }) {
    let count = 0;
    const end = Date.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 8 }, async (_, c) => {
      for (let n = 0; Date.now() < end; n++) {
        await post(keyed ? 'keyed' : 'bulk', { messages: Array.from({ length: 100 }, (_, i) => ({
          subject: 'orders.c' + c, data: data(n * 100 + i), key: 'k' + ((n * 100 + i) % 5000),
          ...(keyed && { idempotency_key: 'c' + c + '-' + (n * 100 + i) }),
        })) });
        count += 100;
      }
    }));
    return { count, ms: performance.now() - t0 };
  },
  async single({ seconds }) {
    const latencies = [];
    const end = Date.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 32 }, async (_, c) => {
      for (let n = 0; Date.now() < end; n++) {
        const s = performance.now();
        await post('single', { subject: 'users.c' + c, data: data(n) });
        latencies.push(performance.now() - s);
      }
    }));
    return { latencies, ms: performance.now() - t0 };
  },
  async paced({ seconds, rate }) {
    const total = rate * seconds;
    const t0 = performance.now();
    const inFlight = [];
    for (let i = 0; i < total; i++) {
      const wait = t0 + (i * 1000) / rate - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(post('hooked', { subject: 'orders.new', data: { i, sent: Date.now() }, key: 'k' + (i % 100) }));
      if (inFlight.length >= 64) await inFlight.shift();
    }
    await Promise.all(inFlight);
    return {};
  },
};
parentPort.on('message', (task) => {
  phases[task.phase](task).then((r) => parentPort.postMessage(r), (e) => parentPort.postMessage({ error: String(e && e.message || e) }));
});
`;

export async function runPublishBench(seconds = 10, log = console.log): Promise<PublishBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-pub-'));
  chmodSync(dir, 0o755);
  const pgh = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, extraFlags: ['-c', 'max_wal_size=4GB'] });
  const hookTimes: number[] = [];
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const now = Date.now();
      for (const m of JSON.parse(Buffer.concat(chunks).toString()).data) hookTimes.push(now - m.data.sent);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const port = (receiver.address() as { port: number }).port;
  const gateway = new Gateway({
    config: loadConfig({
      text: `
http: { host: 127.0.0.1, port: 0, body_limit: 8MB }
auth: { admin_token: ${TOKEN} }
streams:
  - { name: bulk }
  - { name: keyed }
  - { name: single }
  - { name: hooked }
consumers:
  - name: hook
    stream: hooked
    kind: webhook
    webhook: { url: "http://127.0.0.1:${port}/hook", batch_size: 100, batch_timeout: 0ms, allow_private_ranges: ["127.0.0.0/8"] }
`,
    }, {}),
    bufferUrl: pgh.url,
    log: createLogger('warn'),
  });
  await gateway.start();
  // The clients run in a worker thread, as they would in other processes: the
  // gateway's event loop serves requests and is not also making them.
  const clients = new Worker(CLIENTS, { eval: true, workerData: { undici: require.resolve('undici'), address: gateway.httpAddress, token: TOKEN } });
  const run = <T,>(task: object) =>
    new Promise<T>((resolve, reject) => {
      clients.once('message', (m: T & { error?: string }) => (m.error ? reject(new Error(m.error)) : resolve(m)));
      clients.postMessage(task);
    });
  try {
    // Batches of 100 from 8 clients.
    const batch = await run<{ count: number; ms: number }>({ phase: 'batch', seconds });
    const batchPerSecond = batch.count / (batch.ms / 1000);
    log(`publish: batches of 100 from 8 clients: ${Math.round(batchPerSecond).toLocaleString('en')} messages/s durable`);
    // The same, each message with an idempotency_key (looked up under the stream's lock first).
    const keyed = await run<{ count: number; ms: number }>({ phase: 'batch', seconds, keyed: true });
    const keyedPerSecond = keyed.count / (keyed.ms / 1000);
    log(`publish: batches of 100 with idempotency keys from 8 clients: ${Math.round(keyedPerSecond).toLocaleString('en')} messages/s durable`);

    // One message per request from 32 clients.
    const single = await run<{ ms: number; latencies: number[] }>({ phase: 'single', seconds });
    const latencies = single.latencies.sort((a, b) => a - b);
    const singlePerSecond = latencies.length / (single.ms / 1000);
    log(
      `publish: one message per request from 32 clients: ${Math.round(singlePerSecond).toLocaleString('en')}/s, ` +
        `answered in p50 ${pct(latencies, 0.5).toFixed(1)} ms, p99 ${pct(latencies, 0.99).toFixed(1)} ms`,
    );

    // 1,000/s to a webhook consumer.
    const rate = 1000;
    const total = rate * seconds;
    await run({ phase: 'paced', seconds, rate });
    const deadline = Date.now() + 30_000;
    while (hookTimes.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const hooks = [...hookTimes].sort((a, b) => a - b);
    log(`publish → webhook at ${rate}/s: ${hooks.length}/${total} received, p50 ${pct(hooks, 0.5)} ms, p99 ${pct(hooks, 0.99)} ms`);
    return {
      batchPerSecond,
      keyedPerSecond,
      singlePerSecond,
      singleP50: pct(latencies, 0.5),
      singleP99: pct(latencies, 0.99),
      webhookP50: pct(hooks, 0.5),
      webhookP99: pct(hooks, 0.99),
      webhookReceived: hooks.length,
      webhookSent: total,
    };
  } finally {
    await clients.terminate();
    await gateway.stop();
    receiver.close();
    await pgh.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [seconds] = process.argv.slice(2).map(Number);
  await runPublishBench(seconds || undefined);
}
