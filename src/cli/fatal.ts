// What the `sluice` command prints when it fails: one line and an exit code,
// whatever was thrown (an Error, or a library's bare rejection: undefined, a
// string, an object), never a stack trace unless LOG_LEVEL=debug asks for one.
import { inspect } from 'node:util';
import { ConfigError } from '../config/load.js';
import { CliError } from './context.js';

export interface Failure {
  text: string;
  exitCode: number;
  stack?: string;
}

export function describeFailure(err: unknown): Failure {
  if (err instanceof ConfigError) return { text: err.message, exitCode: 2 };
  if (err instanceof CliError) return { text: err.message, exitCode: err.exitCode };
  if (err instanceof Error) return { text: `sluice: ${err.message || err.name}`, exitCode: 1, stack: err.stack };
  const what = err === undefined || err === null ? `no reason given (${String(err)})` : typeof err === 'string' ? err : inspect(err, { breakLength: Infinity, depth: 2 });
  return { text: `sluice: failed: ${what}`, exitCode: 1 };
}
