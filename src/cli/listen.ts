// `sluice listen`: a local webhook receiver for development, in the spirit of
// `stripe listen`. It verifies each delivery exactly as a user's app should,
// prints what arrived, and answers as told (a fixed status, random failures,
// or whatever a local app answers when --forward passes the delivery on), so
// retries, backoff and dead letters can be rehearsed without writing a receiver.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { verifyWebhook, WebhookVerificationError, type Message, type VerifiedWebhook } from '../receive/index.js';
import { generateSecret, maskSecret, parseSecret, SecretFormatError } from '../signing/index.js';
import { CliError, parseArgs } from './context.js';

const USAGE = `usage: sluice listen [--port 7377] [--host 127.0.0.1] [--secret whsec_…] [--tolerance 300]
                    [--status 200 | --forward http://127.0.0.1:3000/webhooks] [--fail-rate 0.3]

  --secret     whsec_… (or whpk_…) to verify with; several separated by spaces. Default:
               SLUICE_WEBHOOK_SECRET, else a new secret is generated and printed.
  --status     status answered to every verified delivery (default 200)
  --fail-rate  fraction (0-1) of verified deliveries answered 500 on purpose
  --forward    POST the exact body and headers to this URL and answer with its status
  --tolerance  seconds webhook-timestamp may be off (default 300)`;

const FLAGS = new Set(['port', 'host', 'secret', 'tolerance', 'status', 'fail-rate', 'forward', 'help']);
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const FORWARD_TIMEOUT_MS = 30_000; // Sluice's default request timeout
// Not forwarded: they describe this hop's connection, not the delivery.
const HOP_HEADERS = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'expect', 'upgrade', 'te', 'trailer', 'proxy-connection']);

export interface ListenOptions {
  port: number;
  host: string;
  secrets: string[];
  /** The secret was made up here and must be shown in full once. */
  generatedSecret: boolean;
  status: number;
  failRate: number;
  forward?: string;
  toleranceSeconds: number;
}

function numberFlag(flags: Record<string, string | true>, name: string, fallback: number, ok: (n: number) => boolean, what: string): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!ok(n)) throw new CliError(`--${name} must be ${what}\n\n${USAGE}`, 2);
  return n;
}

