// The pull benchmark's clients: W concurrent workers doing receive(batch) →
// ack over HTTP until `total` messages are acked. They run in a process of
// their own by default, as real consumers do: sharing the gateway's event
// loop, their JSON parsing and request building (about 40% of that
// process's CPU) delayed its responses. BENCH_PULL_CLIENTS=inline keeps them
// in the gateway's process, as the figures before 2026-12-07 were taken.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

export interface ClientPlan {
  origin: string;
  /** Path of the consumer, e.g. /api/http_pull_consumers/<name>. */
  base: string;
  batchSize: number;
  workers: number;
  total: number;
  /** Epoch ms after which the workers stop, whatever is left. */
  deadline: number;
}

export interface ClientTally {
  acked: number;
  receiveMs: number[];
  ackMs: number[];
  /** CPU seconds the clients used (their own process's, when it is one). */
  cpuSeconds: number | null;
}

/** BENCH_PULL_CLIENTS=inline: the clients share the gateway's process. */
export function clientsInline(): boolean {
  return process.env.BENCH_PULL_CLIENTS === 'inline';
}

/** Runs the workers in this process; `progress` sees the acked count as it grows. */
export async function drainInline(plan: ClientPlan, progress: (acked: number) => void = () => {}): Promise<Omit<ClientTally, 'cpuSeconds'>> {
  // undici's request API: a real HTTP/1.1 client with keep-alive, without
  // fetch's WHATWG stream machinery, which cost more CPU than the server.
  const http = new Pool(plan.origin, { connections: plan.workers, pipelining: 1 });
  const receiveMs: number[] = [];
  const ackMs: number[] = [];
  let acked = 0;
  let emptyStreak = 0;
  const worker = async () => {
    // Bounded: stops when everything is acked, after repeated empty receives, or at the deadline.
    while (acked < plan.total && emptyStreak < 50 && Date.now() < plan.deadline) {
      const t0 = performance.now();
      const res = await http.request({ path: `${plan.base}/receive?batch_size=${plan.batchSize}`, method: 'GET' });
      const body = (await res.body.json()) as { data: { ack_id: string }[] };
      if (!body.data) throw new Error(`receive failed: ${JSON.stringify(body)}`);
      receiveMs.push(performance.now() - t0);
      if (body.data.length === 0) {
        emptyStreak++;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      emptyStreak = 0;
      const t1 = performance.now();
      const ackRes = await http.request({
        path: `${plan.base}/ack`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ack_ids: body.data.map((d) => d.ack_id) }),
      });
      const out = (await ackRes.body.json()) as { applied: number };
      ackMs.push(performance.now() - t1);
      acked += out.applied;
      progress(acked);
    }
  };
  try {
    await Promise.all(Array.from({ length: plan.workers }, worker));
  } finally {
    await http.close();
  }
  return { acked, receiveMs, ackMs };
}

/**
 * Starts the workers' process (this file, through tsx) and resolves once it is
 * loaded, so that its start-up is not counted in the drain; `drain` then runs
 * one plan there.
 */
export function startClientProcess(): Promise<{
  drain: (plan: ClientPlan, progress?: (acked: number) => void) => Promise<ClientTally>;
  /** Ends the process (a no-op once it has exited). */
  stop: () => void;
}> {
  const child = fork(fileURLToPath(import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  let onMessage: (m: ChildMessage) => void = () => {};
  let onEnd: (e: Error) => void = () => {};
  child.on('message', (m: ChildMessage) => onMessage(m));
  child.on('error', (e) => onEnd(e));
  child.on('exit', (code) => onEnd(new Error(`pull clients exited with ${code}`)));
  return new Promise((ready, failed) => {
    onEnd = failed;
    onMessage = (m) => {
      if (!m.ready) return;
      ready({
        stop: () => {
          if (child.exitCode === null) child.kill();
        },
        drain: (plan, progress = () => {}) =>
          new Promise((resolve, reject) => {
            onEnd = reject;
            onMessage = (r) => {
              if (r.error) reject(new Error(r.error));
              else if (r.tally) resolve(r.tally);
              else if (r.acked !== undefined) progress(r.acked);
            };
            child.send(plan);
          }),
      });
    };
  });
}

interface ChildMessage {
  ready?: boolean;
  acked?: number;
  tally?: ClientTally;
  error?: string;
}

// The child's side: one plan in, progress and one tally out.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  process.send({ ready: true });
  process.once('message', (plan: ClientPlan) => {
    const cpu0 = process.cpuUsage();
    let last = 0;
    drainInline(plan, (acked) => {
      const now = Date.now();
      if (now - last >= 500) {
        last = now;
        process.send!({ acked });
      }
    }).then(
      (t) => {
        const cpu = process.cpuUsage(cpu0);
        process.send!({ tally: { ...t, cpuSeconds: Math.round((cpu.user + cpu.system) / 1e4) / 100 } }, () => process.exit(0));
      },
      (e: unknown) => process.send!({ error: e instanceof Error ? e.message : String(e) }, () => process.exit(1)),
    );
  });
}
