// The web console's costs (issue: console ≤ 250 KB gzipped, overview renders
// in ≤ 1 s with 200 consumers, polling adds ≤ 2% CPU to a gateway under push
// load). A real gateway process (node bin/sluice.js start) on an embedded
// Postgres, with 200 consumers, Debian's Chromium through playwright-core.
//   1. size: the built JavaScript and CSS, gzipped, as served;
//   2. render: from navigation to the overview's 200 consumer rows drawn,
//      signed in, five loads;
//   3. CPU: a webhook consumer takes a steady stream of inserts (RATE rows/s,
//      batches of 100 to a receiver in this process) while the gateway's CPU
//      time is read from /proc/<pid>/stat over alternating windows, with no
//      browser and with the console open on the overview (polling every 3 s)
//      and on the consumer's page (stats, attempts every 3 s). Window-to-window
//      noise is about a point of a core, so besides:
//   4. per poll: the gateway's CPU time for 300 polls of each view in a row
//      (the requests the console makes every 3 s), divided out.
//   npx tsx bench/console.ts [window_seconds] [rate]   (window_seconds 0: skip 3)
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { chromium } from 'playwright-core';
import { startEmbedded } from '../src/db/embedded.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'bench-console-token-0123456789';
const CHROMIUM = process.env.SLUICE_CHROMIUM ?? '/usr/bin/chromium';
const TICK = 100; // USER_HZ on Linux

/** A process's CPU time so far (user + system), in ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICK;
}

export interface ConsoleBenchResult {
  gzippedKb: number;
  renderMs: number[];
  windows: Array<{ mode: 'none' | 'overview' | 'consumer'; cpuPercent: number; delivered: number }>;
  /** Gateway CPU per poll of each view, and that as a share of a core at one poll every 3 s. */
  perPoll: Array<{ view: 'overview' | 'consumer'; cpuMs: number; percentOfCore: number }>;
}

