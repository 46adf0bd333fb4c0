// `sluice rewind <consumer> --to <point>`: asks a running gateway's API
// (POST /api/consumers/{name}/rewind) to deliver the consumer's retained
// changes again from a point on, and says how many that is.
import { apiTarget } from './api-target.js';
import { CliError } from './context.js';

export const REWIND_USAGE = `usage: sluice rewind <consumer> --to <point> [--url http://127.0.0.1:7376] [--token slk_…]

Delivers again every change of the consumer's tables that the log retains from
<point> on, in order per group; live changes keep flowing meanwhile.
  <point>  earliest                the oldest retained change
           2026-12-01T09:30:00Z    the first change committed at or after this time (RFC 3339)
           16/B374D848             changes committed at or after this LSN
A redelivered change keeps its idempotency key; webhook deliveries get a new
webhook-id. The token: --token, SLUICE_TOKEN, or the one \`npm start\` keeps.`;

interface Reply {
  redelivering?: number;
  from?: { commit_lsn: string | null; committed_at: string | null };
  summary?: string;
}

export async function rewindCommand(
  positional: string[],
  flags: Record<string, string | true>,
  env = process.env,
  print: (text: string) => void = console.log,
): Promise<void> {
  const [consumer, extra] = positional;
  if (flags.help || consumer === '-h') return print(REWIND_USAGE);
  if (!consumer || extra !== undefined || typeof flags.to !== 'string') throw new CliError(REWIND_USAGE, 2);
  const { base, headers } = apiTarget(flags, env);
  const url = `${base}/api/consumers/${encodeURIComponent(consumer)}/rewind`;
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ to: flags.to }) }).catch((err: Error) => {
    throw new CliError(`cannot reach the gateway at ${base} (${err.message}); is it running? (--url or SLUICE_URL)`);
  });
  const body = (await res.json().catch(() => ({}))) as Reply;
  if (!res.ok) throw new CliError(`rewind refused (${res.status}): ${body.summary ?? 'no summary'}`);
  const n = body.redelivering ?? 0;
  const from = body.from?.commit_lsn ? `, from LSN ${body.from.commit_lsn} (committed ${body.from.committed_at})` : '';
  print(`${consumer}: ${n} retained change${n === 1 ? '' : 's'} will be delivered again${from}.`);
}
