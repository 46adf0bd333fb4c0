// End-to-end latency through the whole gateway: a producer commits 1-row
// transactions at a steady rate; each message's latency is the time from its
// source commit (metadata.commit_timestamp, same machine clock) to its arrival
//   - at a long-polling pull worker (receive with wait_for, then ack), or
//   - at a webhook receiver on 127.0.0.1 (batch_size 100, batch_timeout 0).
// Prints p50/p99; asserts nothing.   npx tsx bench/latency.ts [rate] [seconds]
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbedded } from '../src/db/embedded.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { loadConfig } from '../src/config/load.js';

export interface LatencyResult {
  path: 'pull' | 'webhook';
  rate: number;
  messages: number;
  p50: number;
  p99: number;
  max: number;
}

/** The value at quantile q of sorted samples (NaN when none). */
export const pct = (s: number[], q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;

function configText(kind: 'pull' | 'webhook', webhookUrl: string): string {
  const consumer =
    kind === 'pull'
      ? `kind: pull`
      : `kind: webhook
    webhook:
      url: ${webhookUrl}
      batch_size: 100
      batch_timeout: 0ms
      allow_private_ranges: ["127.0.0.0/8"]`;
  return `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: bench-token-0123456789 }
sources:
  - name: app
    tables: [public.lat]
    heartbeat_interval: 1h
consumers:
  - name: lat
    source: app
    tables: [public.lat]
    ${consumer}
`;
}

async function produce(url: string, rate: number, seconds: number): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const total = Math.round(rate * seconds);
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    await c.query('INSERT INTO lat (note) VALUES ($1)', ['x'.repeat(100)]);
  }
  await c.end();
  return total;
}

export async function runLatencyBench(kind: 'pull' | 'webhook', rate = 1000, seconds = 20, log = console.log): Promise<LatencyResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-lat-'));
  chmodSync(dir, 0o755);
  const pgh = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false });
  const samples: number[] = [];
  const note = (commitTimestamp: string) => samples.push(Date.now() - Date.parse(commitTimestamp));
  let receiver: http.Server | null = null;
  let webhookUrl = '';
  if (kind === 'webhook') {
    receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        for (const m of JSON.parse(Buffer.concat(chunks).toString()).data) note(m.metadata.commit_timestamp);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver!.listen(0, '127.0.0.1', () => r()));
    webhookUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
  }
  const setup = new pg.Client({ connectionString: pgh.url });
  await setup.connect();
  await setup.query('CREATE TABLE lat (id bigserial PRIMARY KEY, note text, at timestamptz DEFAULT now())');
  await setup.end();
  const gateway = new Gateway({
    config: loadConfig({ text: configText(kind, webhookUrl) }, {}),
    bufferUrl: pgh.url,
    log: createLogger('warn'),
  });
  await gateway.start();
  while (!gateway.status().every((s) => s.running)) await new Promise((r) => setTimeout(r, 20));

  let stop = false;
  const workers: Promise<void>[] = [];
  if (kind === 'pull') {
    const base = `${gateway.httpAddress}/api/http_pull_consumers/lat`;
    const headers = { authorization: 'Bearer bench-token-0123456789', 'content-type': 'application/json' };
    for (let w = 0; w < 2; w++) {
      workers.push(
        (async () => {
          while (!stop) {
            const r = await fetch(`${base}/receive`, { method: 'POST', headers, body: JSON.stringify({ batch_size: 100, wait_for: 1000 }) });
            const items = ((await r.json()) as { data: Array<{ ack_id: string; data: { metadata: { commit_timestamp: string } } }> }).data;
            for (const it of items) note(it.data.metadata.commit_timestamp);
            if (items.length) await fetch(`${base}/ack`, { method: 'POST', headers, body: JSON.stringify({ ack_ids: items.map((i) => i.ack_id) }) });
          }
        })(),
      );
    }
  }
  const total = await produce(pgh.url, rate, seconds);
  const deadline = Date.now() + 30_000;
  while (samples.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  stop = true;
  await Promise.all(workers);
  await gateway.stop();
  receiver?.close();
  await pgh.stop();
  rmSync(dir, { recursive: true, force: true });

  const sorted = [...samples].sort((a, b) => a - b);
  const result: LatencyResult = { path: kind, rate, messages: samples.length, p50: pct(sorted, 0.5), p99: pct(sorted, 0.99), max: sorted[sorted.length - 1] };
  log(`latency ${kind}: ${result.messages}/${total} messages at ${rate}/s in 1-row transactions: commit → ${kind === 'pull' ? 'long-poll receive' : 'webhook receipt'} p50 ${result.p50} ms, p99 ${result.p99} ms, max ${result.max} ms`);
  return result;
}

if (process.argv[1]?.endsWith(path.join('bench', 'latency.ts'))) {
  const [rate, seconds] = process.argv.slice(2).map(Number);
  await runLatencyBench('pull', rate || 1000, seconds || 20);
  await runLatencyBench('webhook', rate || 1000, seconds || 20);
}