export function parseListenArgs(args: string[], env: NodeJS.ProcessEnv = process.env): ListenOptions {
  const { positional, flags } = parseArgs(args);
  const unknown = [...positional.map((p) => `"${p}"`), ...Object.keys(flags).filter((f) => !FLAGS.has(f)).map((f) => `--${f}`)];
  if (flags.help) throw new CliError(USAGE, 0);
  if (unknown.length) throw new CliError(`sluice listen: unexpected ${unknown.join(', ')}\n\n${USAGE}`, 2);

  const rawSecret = typeof flags.secret === 'string' ? flags.secret : env.SLUICE_WEBHOOK_SECRET;
  const secrets = (rawSecret ?? '').split(/\s+/).filter(Boolean);
  for (const s of secrets) checkSecret(s);
  const generatedSecret = secrets.length === 0;
  if (generatedSecret) secrets.push(generateSecret());

  const forward = flags.forward === undefined ? undefined : String(flags.forward);
  if (forward !== undefined && !/^https?:\/\/[^/]/.test(forward)) throw new CliError('--forward must be an http:// or https:// URL', 2);
  if (forward !== undefined && flags.status !== undefined) {
    throw new CliError('--status and --forward exclude each other: with --forward the answer is the forward target\'s status', 2);
  }
  return {
    port: numberFlag(flags, 'port', 7377, (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'a port number'),
    host: typeof flags.host === 'string' ? flags.host : '127.0.0.1',
    secrets,
    generatedSecret,
    status: numberFlag(flags, 'status', 200, (n) => Number.isInteger(n) && n >= 200 && n <= 599, 'an HTTP status from 200 to 599'),
    failRate: numberFlag(flags, 'fail-rate', 0, (n) => n >= 0 && n <= 1, 'a fraction from 0 to 1'),
    forward,
    toleranceSeconds: numberFlag(flags, 'tolerance', 300, (n) => Number.isFinite(n) && n >= 0, 'a number of seconds >= 0'),
  };
}

function checkSecret(secret: string): void {
  try {
    if (parseSecret(secret).kind === 'ed25519-private') {
      throw new CliError('--secret: a whsk_ key signs; give its whpk_ public key to verify', 2);
    }
  } catch (err) {
    if (err instanceof SecretFormatError) throw new CliError(`--secret: ${err.message}`, 2);
    throw err;
  }
}

export interface Listener {
  /** http://host:port of the receiver (any path is accepted). */
  url: string;
  close(): Promise<void>;
}

/** Starts the receiver; every line it prints goes through `print`. */
export async function startListener(
  opts: ListenOptions,
  print: (text: string) => void = (t) => process.stdout.write(t + '\n'),
  random: () => number = Math.random,
): Promise<Listener> {
  const server = createServer((req, res) => {
    handle(req, res, opts, random).then(print, (err: unknown) => {
      // A bug here must not take the dev receiver down; Sluice will retry.
      print(`${clock()}  error: ${(err as Error).message}`);
      if (!res.headersSent) reply(res, 500, { error: 'internal' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive sockets would hold close() open
      }),
  };
}

/** Handles one request and returns the text to print for it (one block, so concurrent deliveries never interleave). */
async function handle(req: IncomingMessage, res: ServerResponse, opts: ListenOptions, random: () => number): Promise<string> {
  const head = `${clock()}  ${req.method} ${req.url}`;
  if (req.method !== 'POST') {
    reply(res, 405, { error: 'method_not_allowed' });
    return `${head}  -> 405 (deliveries are POSTs)`;
  }
  const body = await readBody(req);
  if (body === null) {
    reply(res, 413, { error: 'body_too_large' }, true);
    return `${head}  -> 413 body larger than ${MAX_BODY_BYTES} bytes`;
  }
  let webhook: VerifiedWebhook;
  try {
    webhook = verifyWebhook(body, req.headers, opts.secrets, { toleranceSeconds: opts.toleranceSeconds });
  } catch (err) {
    if (!(err instanceof WebhookVerificationError)) throw err;
    reply(res, 400, { error: err.code, message: err.message });
    const id = req.headers['webhook-id'] ?? req.headers['svix-id'] ?? '-';
    return `${head}  webhook-id ${id}\n  VERIFICATION FAILED (${err.code}): ${err.message}\n  -> 400`;
  }
  const lines = [`${head}  ${describe(webhook)}`, ...webhook.data.map(describeMessage)];

  if (opts.failRate > 0 && random() < opts.failRate) {
    reply(res, 500, { error: 'failed on purpose (sluice listen --fail-rate)' });
    lines.push(`  -> 500 (failed on purpose, --fail-rate ${opts.failRate})`);
  } else if (opts.forward) {
    lines.push(await forward(req, res, body, opts.forward));
  } else {
    reply(res, opts.status, opts.status < 300 ? { received: webhook.data.length } : { error: `answered ${opts.status} (sluice listen --status)` });
    lines.push(`  -> ${opts.status}`);
  }
  return lines.join('\n');
}

/** The bytes as received, or null past MAX_BODY_BYTES (then the rest is not read). */
async function readBody(req: IncomingMessage): Promise<Buffer<ArrayBuffer> | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function reply(res: ServerResponse, status: number, body: unknown, close = false): void {
  if (close) res.setHeader('connection', 'close');
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function describe(w: VerifiedWebhook): string {
  const attempt = new Date(w.timestamp * 1000).toISOString().replace('.000Z', 'Z');
  const count = `${w.data.length} message${w.data.length === 1 ? '' : 's'}`;
  return `webhook-id ${w.id}  attempt ${attempt}  ${count}${w.batched ? '' : ' (unbatched)'}`;
}

function describeMessage(raw: Message): string {
  // Verified means "sent by Sluice", not "shaped as expected": print what is there.
  const m = raw as Partial<Message> | null;
  const meta = m?.metadata;
  if (!meta) return '    (not a Sluice message: no metadata)';
  const table = `${meta.table_schema}.${meta.table_name}`;
  const key = Array.isArray(meta.record_pks) ? meta.record_pks.join(',') : '?';
  let changed = '';
  if (m.action === 'update' && m.changes && typeof m.changes === 'object') {
    const cols = Object.keys(m.changes);
    changed = cols.length ? `  changed: ${cols.join(', ')}` : '  changed: unknown (old row not sent)';
  }
  return `    ${meta.consumer?.name ?? '?'}  ${table}  ${m.action}  key ${key}${changed}`;
}

/** Passes the delivery on unchanged and answers with the target's status (502/504 when it cannot be reached). */
async function forward(req: IncomingMessage, res: ServerResponse, body: Buffer<ArrayBuffer>, url: string): Promise<string> {
  const headers = new Headers();
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (!HOP_HEADERS.has(name)) for (const v of values ?? []) headers.append(name, v);
  }
  const started = Date.now();
  try {
    const target = await fetch(url, {
      method: 'POST',
      headers,
      body,
      redirect: 'manual', // Sluice does not follow redirects either
      signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
    });
    const answer = Buffer.from(await target.arrayBuffer());
    res.writeHead(target.status, { 'content-type': target.headers.get('content-type') ?? 'text/plain' }).end(answer);
    const excerpt = answer.subarray(0, 200).toString('utf8').replace(/\s+/g, ' ');
    return `  -> forwarded to ${url}: ${target.status} in ${Date.now() - started} ms${excerpt ? `  ${excerpt}` : ''}`;
  } catch (err) {
    const timedOut = (err as Error).name === 'TimeoutError';
    const status = timedOut ? 504 : 502;
    const why = timedOut ? `no answer within ${FORWARD_TIMEOUT_MS} ms` : causeOf(err);
    reply(res, status, { error: `forward to ${url} failed: ${why}` });
    return `  -> ${status}: forward to ${url} failed: ${why}`;
  }
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

function clock(): string {
  return new Date().toISOString().slice(11, 19);
}

export async function listenCommand(args: string[]): Promise<void> {
  let opts: ListenOptions;
  try {
    opts = parseListenArgs(args);
  } catch (err) {
    // --help is not an error: print it and exit 0.
    if (err instanceof CliError && err.exitCode === 0) return void console.log(err.message);
    throw err;
  }
  const listener = await startListener(opts);
  // A secret given to us is never echoed in full (terminals get recorded); a new one must be.
  const secretLine = opts.generatedSecret
    ? `  verifying with a NEW secret: ${opts.secrets[0]}\n` +
      `    put it in the consumer's webhook.secrets; pass --secret or SLUICE_WEBHOOK_SECRET to keep one`
    : `  verifying with ${opts.secrets.map(maskSecret).join(' ')}`;
  const answer = opts.forward ? `forwarding to ${opts.forward}` : `answering ${opts.status}`;
  const failing = opts.failRate > 0 ? `, failing ${Math.round(opts.failRate * 100)}% with 500` : '';
  console.log(
    `sluice listen: receiving webhooks on ${listener.url} (any path)\n${secretLine}\n` +
      `  timestamp tolerance ${opts.toleranceSeconds} s; ${answer}${failing}\nCtrl-C to stop.`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => void listener.close().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
