// Scaling out: the same drains with 1, 2 and 3 gateway processes (`node
// bin/sluice.js start`, as the Docker image runs it) sharing one buffer.
//   push: batch 1, max_in_flight 128, 100,000 changes over 10,000 groups, to a
//         receiver on 127.0.0.1 (a worker thread of this process);
//   pull: 200,000 changes drained by 8 workers (receive 100 → ack), spread
//         evenly over the processes' HTTP ports.
// Each run on a fresh embedded Postgres; the consumer is paused while the
// processes start, then resumed, so every process takes part from the first
// message. Prints the rate and where the CPU went (each gateway process,
// Postgres, this process's clients). Asserts nothing.
//   npx tsx bench/scale.ts [max_processes]
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Pool as HttpPool } from 'undici';
import { startEmbedded } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { createConsumer, insertSeries } from '../test/helpers/buffer.js';
import { benchWebhook, fillLog, insertBenchConsumer, postgresCpuMs, startReceiverThread } from './push.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'bench-scale-admin-token-0123456789';
const TICK_MS = 1000 / 100; // USER_HZ

export interface ScaleRow {
  mode: 'push' | 'pull';
  processes: number;
  perSecond: number;
  /** CPU seconds per 1,000 messages: all gateway processes together, Postgres, and the bench's own clients. */
  cpuMsPer1k: { gateways: number; postgres: number | null; clients: number };
}

function processCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

interface Gateway {
  proc: ChildProcess;
  api: string;
}

async function startGateway(url: string, configFile: string): Promise<Gateway> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/sluice.js'), 'start', '--config', configFile], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const api = await new Promise<string>((resolve, reject) => {
    let address = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error('a gateway did not start within 60 s'));
    }, 60_000);
    proc.once('exit', (code) => reject(new Error(`a gateway exited (${code})`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      if (line.includes('"msg":"http listening"')) address = JSON.parse(line).address;
      if (line.includes('"msg":"sluice started"') && address) {
        clearTimeout(timer);
        resolve(address);
      }
    });
  });
  return { proc, api };
}

async function stopGateways(gateways: Gateway[]): Promise<void> {
  await Promise.all(
    gateways.map(
      (g) =>
        new Promise<void>((resolve) => {
          if (g.proc.exitCode !== null) return resolve();
          g.proc.once('exit', () => resolve());
          g.proc.kill('SIGTERM');
        }),
    ),
  );
}