export async function runConsoleBench(windowSeconds = 30, rate = 2000, log = console.log): Promise<ConsoleBenchResult> {
  const assets = path.join(ROOT, 'dist/console/assets');
  const gzippedKb = readdirSync(assets).filter((f) => f.endsWith('.gz')).reduce((a, f) => a + statSync(path.join(assets, f)).size, 0) / 1024;
  log(`console: JavaScript and CSS ${gzippedKb.toFixed(1)} KB gzipped (target ≤ 250 KB)`);

  let delivered = 0;
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      delivered += (JSON.parse(Buffer.concat(chunks).toString()) as { data: unknown[] }).data.length;
      res.end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-console-bench-'));
  chmodSync(dir, 0o755);
  const pgh = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false });
  const setup = new pg.Client({ connectionString: pgh.url });
  await setup.connect();
  await setup.query('CREATE TABLE public.events (id bigserial PRIMARY KEY, kind text NOT NULL, payload text NOT NULL); CREATE TABLE public.quiet (id bigint PRIMARY KEY)');
  const quiet = Array.from({ length: 199 }, (_, i) => `  - { name: quiet-${String(i).padStart(3, '0')}, source: app, kind: pull, tables: [public.quiet] }`).join('\n');
  const configFile = path.join(dir, 'sluice.yaml');
  writeFileSync(configFile, `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - { name: app, tables: [public.events, public.quiet] }
consumers:
  - name: hook
    source: app
    kind: webhook
    tables: [public.events]
    webhook: { url: "${hook}", batch_size: 100, batch_timeout: 20ms, max_in_flight: 4, allow_private_ranges: ["127.0.0.0/8"] }
${quiet}
`);
  const gateway = spawn(process.execPath, [path.join(ROOT, 'bin/sluice.js'), 'start', '--config', configFile], {
    cwd: ROOT,
    // Info level whatever the bench's own (LOG_LEVEL=warn npm run bench): its start is read from its log.
    env: { ...process.env, DATABASE_URL: pgh.url, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => gateway.once('exit', () => r()));
  const base = await new Promise<string>((resolve, reject) => {
    let address = '';
    const timer = setTimeout(() => {
      gateway.kill('SIGKILL');
      reject(new Error('the gateway did not start within 60 s'));
    }, 60_000);
    createInterface({ input: gateway.stdout! }).on('line', (line) => {
      if (line.includes('"msg":"http listening"')) address = JSON.parse(line).address;
      if (line.includes('"msg":"sluice started"') && address) {
        clearTimeout(timer);
        resolve(address);
      }
    });
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript((token: string) => sessionStorage.setItem('sluice.token', token), TOKEN);

  // 2. Render time of the overview with 200 consumers.
  const renderMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const page = await context.newPage();
    const t0 = performance.now();
    await page.goto(`${base}/#/`);
    await page.locator('table.consumers tbody tr').nth(199).waitFor({ timeout: 10_000 });
    renderMs.push(Math.round(performance.now() - t0));
    await page.close();
  }
  log(`console: overview with 200 consumers drawn in ${renderMs.join(', ')} ms (navigation to the 200th row; target ≤ 1,000 ms)`);

  // 4. CPU per poll, with no other load: the requests each view makes every 3 s.
  const headers = { authorization: `Bearer ${TOKEN}` };
  const polls = { overview: ['/api/overview'], consumer: ['/api/consumers/hook', '/api/consumers/hook/stats', '/api/consumers/hook/attempts?limit=50'] } as const;
  const perPoll: ConsoleBenchResult['perPoll'] = [];
  for (const view of ['overview', 'consumer'] as const) {
    const n = 300;
    const cpu0 = cpuMs(gateway.pid!);
    for (let i = 0; i < n; i++) {
      for (const p of polls[view]) {
        const r = await fetch(`${base}${p}`, { headers });
        if (r.status !== 200) throw new Error(`${p}: ${r.status}`);
        await r.arrayBuffer();
      }
    }
    const each = (cpuMs(gateway.pid!) - cpu0) / n;
    perPoll.push({ view, cpuMs: Math.round(each * 100) / 100, percentOfCore: Math.round((each / 3000) * 100 * 1000) / 1000 });
    log(`console: one ${view} poll (${polls[view].join(', ')}) costs the gateway ${each.toFixed(2)} ms of CPU: ${((each / 3000) * 100).toFixed(3)}% of a core at one poll every 3 s`);
  }

  // 3. CPU under a steady push load, with and without the console polling.
  let producing = true;
  const producer = (async () => {
    const c = new pg.Client({ connectionString: pgh.url });
    await c.connect();
    const perTick = Math.max(1, Math.round(rate / 10));
    const t0 = performance.now();
    for (let tick = 0; producing; tick++) {
      const wait = t0 + tick * 100 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await c.query(`INSERT INTO public.events (kind, payload) SELECT 'k' || (g % 7), repeat('x', 150) FROM generate_series(1, $1) g`, [perTick]);
    }
    await c.end();
  })();
  await new Promise((r) => setTimeout(r, 5000)); // warm up
  const windows: ConsoleBenchResult['windows'] = [];
  const modes: Array<'none' | 'overview' | 'consumer'> = windowSeconds > 0 ? ['none', 'overview', 'none', 'consumer', 'none', 'overview', 'none', 'consumer'] : [];
  for (const mode of modes) {
    const page = mode === 'none' ? null : await context.newPage();
    if (page) {
      await page.goto(`${base}/#/${mode === 'overview' ? '' : 'consumers/hook'}`);
      if (mode === 'consumer') await page.getByRole('tab', { name: 'Attempt log' }).click();
    }
    const cpu0 = cpuMs(gateway.pid!);
    const d0 = delivered;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, windowSeconds * 1000));
    const seconds = (performance.now() - t0) / 1000;
    const w = { mode, cpuPercent: Math.round(((cpuMs(gateway.pid!) - cpu0) / 10 / seconds) * 10) / 10, delivered: delivered - d0 };
    windows.push(w);
    log(`console: ${mode === 'none' ? 'no console     ' : mode === 'overview' ? 'overview open  ' : 'consumer open  '} gateway CPU ${w.cpuPercent}% of a core, ${Math.round(w.delivered / seconds)} messages/s delivered`);
    await page?.close();
  }
  producing = false;
  await producer;
  const avg = (m: string) => {
    const xs = windows.filter((w) => w.mode === m).map((w) => w.cpuPercent);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  for (const m of windows.length ? ['overview', 'consumer'] : []) {
    log(`console: ${m} polling adds ${(avg(m) - avg('none')).toFixed(1)} points of a core (${(((avg(m) / avg('none')) - 1) * 100).toFixed(1)}% of the gateway's ${avg('none').toFixed(1)}%) at ${rate} changes/s pushed`);
  }

  await browser.close();
  await setup.end();
  gateway.kill('SIGTERM');
  await exited;
  await pgh.stop().catch(() => {});
  receiver.close();
  rmSync(dir, { recursive: true, force: true });
  return { gzippedKb, renderMs, windows, perPoll };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [seconds, rate] = process.argv.slice(2).map(Number);
  await runConsoleBench(Number.isFinite(seconds) ? seconds : undefined, rate || undefined);
}
