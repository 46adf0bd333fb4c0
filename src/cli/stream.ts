// `sluice stream add | ls | rm | pub`: streams through a running gateway's
// API (/api/streams), as `sluice rewind` and `sluice backfill` do.
import { apiTarget } from './api-target.js';
import { CliError } from './context.js';

export const STREAM_USAGE = `usage: sluice stream <command> [--url http://127.0.0.1:7376] [--token slk_…]

  add <stream> [--max-age 7d] [--max-size 20GB]   create a stream (its retention)
  ls                                               list streams
  rm <stream>                                      delete a stream and its messages
  pub <stream> <subject> <json> [--key K] [--idempotency-key I]
                                                   publish one message; prints its sequence

Subjects are dot-separated tokens of A-Z, a-z, 0-9, "_" and "-" (orders.new).
<json> is any JSON value ('{"id": 1}', '42', '"text"'). The token: --token,
SLUICE_TOKEN, or the one \`npm start\` keeps.`;

type Flags = Record<string, string | true>;

export async function streamCommand(positional: string[], flags: Flags, env = process.env, print: (text: string) => void = console.log): Promise<void> {
  const [command, ...args] = positional;
  if (flags.help || !command || command === '-h' || command === 'help') return print(STREAM_USAGE);
  const api = client(flags, env);
  switch (command) {
    case 'add': {
      const [name, extra] = args;
      if (!name || extra !== undefined) throw new CliError(STREAM_USAGE, 2);
      const retention = {
        ...(typeof flags['max-age'] === 'string' && { max_age: flags['max-age'] }),
        ...(typeof flags['max-size'] === 'string' && { max_size: flags['max-size'] }),
      };
      const s = await api('POST', '/api/streams', { name, ...(Object.keys(retention).length > 0 && { retention }) }, 'stream add refused');
      return print(`stream ${s.name} created (retention: ${s.retention.max_age}, ${s.retention.max_size})`);
    }
    case 'ls': {
      if (args.length > 0) throw new CliError(STREAM_USAGE, 2);
      const { data } = await api('GET', '/api/streams', undefined, 'stream ls refused');
      if (data.length === 0) return print('no streams (sluice stream add <name>)');
      return print(data.map((s: any) => `${s.name}  retention ${s.retention.max_age}, ${s.retention.max_size}`).join('\n'));
    }
    case 'rm': {
      const [name, extra] = args;
      if (!name || extra !== undefined) throw new CliError(STREAM_USAGE, 2);
      await api('DELETE', `/api/streams/${encodeURIComponent(name)}`, undefined, 'stream rm refused');
      return print(`stream ${name} deleted`);
    }
    case 'pub': {
      const [name, subject, json, extra] = args;
      if (!name || !subject || json === undefined || extra !== undefined) throw new CliError(STREAM_USAGE, 2);
      let data: unknown;
      try {
        data = JSON.parse(json);
      } catch (err) {
        throw new CliError(`<json> is not JSON (${(err as Error).message}); quote it for the shell: '{"id": 1}'`, 2);
      }
      const body = {
        subject,
        data,
        ...(typeof flags.key === 'string' && { key: flags.key }),
        ...(typeof flags['idempotency-key'] === 'string' && { idempotency_key: flags['idempotency-key'] }),
      };
      const { data: out } = await api('POST', `/api/streams/${encodeURIComponent(name)}/messages`, body, 'publish refused');
      return print(`published to ${name}: sequence ${out[0].sequence}${out[0].duplicate ? ' (a duplicate: published before with this idempotency key)' : ''}`);
    }
    default:
      throw new CliError(`unknown stream command "${command}"\n\n${STREAM_USAGE}`, 2);
  }
}

/** A call to the API: the parsed answer, or a one-line CliError with the API's summary. */
function client(flags: Flags, env: NodeJS.ProcessEnv) {
  const { base, headers } = apiTarget(flags, env);
  return async (method: string, path: string, body: unknown, refused: string): Promise<any> => {
    // No content-type without a body: fastify refuses an empty JSON body.
    const { 'content-type': _json, ...bare } = headers;
    const init = body === undefined ? { method, headers: bare } : { method, headers, body: JSON.stringify(body) };
    const res = await fetch(`${base}${path}`, init).catch((err: Error) => {
      throw new CliError(`cannot reach the gateway at ${base} (${err.message}); is it running? (--url or SLUICE_URL)`);
    });
    const answer = (await res.json().catch(() => ({}))) as { summary?: string };
    if (!res.ok) throw new CliError(`${refused} (${res.status}): ${answer.summary ?? 'no summary'}`);
    return answer;
  };
}
