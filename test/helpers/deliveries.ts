// Signed deliveries for the receiving examples and `sluice listen`, and a runner
// that starts each example as the real server process a user would run.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { createSigner } from '../../src/signing/index.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');

// ---- message bodies -------------------------------------------------------

let nextLsn = 23_923_704;

/**
 * One message as JSON text, shaped like capture's output (docs/values.md). Written
 * by hand, not with JSON.stringify, so the bytes hold what a parse + re-serialise
 * round trip would change: an int8 above 2^53, a \u escape, float exponent
 * notation, jsonb spacing. A receiver that verifies re-serialised JSON fails on it.
 */
export function orderChange(action: 'insert' | 'update' | 'delete' = 'insert', id?: number): { text: string; key: string } {
  const lsn = nextLsn++;
  const idx = lsn % 7;
  const key = Buffer.from(`${lsn}:${idx}`).toString('base64');
  const orderId = id ?? lsn;
  const record =
    action === 'delete'
      ? `{"id":${orderId}}`
      : `{"id":${orderId},"customer_id":9007199254740993,"status":"paid","amount":"19.90",` +
        `"note":"caf\\u00e9 \u2615","ratio":1e+100,"tags":{"gift": true, "lines": [1, 2]}}`;
  const changes = action === 'update' ? '{"status":"pending"}' : 'null';
  const text =
    `{"record":${record},"changes":${changes},"action":"${action}","metadata":{` +
    `"table_schema":"public","table_name":"orders","commit_timestamp":"2026-11-23T20:15:01.123456Z",` +
    `"commit_lsn":${lsn},"commit_idx":${idx},"idempotency_key":"${key}","record_pks":["${orderId}"],` +
    `"database_name":"app","transaction_annotations":null,` +
    `"consumer":{"id":"4f0c7a6e-5d43-4f6b-9a59-1d2b3c4d5e6f","name":"orders-webhook","annotations":{}}}}`;
  return { text, key };
}

/** `{"data":[…]}`, the batched body. */
export function batchOf(messages: { text: string }[]): string {
  return `{"data":[${messages.map((m) => m.text).join(',')}]}`;
}

// ---- signing and sending -------------------------------------------------------

export interface Delivery {
  id: string;
  timestamp: number;
  body: string;
  headers: Record<string, string>;
}

export function newDeliveryId(): string {
  return 'msg_' + randomUUID().replaceAll('-', '');
}

/** Signs `body` with every secret given (several = a rotation in progress). */
export function signed(body: string, secrets: string[], opts: { id?: string; timestamp?: number } = {}): Delivery {
  const id = opts.id ?? newDeliveryId();
  const timestamp = opts.timestamp ?? Math.floor(Date.now() / 1000);
  return {
    id,
    timestamp,
    body,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'sluice/test',
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': createSigner(secrets)({ id, timestamp, body }),
    },
  };
}

export interface Reply {
  status: number;
  json: Record<string, unknown> | null;
  text: string;
}

/** POSTs a delivery; `body`/`headers` override what is sent (tampering). */
export async function post(url: string, d: Delivery, override: { body?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const res = await fetch(url, {
    method: 'POST',
    headers: override.headers ?? d.headers,
    body: override.body ?? d.body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: leave null
  }
  return { status: res.status, json, text };
}

// ---- the examples as processes ----------------------------------------------------

export interface ExampleSpec {
  name: string;
  /** The program and its arguments, run with cwd = dir. */
  command: string[];
  dir: string;
}

const tsx = (file: string): string[] => [process.execPath, '--import', 'tsx', file];

export const EXAMPLES: ExampleSpec[] = [
  { name: 'express', command: tsx('server.ts'), dir: 'examples/express' },
  { name: 'fastify', command: tsx('server.ts'), dir: 'examples/fastify' },
  { name: 'koa', command: tsx('server.ts'), dir: 'examples/koa' },
  { name: 'hono', command: tsx('server.ts'), dir: 'examples/hono' },
  { name: 'nextjs', command: tsx('serve.ts'), dir: 'examples/nextjs' },
  { name: 'nestjs', command: tsx('main.ts'), dir: 'examples/nestjs' },
  { name: 'node-http', command: tsx('server.ts'), dir: 'examples/node-http' },
  { name: 'python', command: ['python3', 'receiver.py'], dir: 'examples/python' },
];

export type LogLine = Record<string, unknown> & { event?: string };

export interface RunningExample {
  name: string;
  /** The webhook URL it printed when listening. */
  url: string;
  /** Every JSON line it printed on stdout so far. */
  lines: LogLine[];
  waitFor(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

/** Starts an example on a free port (PORT=0) and resolves once it prints its URL. */
export async function startExample(spec: ExampleSpec, env: Record<string, string>, timeoutMs = 45_000): Promise<RunningExample> {
  const [cmd, ...args] = spec.command;
  const child = spawn(cmd, args, {
    cwd: path.join(ROOT, spec.dir),
    // examples/tsconfig.json maps 'sluice/webhooks' to src/receive for tsx.
    env: { ...process.env, ...env, PORT: '0', HOST: '127.0.0.1', TSX_TSCONFIG_PATH: path.join(ROOT, 'examples/tsconfig.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // If the test process ends without afterAll (a crash, a timeout), take the
  // server down with it rather than leave it listening.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
  const lines: LogLine[] = [];
  let stderr = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p));
      } catch {
        // a non-JSON line (framework banner): ignore
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000);
  });

  const waitFor = async (match: (l: LogLine) => boolean, ms = 5_000): Promise<LogLine> => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const hit = lines.find(match);
      if (hit) return hit;
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`${spec.name}: expected line not printed within ${ms} ms (exit ${child.exitCode}); stderr:\n${stderr}`);
  };

  try {
    const listening = await waitFor((l) => l.event === 'listening', timeoutMs);
    return { name: spec.name, url: String(listening.url), lines, waitFor, stop: () => stopChild(child) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}
