// Runs a TypeScript fixture as a real child process (through tsx), with its
// output collected, so a test can wait for a line or kill -9 it.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface Child {
  proc: ChildProcess;
  output: string[];
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export function runFixture(
  file: string,
  env: Record<string, string | undefined>,
  opts: { args?: string[]; cwd?: string; /** Flags for node itself (a heap limit). */ nodeArgs?: string[] } = {},
): Child {
  // node --import tsx, not the tsx CLI: the CLI runs the script in a second
  // process, which a SIGKILL of the first would leave running.
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', path.resolve(opts.cwd ?? '.', file), ...(opts.args ?? [])], {
    cwd: opts.cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const waiters = new Set<() => void>();
  let partial = '';
  const onData = (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    output.push(...lines);
    for (const w of waiters) w();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  // After 'close' all output has been read: a line not seen by then never comes.
  const closed = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  return {
    proc,
    output,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = output.find((l) => pattern.test(l));
          if (hit) {
            waiters.delete(check);
            clearTimeout(t);
            resolve(hit);
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; output:\n${output.slice(-20).join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
        void closed.then(() => {
          if (!waiters.delete(check)) return;
          clearTimeout(t);
          reject(new Error(`exited (${proc.exitCode ?? proc.signalCode}) with no line matching ${pattern}; output:\n${output.slice(-20).join('\n')}`));
        });
      });
    },
    async kill9() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * `sluice <args>` as a child process, to its end (bounded: killed after 30 s).
 * Not spawnSync: a gateway or app serving it may run in the test's own process.
 */
export function runCli(args: string[], env: Record<string, string | undefined>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
