// One logger for the process: pino (the same one fastify uses), JSON lines on
// stdout; pretty enough in a terminal because every line has a short msg.
// Secrets never reach it: connection strings are masked before logging
// (maskUrl), and webhook secrets/header values are never passed in.
import pg from 'pg';
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: undefined,
    redact: { paths: ['*.password', '*.secret', '*.secrets', '*.token', 'req.headers.authorization'], censor: '[redacted]' },
  });
}

/**
 * A connection string without its password, wherever it is given:
 * postgres://user:secret@host/db?password=x → postgres://user:****@host/db?password=****.
 * The one masking of URLs for logs, API responses and config plans.
 */
export function maskUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Validated URLs always parse; anything else is shown as nothing at all.
    return '(unparsable URL)';
  }
  if (u.password) u.password = '****';
  if (u.searchParams.has('password')) u.searchParams.set('password', '****');
  return u.toString();
}

/** What a database error may show: where it came from, never the values involved. */
const DB_ERROR_FIELDS = ['code', 'severity', 'routine', 'schema', 'table', 'column', 'dataType', 'constraint'] as const;

function isDatabaseError(err: Error): err is Error & Record<(typeof DB_ERROR_FIELDS)[number], string | undefined> {
  return err instanceof pg.DatabaseError || ('routine' in err && 'severity' in err);
}

/**
 * An error as it may be logged. A Postgres error's message, detail, context
 * (`where`), hint and internal query can quote the values a statement was given
 * (a source's connection string, a webhook's header values), and so can a JSON
 * SyntaxError's message: those are left out, along with any other property an
 * error carries (Node's URL errors keep their `input`). Stack frames name code,
 * never values. Log it under `error`, not `err`: pino's err serializer would
 * take the plain object for an Error and call its type "Object".
 */
export function safeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { type: typeof err };
  const frames = (err.stack ?? '').split('\n').filter((l) => l.startsWith('    at ')).join('\n');
  if (isDatabaseError(err)) {
    const out: Record<string, unknown> = { type: 'DatabaseError' };
    for (const key of DB_ERROR_FIELDS) if (err[key] !== undefined) out[key] = err[key];
    return { ...out, stack: frames };
  }
  const code = (err as { code?: unknown }).code;
  return {
    type: err.name,
    ...(typeof code === 'string' && { code }),
    ...(!(err instanceof SyntaxError) && { message: err.message }),
    stack: frames,
  };
}
