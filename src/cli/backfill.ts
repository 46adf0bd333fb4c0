// `sluice backfill <consumer>`: starts a backfill through a running gateway's
// API (POST /api/consumers/{name}/backfills) and follows its progress until it
// ends: a bar redrawn in place on a terminal, a plain line every few seconds
// otherwise (logs, CI). Ctrl-C stops following, not the backfill.
import { apiTarget } from './api-target.js';
import { CliError } from './context.js';

export const BACKFILL_USAGE = `usage: sluice backfill <consumer> [--table T] [--column C --from V] [--chunk-size N]
                       [--max-rows-per-second N] [--detach] [--url http://127.0.0.1:7376] [--token slk_…]

Sends the consumer the rows its tables already hold (each of them, or --table),
as "read" messages interleaved with its live changes, and shows the progress.
  --column C --from V    only rows whose column C is at or after V, in C's order
  --chunk-size N         rows read per chunk (default 5000)
  --max-rows-per-second N  throttle
  --detach               start it and return; follow with GET …/backfills`;

interface View {
  id: string;
  table: string;
  state: string;
  rows_read: number;
  rows_estimate: number | null;
  rate_per_second: number | null;
  eta_seconds: number | null;
  error: string | null;
}

const POLL_MS = 1000;
const PLAIN_EVERY_MS = 5000;

function intFlag(flags: Record<string, string | true>, name: string): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v)) throw new CliError(`--${name} needs a whole number\n\n${BACKFILL_USAGE}`, 2);
  return Number(v);
}

export function progressLine(b: View, width = 30): string {
  const total = b.rows_estimate ?? 0;
  const frac = b.state === 'done' ? 1 : total > 0 ? Math.min(1, b.rows_read / total) : 0;
  const filled = Math.round(frac * width);
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  const rate = b.rate_per_second ? ` ${b.rate_per_second.toLocaleString('en')}/s` : '';
  const eta = b.state === 'running' && b.eta_seconds !== null ? ` ${b.eta_seconds}s left` : '';
  const of = total ? ` of ~${total.toLocaleString('en')}` : '';
  const end = b.state === 'running' ? '' : ` ${b.state}${b.error ? `: ${b.error}` : ''}`;
  return `${b.table} [${bar}] ${b.rows_read.toLocaleString('en')}${of} rows${rate}${eta}${end}`;
}

export async function backfillCommand(
  positional: string[],
  flags: Record<string, string | true>,
  env = process.env,
  out: { write(s: string): void; isTTY?: boolean } = process.stdout,
): Promise<void> {
  const [consumer, extra] = positional;
  if (flags.help || consumer === '-h') return void out.write(BACKFILL_USAGE + '\n');
  if (!consumer || extra !== undefined) throw new CliError(BACKFILL_USAGE, 2);
  if ((flags.column === undefined) !== (flags.from === undefined)) throw new CliError(`--column and --from go together\n\n${BACKFILL_USAGE}`, 2);
  const body: Record<string, unknown> = {};
  if (typeof flags.table === 'string') body.table = flags.table;
  if (typeof flags.column === 'string' && typeof flags.from === 'string') body.start = { column: flags.column, from: flags.from };
  const chunk = intFlag(flags, 'chunk-size');
  if (chunk !== undefined) body.chunk_size = chunk;
  const rate = intFlag(flags, 'max-rows-per-second');
  if (rate !== undefined) body.max_rows_per_second = rate;

  const { base, headers } = apiTarget(flags, env);
  const path = `${base}/api/consumers/${encodeURIComponent(consumer)}/backfills`;
  const call = async (url: string, init?: RequestInit) => {
    const res = await fetch(url, { headers, ...init }).catch((err: Error) => {
      throw new CliError(`cannot reach the gateway at ${base} (${err.message}); is it running? (--url or SLUICE_URL)`);
    });
    const json = (await res.json().catch(() => ({}))) as { summary?: string; data?: View[] } & View;
    if (!res.ok) throw new CliError(`backfill refused (${res.status}): ${json.summary ?? 'no summary'}`);
    return json;
  };
  const started = (await call(path, { method: 'POST', body: JSON.stringify(body) })).data ?? [];
  for (const b of started) out.write(`${consumer}: backfill ${b.id} of ${b.table} started\n`);
  if (flags.detach) return;

  const tty = Boolean(out.isTTY);
  let lastPlain = 0;
  let drawn = 0;
  for (;;) {
    const views = await Promise.all(started.map((b) => call(`${path}/${b.id}`)));
    const lines = views.map((v) => progressLine(v));
    const ended = views.every((v) => v.state !== 'running');
    if (tty) {
      // Redraw in place: up over the lines drawn last time, clear each.
      if (drawn) out.write(`\x1b[${drawn}A`);
      for (const l of lines) out.write(`\x1b[2K${l}\n`);
      drawn = lines.length;
    } else if (ended || Date.now() - lastPlain >= PLAIN_EVERY_MS) {
      for (const l of lines) out.write(l + '\n');
      lastPlain = Date.now();
    }
    if (ended) {
      const failed = views.filter((v) => v.state === 'failed');
      if (failed.length) throw new CliError(`backfill failed: ${failed.map((v) => `${v.table}: ${v.error}`).join('; ')}`);
      return;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
