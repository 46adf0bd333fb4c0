// `sluice transform test <consumer>`: asks a running gateway's API
// (POST /api/consumers/{name}/transform/test) to run a filter and a transform
// on a sample message or on the latest retained change, and prints the verdict
// and the output. Exit 1 when the transform fails on the message.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { apiTarget } from './api-target.js';
import { CliError } from './context.js';

export const TRANSFORM_TEST_USAGE = `usage: sluice transform test <consumer> [what to try] [on what] [--url http://127.0.0.1:7376] [--token slk_…]

Runs a transform (and the consumer's filter) on one message and prints what the
consumer would be sent, or why the message would become a dead letter.
Nothing is saved or delivered.

What to try (default: the consumer's own transform):
  --function FILE     a JavaScript function (message) => value, from a file
  --path PATH         a message path, such as record
  --transform FILE    a transform as YAML or JSON: {path: …}, {template: {…}} or {function: …}
On what (default: the latest retained change of any of the consumer's tables):
  --table TABLE       the latest retained change of this table
  --message FILE      a sample message (JSON; - reads stdin)
The token: --token, SLUICE_TOKEN, or the one \`npm start\` keeps.`;

interface Reply {
  input?: unknown;
  from?: { kind: string; commit_lsn?: string; commit_idx?: number };
  filter?: { passed: boolean; reason: string | null };
  output?: unknown;
  error?: string | null;
  summary?: string;
  validation_errors?: Record<string, string[]>;
}

export async function transformTestCommand(
  positional: string[],
  flags: Record<string, string | true>,
  env = process.env,
  print: (text: string) => void = console.log,
  readStdin: () => string = () => readFileSync(0, 'utf8'),
): Promise<void> {
  const [sub, consumer, extra] = positional;
  if (flags.help || sub === '-h') return print(TRANSFORM_TEST_USAGE);
  if (sub !== 'test' || !consumer || extra !== undefined) throw new CliError(TRANSFORM_TEST_USAGE, 2);
  const body: Record<string, unknown> = {};
  const forms = ['function', 'path', 'transform'].filter((f) => flags[f] !== undefined);
  if (forms.length > 1) throw new CliError(`give one of --function, --path, --transform, not ${forms.map((f) => '--' + f).join(' and ')}`, 2);
  if (typeof flags.function === 'string') body.transform = { function: readText(flags.function, readStdin) };
  if (typeof flags.path === 'string') body.transform = { path: flags.path };
  if (typeof flags.transform === 'string') body.transform = parseFile(flags.transform, readText(flags.transform, readStdin), 'a transform');
  if (typeof flags.table === 'string') body.table = flags.table;
  if (typeof flags.message === 'string') body.message = parseFile(flags.message, readText(flags.message, readStdin), 'a message');

  const { base, headers } = apiTarget(flags, env);
  const url = `${base}/api/consumers/${encodeURIComponent(consumer)}/transform/test`;
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) }).catch((err: Error) => {
    throw new CliError(`cannot reach the gateway at ${base} (${err.message}); is it running? (--url or SLUICE_URL)`);
  });
  const reply = (await res.json().catch(() => ({}))) as Reply;
  if (!res.ok) {
    const details = Object.entries(reply.validation_errors ?? {}).map(([k, v]) => `\n  ${k}: ${v.join('; ')}`).join('');
    throw new CliError(`transform test refused (${res.status}): ${reply.summary ?? 'no summary'}${details}`);
  }
  const from = reply.from?.kind === 'log' ? `the latest retained change (LSN position ${reply.from.commit_lsn}:${reply.from.commit_idx})` : 'the sample message';
  print(`On ${from}:`);
  print(reply.filter?.passed ? '  filter: passes (it would be delivered)' : `  filter: filtered out: ${reply.filter?.reason}`);
  if (reply.error) {
    print(`  transform failed: ${reply.error}\n  (a message like this would become a dead letter)`);
    throw new CliError('the transform failed on this message', 1);
  }
  print(JSON.stringify(reply.output, null, 2));
}

function readText(file: string, readStdin: () => string): string {
  try {
    return file === '-' ? readStdin() : readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`, 2);
  }
}

function parseFile(file: string, text: string, what: string): unknown {
  try {
    return parseYaml(text);
  } catch (err) {
    throw new CliError(`${file} is not ${what} in YAML or JSON: ${(err as Error).message}`, 2);
  }
}
