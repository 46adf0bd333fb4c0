// Values of pull requests, checked beyond what the JSON schemas say: ranges,
// duration strings, and numbers that arrive as strings in a query string.
import { invalidValues, type FieldErrors } from './errors.js';

export const BATCH_SIZE_MIN = 1;
export const BATCH_SIZE_MAX = 1000;
export const BATCH_SIZE_DEFAULT = 1;
export const WAIT_FOR_MIN_MS = 500;
export const WAIT_FOR_MAX_MS = 300_000;
/** SQS's ceiling for a visibility timeout: 12 hours. */
export const VISIBILITY_MAX_MS = 43_200_000;
export const ACK_IDS_MAX = 10_000;

export interface ReceiveParams {
  batchSize: number;
  /** 0: return at once. */
  waitMs: number;
}

type Raw = Record<string, unknown> | undefined;

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** "5s" → 5000; 5000 or "5000" → 5000 (milliseconds); null when unparsable (" 5s" and "5 s" too: exactly as documented). */
export function parseDurationMs(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^(\d{1,9})(ms|s|m)?$/.exec(v);
  if (!m) return null;
  return Number(m[1]) * DURATION_UNITS_MS[m[2] ?? 'ms'];
}

function parseInteger(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : null;
  if (typeof v === 'string' && /^\d{1,9}$/.test(v)) return Number(v);
  return null;
}

/**
 * Receive parameters from the query string and/or a JSON body (the body wins
 * when both name a field). `batch_size` and Sequin's `max_batch_size` are
 * synonyms.
 */
export function parseReceiveParams(query: Raw, body: Raw): ReceiveParams {
  const pick = (k: string) => (body && body[k] !== undefined ? body[k] : query?.[k]);
  const errors: FieldErrors = {};
  let batchSize = BATCH_SIZE_DEFAULT;
  for (const field of ['max_batch_size', 'batch_size']) {
    const raw = pick(field);
    if (raw === undefined) continue;
    const n = parseInteger(raw);
    if (n === null || n < BATCH_SIZE_MIN || n > BATCH_SIZE_MAX) {
      errors[field] = [`must be an integer from ${BATCH_SIZE_MIN} to ${BATCH_SIZE_MAX}`];
    } else {
      batchSize = n;
    }
  }
  let waitMs = 0;
  const rawWait = pick('wait_for');
  if (rawWait !== undefined) {
    const ms = parseDurationMs(rawWait);
    if (ms === null || ms < WAIT_FOR_MIN_MS || ms > WAIT_FOR_MAX_MS) {
      errors.wait_for = [
        `must be milliseconds from ${WAIT_FOR_MIN_MS} to ${WAIT_FOR_MAX_MS}, or a duration such as "500ms", "5s" or "1m" in that range`,
      ];
    } else {
      waitMs = ms;
    }
  }
  if (Object.keys(errors).length) throw invalidValues(errors);
  return { batchSize, waitMs };
}

/** `visibility_timeout_ms` of modify-visibility: 0 (visible now) to 12 h. */
export function parseVisibilityMs(v: unknown): number {
  const n = parseInteger(v);
  if (n === null || n < 0 || n > VISIBILITY_MAX_MS) {
    throw invalidValues({ visibility_timeout_ms: [`must be an integer from 0 to ${VISIBILITY_MAX_MS}`] });
  }
  return n;
}
