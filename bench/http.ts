// The HTTP ceiling of this machine for webhook-sized POSTs: undici, through
// the dispatcher's own postOnce (src/push/http.ts) and, to compare, undici's
// request(), to a node:http receiver in a worker thread that parses the JSON
// body; no database, no signing. Tells whether push batch size 1 is bound by
// HTTP. Prints figures; asserts nothing.
//   npx tsx bench/http.ts
import { Worker } from 'node:worker_threads';
import { Pool } from 'undici';
import { postOnce } from '../src/push/http.js';

const RECEIVER = `
const { parentPort } = require('node:worker_threads');
const http = require('node:http');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    JSON.parse(Buffer.concat(chunks).toString('utf8'));
    res.writeHead(200).end();
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
`;

const worker = new Worker(RECEIVER, { eval: true });
const port = await new Promise<number>((resolve) => worker.once('message', resolve));
// About one captured change with its envelope.
const body = Buffer.from(JSON.stringify({ record: { id: 1, note: 'x'.repeat(400) }, metadata: { table_name: 'orders', commit_lsn: 1 } }));
const requests = Number(process.env.BENCH_REQUESTS ?? 40_000);
const url = new URL(`http://127.0.0.1:${port}/hook`);
const headers = { 'content-type': 'application/json', 'webhook-id': 'msg_x', 'webhook-signature': 'v1,x' };
type Client = 'postOnce' | 'request';
// [connections, pipelining, requests in parallel, client]; the first run warms up.
const runs: Array<[number, number, number, Client]> = [
  [64, 1, 64, 'postOnce'],
  [128, 1, 128, 'postOnce'],
  [128, 1, 128, 'request'],
  [128, 1, 128, 'postOnce'],
  [128, 1, 128, 'request'],
  [16, 1, 64, 'postOnce'],
  [4, 16, 64, 'request'],
];
for (const [connections, pipelining, parallel, client] of runs) {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining, keepAliveTimeout: 30_000 });
  let started = 0;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (started < requests) {
        started++;
        if (client === 'postOnce') {
          await postOnce(pool, url, headers, body, { timeoutMs: 30_000, maxResponseBytes: 65_536 });
        } else {
          const res = await pool.request({ path: url.pathname, method: 'POST', body, headers });
          await res.body.dump();
        }
      }
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `${client.padEnd(8)} connections ${String(connections).padStart(3)}, pipelining ${String(pipelining).padStart(2)}, ${String(parallel).padStart(3)} in parallel: ` +
      `${Math.round(requests / seconds).toLocaleString('en')} requests/s, CPU (both sides) ${((cpu.user + cpu.system) / requests).toFixed(0)} µs per request`,
  );
  await pool.close();
}
await worker.terminate();
