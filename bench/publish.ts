// Publishing to a stream through the whole gateway (HTTP API, group commit,
// the buffer), from clients in this process over loopback:
//   batch   8 clients, each publishing batches of 100 messages of ~200 bytes
//           back to back: messages/s made durable (200 answers);
//   single  32 clients publishing one message per request: requests/s and
//           the answer's latency p50/p99;
//   webhook 1,000 messages/s published one by one, received by a webhook
//           consumer of the stream on 127.0.0.1: publish → receipt p50/p99.
// Prints figures; asserts nothing.   npx tsx bench/publish.ts [seconds]
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Agent, request } from 'undici';
import { startEmbedded } from '../src/db/embedded.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { loadConfig } from '../src/config/load.js';
import { pct } from './latency.js';

export interface PublishBenchResult {
  batchPerSecond: number;
  singlePerSecond: number;
  singleP50: number;
  singleP99: number;
  webhookP50: number;
  webhookP99: number;
  webhookReceived: number;
  webhookSent: number;
}

const TOKEN = 'bench-token-0123456789';
const data = (i: number) => ({ id: i, account: 'acct-' + (i % 1000), kind: 'order.created', total: '1234.56', note: 'x'.repeat(120) });

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
  const agent = new Agent({ connections: 64, pipelining: 1 });
  const post = async (stream: string, body: object) => {
    const r = await request(`${gateway.httpAddress}/api/streams/${stream}/messages`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await r.body.text();
    if (r.statusCode !== 200) throw new Error(`publish answered ${r.statusCode}: ${text}`);
  };
  try {
    // Batches of 100 from 8 clients.
    let batched = 0;
    let end = Date.now() + seconds * 1000;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, async (_, c) => {
        for (let n = 0; Date.now() < end; n++) {
          await post('bulk', { messages: Array.from({ length: 100 }, (_, i) => ({ subject: `orders.c${c}`, data: data(n * 100 + i), key: `k${(n * 100 + i) % 5000}` })) });
          batched += 100;
        }
      }),
    );
    const batchPerSecond = batched / ((performance.now() - t0) / 1000);
    console.log("W", JSON.stringify((globalThis as any).__W));
    log(`publish: batches of 100 from 8 clients: ${Math.round(batchPerSecond).toLocaleString('en')} messages/s durable`);

    // One message per request from 32 clients.
    const latencies: number[] = [];
    end = Date.now() + seconds * 1000;
    const t1 = performance.now();
    await Promise.all(
      Array.from({ length: 32 }, async (_, c) => {
        for (let n = 0; Date.now() < end; n++) {
          const s = performance.now();
          await post('single', { subject: `users.c${c}`, data: data(n) });
          latencies.push(performance.now() - s);
        }
      }),
    );
    const singlePerSecond = latencies.length / ((performance.now() - t1) / 1000);
    latencies.sort((a, b) => a - b);
    log(
      `publish: one message per request from 32 clients: ${Math.round(singlePerSecond).toLocaleString('en')}/s, ` +
        `answered in p50 ${pct(latencies, 0.5).toFixed(1)} ms, p99 ${pct(latencies, 0.99).toFixed(1)} ms`,
    );

    // 1,000/s to a webhook consumer.
    const rate = 1000;
    const total = rate * seconds;
    const t2 = performance.now();
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const wait = t2 + (i * 1000) / rate - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(post('hooked', { subject: 'orders.new', data: { i, sent: Date.now() }, key: `k${i % 100}` }));
      if (inFlight.length >= 64) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const deadline = Date.now() + 30_000;
    while (hookTimes.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const hooks = [...hookTimes].sort((a, b) => a - b);
    log(`publish → webhook at ${rate}/s: ${hooks.length}/${total} received, p50 ${pct(hooks, 0.5)} ms, p99 ${pct(hooks, 0.99)} ms`);
    return {
      batchPerSecond,
      singlePerSecond,
      singleP50: pct(latencies, 0.5),
      singleP99: pct(latencies, 0.99),
      webhookP50: pct(hooks, 0.5),
      webhookP99: pct(hooks, 0.99),
      webhookReceived: hooks.length,
      webhookSent: total,
    };
  } finally {
    await agent.close();
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
