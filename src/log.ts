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

/** postgres://user:secret@host/db → postgres://user:***@host/db */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparsable url]';
  }
}
