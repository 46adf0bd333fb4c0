// One logger for the process: pino (the same one fastify uses), JSON lines on
// stdout; pretty enough in a terminal because every line has a short msg.
// Secrets never reach it: connection strings are masked before logging
// (maskUrl), and webhook secrets/header values are never passed in.
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
