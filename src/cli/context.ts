// What every CLI command needs: the config file and the buffer database.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import type { SluiceConfig } from '../config/types.js';

export const DEFAULT_CONFIG = 'config/sluice.yaml';

/** Where `npm start` keeps the embedded Postgres and its notes (git-ignored). */
export function dataDir(env = process.env): string {
  return path.resolve(env.SLUICE_DATA_DIR ?? '.sluice');
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** `--name value` or `--name=value`; flags without a value are booleans. */
export function parseArgs(args: string[]): { positional: string[]; flags: Record<string, string | true> } {
  const positional: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0) flags[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < args.length && !args[i + 1].startsWith('--')) flags[a.slice(2)] = args[++i];
    else flags[a.slice(2)] = true;
  }
  return { positional, flags };
}

export function configPath(flags: Record<string, string | true>, env = process.env): string {
  const f = flags.config ?? flags.c;
  return typeof f === 'string' ? f : (env.SLUICE_CONFIG ?? DEFAULT_CONFIG);
}

/** Loads and validates; a bad file stops here, before any database is touched. */
export function readConfig(file: string, env = process.env): SluiceConfig {
  if (!existsSync(file)) throw new CliError(`${file}: no such config file (pass --config <file> or set SLUICE_CONFIG)`, 2);
  return loadConfig(file, env);
}

interface EmbeddedNote {
  url: string;
  pid: number;
}

export function writeEmbeddedNote(note: EmbeddedNote, env = process.env): void {
  mkdirSync(dataDir(env), { recursive: true });
  writeFileSync(path.join(dataDir(env), 'embedded.json'), JSON.stringify(note) + '\n', { mode: 0o600 });
}

/** The note of the `npm start` running from this data folder, if its process is alive. */
export function runningEmbedded(env = process.env): EmbeddedNote | undefined {
  const file = path.join(dataDir(env), 'embedded.json');
  if (!existsSync(file)) return undefined;
  try {
    const note = JSON.parse(readFileSync(file, 'utf8')) as EmbeddedNote;
    process.kill(note.pid, 0);
    return note;
  } catch {
    return undefined;
  }
}

/** The buffer database for commands that do not start one: DATABASE_URL, the config, or a running `npm start`. */
export function bufferUrlForCommand(config: SluiceConfig | null, env = process.env): string {
  const url = env.DATABASE_URL || config?.buffer.url || runningEmbedded(env)?.url;
  if (!url) {
    throw new CliError(
      'no buffer database: set DATABASE_URL, or run `npm start` in another terminal (its embedded Postgres is found through .sluice/embedded.json)',
    );
  }
  return url;
}
