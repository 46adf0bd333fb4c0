// Where CLI commands that talk to a running gateway's HTTP API (tail, rewind)
// send their requests, and with which token.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CliError, dataDir } from './context.js';

export interface ApiTarget {
  /** http://host:port, without a trailing slash. */
  base: string;
  headers: Record<string, string>;
}

/** --url or SLUICE_URL (default the gateway's default address), and the token of resolveToken. */
export function apiTarget(flags: Record<string, string | true>, env: NodeJS.ProcessEnv): ApiTarget {
  const base = String(flags.url ?? env.SLUICE_URL ?? 'http://127.0.0.1:7376').replace(/\/$/, '');
  return { base, headers: { authorization: `Bearer ${resolveToken(flags, env)}`, 'content-type': 'application/json' } };
}

/**
 * --token, SLUICE_TOKEN, or the admin token `npm start` keeps for its embedded
 * default (.sluice/admin-token), so no secret has to be typed on a command
 * line (npm echoes its scripts' arguments to the terminal).
 */
function resolveToken(flags: Record<string, string | true>, env: NodeJS.ProcessEnv): string {
  if (typeof flags.token === 'string') return flags.token;
  if (env.SLUICE_TOKEN) return env.SLUICE_TOKEN;
  const file = path.join(dataDir(env), 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw new CliError(
    `a token is needed: SLUICE_TOKEN=slk_… or --token slk_… (with the embedded default, \`npm start\` keeps its admin token in ${file}, read when neither is given)`,
    2,
  );
}
