// The HTTP ceiling of this machine for webhook-sized POSTs: undici (as the
// dispatcher uses it) to a node:http receiver in a worker thread that parses
// the JSON body, no database, no signing. Tells whether push batch size 1 is
// bound by HTTP. Prints figures; asserts nothing.
//   npx tsx bench/http.ts
import { Worker } from 'node:worker_threads';
import { Pool } from 'undici';

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
// [connections, pipelining, requests in parallel]; the first run warms up.
const runs: Array<[number, number, number]> = [[64, 1, 64], [64, 1, 64], [128, 1, 128], [16, 1, 64], [4, 16, 64]];
for (const [connections, pipelining, parallel] of runs) {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining, keepAliveTimeout: 30_000 });
  let started = 0;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (started < requests) {
        started++;
        const res = await pool.request({ path: '/hook', method: 'POST', body, headers: { 'content-type': 'application/json', 'webhook-id': 'msg_x', 'webhook-signature': 'v1,x' } });
        await res.body.dump();
      }
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `connections ${String(connections).padStart(3)}, pipelining ${String(pipelining).padStart(2)}, ${String(parallel).padStart(3)} in parallel: ` +
      `${Math.round(requests / seconds).toLocaleString('en')} requests/s, CPU (both sides) ${((cpu.user + cpu.system) / requests).toFixed(0)} µs per request`,
  );
  await pool.close();
}
await worker.terminate();