async function call(api: string, method: string, p: string): Promise<void> {
  const r = await fetch(`${api}${p}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
}

/** One run: a fresh Postgres, `prepare` fills it and names the consumer, N gateways, `drain` until done. */
async function run(
  mode: 'push' | 'pull',
  processes: number,
  prepare: (pool: Pool) => Promise<{ consumer: string; total: number }>,
  drain: (gateways: Gateway[], consumer: string, total: number) => Promise<number>,
): Promise<ScaleRow> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-scale-'));
  chmodSync(dir, 0o755);
  const pg = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, extraFlags: ['-c', 'shared_buffers=512MB', '-c', 'max_wal_size=4GB', '-c', 'max_connections=200'] });
  const pool = createPool(pg.url, { max: 4 });
  const configFile = path.join(dir, 'sluice.yaml');
  writeFileSync(configFile, `http: { host: 127.0.0.1, port: 0 }\nauth: { admin_token: ${TOKEN} }\n`);
  const gateways: Gateway[] = [];
  try {
    await migrate(pool);
    // The stored sources name this table: each process's capture sets it up (one streams, the others stand by).
    await pool.query('CREATE TABLE public.orders (id bigint PRIMARY KEY)');
    const { consumer, total } = await prepare(pool);
    await pool.query('VACUUM ANALYZE');
    await pool.query(`UPDATE sluice.consumers SET state = 'paused' WHERE name = $1`, [consumer]);
    for (let i = 0; i < processes; i++) gateways.push(await startGateway(pg.url, configFile));
    const cpu0 = gateways.map((g) => processCpuMs(g.proc.pid!));
    const pg0 = postgresCpuMs(pg.dataDir);
    const mine0 = process.cpuUsage();
    const started = performance.now();
    await call(gateways[0].api, 'POST', `/api/consumers/${consumer}/resume`);
    const done = await drain(gateways, consumer, total);
    const seconds = (performance.now() - started) / 1000;
    const gatewaysMs = gateways.reduce((sum, g, i) => sum + processCpuMs(g.proc.pid!) - cpu0[i], 0);
    const pg1 = postgresCpuMs(pg.dataDir);
    const mine = process.cpuUsage(mine0);
    const per1k = (ms: number) => Math.round((ms / done) * 1000);
    return {
      mode,
      processes,
      perSecond: Math.round(done / seconds),
      cpuMsPer1k: { gateways: per1k(gatewaysMs), postgres: pg0 !== null && pg1 !== null ? per1k(pg1 - pg0) : null, clients: per1k((mine.user + mine.system) / 1000) },
    };
  } finally {
    await stopGateways(gateways);
    await pool.end();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function pushRun(processes: number): Promise<ScaleRow> {
  const receiver = await startReceiverThread(null);
  try {
    return await run(
      'push',
      processes,
      async (pool) => {
        const id = await insertBenchConsumer(pool, benchWebhook(receiver.port, 1, 128));
        for (let start = 1; start <= 100_000; start += 50_000) await fillLog(pool, id, 50_000, 10_000, start);
        return { consumer: 'bench', total: 100_000 };
      },
      async (_g, _c, total) => {
        const deadline = Date.now() + 300_000;
        let delivered = 0;
        while (delivered < total && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          delivered = (await receiver.counts()).delivered;
        }
        return delivered;
      },
    );
  } finally {
    await receiver.stop();
  }
}

async function pullRun(processes: number): Promise<ScaleRow> {
  const total = 200_000;
  return run(
    'pull',
    processes,
    async (pool) => {
      await createConsumer(pool, { name: 'drain', pull: { ack_wait_ms: 60_000, max_ack_pending: 10_000 } });
      const id = (await pool.query<{ id: string }>(`SELECT id FROM sluice.consumers WHERE name = 'drain'`)).rows[0].id;
      for (let at = 0; at < total; at += 100_000) await insertSeries(pool, id, 1_000 + at, 100_000, total / 10);
      return { consumer: 'drain', total };
    },
    async (gateways, consumer) => {
      // 8 workers, spread evenly over the processes; undici's request API with keep-alive.
      const clients = gateways.map((g) => new HttpPool(g.api, { connections: 8, pipelining: 1 }));
      const base = `/api/http_pull_consumers/${consumer}`;
      const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
      let acked = 0;
      const deadline = Date.now() + 300_000;
      const worker = async (w: number) => {
        const http = clients[w % clients.length];
        let empty = 0;
        while (acked < total && empty < 100 && Date.now() < deadline) {
          const res = await http.request({ path: `${base}/receive?batch_size=100`, method: 'GET', headers });
          const body = (await res.body.json()) as { data: Array<{ ack_id: string }> };
          if (!body.data?.length) {
            empty++;
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          empty = 0;
          const ack = await http.request({ path: `${base}/ack`, method: 'POST', headers, body: JSON.stringify({ ack_ids: body.data.map((d) => d.ack_id) }) });
          acked += ((await ack.body.json()) as { applied: number }).applied;
        }
      };
      await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
      await Promise.all(clients.map((c) => c.close()));
      return acked;
    },
  );
}

export async function runScaleBench(maxProcesses = 3, log = console.log): Promise<ScaleRow[]> {
  const rows: ScaleRow[] = [];
  for (const mode of ['push', 'pull'] as const) {
    for (let n = 1; n <= maxProcesses; n++) {
      const row = mode === 'push' ? await pushRun(n) : await pullRun(n);
      rows.push(row);
      const c = row.cpuMsPer1k;
      log(`scale: ${mode} with ${n} gateway process${n > 1 ? 'es' : ''}: ${row.perSecond.toLocaleString('en')} messages/s; CPU per 1,000: gateways ${c.gateways} ms, Postgres ${c.postgres ?? '?'} ms, bench clients ${c.clients} ms`);
    }
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runScaleBench(Number(process.argv[2]) || undefined);
}
