// What a delivery's result means, and when to try again (shared/spec/webhooks.md
// "Responses" and "Retries"). Pure functions: the worker persists their answer.
import type { WebhookSettings } from '../config/types.js';

export type Retry = WebhookSettings['retry'];

export const DEFAULT_DISABLE_AFTER_MS = 5 * 24 * 60 * 60 * 1000;

/** Statuses whose Retry-After is honoured. */
const RETRY_AFTER_STATUSES = new Set([429, 502, 503, 504]);

export type Verdict =
  | { kind: 'ack' }
  | { kind: 'pause'; reason: string }
  | { kind: 'fail'; retryAfterMs: number | null };

/** A response (status) or no response (null) → what to do with the batch. */
export function verdict(status: number | null, retryAfter: string | null, now = Date.now()): Verdict {
  if (status !== null && status >= 200 && status < 300) return { kind: 'ack' };
  if (status === 410) {
    return { kind: 'pause', reason: 'the endpoint answered 410 Gone; resume the consumer once it accepts deliveries again' };
  }
  const honoured = status !== null && RETRY_AFTER_STATUSES.has(status) ? parseRetryAfter(retryAfter, now) : null;
  return { kind: 'fail', retryAfterMs: honoured };
}

/** Retry-After as delay-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | null {
  if (!value) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  // Only IMF-fixdate-like dates: Date.parse also reads things like "1", which the check above owns.
  if (Number.isNaN(at) || !/[a-z]/i.test(text)) return null;
  return Math.max(0, at - now);
}

/**
 * Delay before attempt `attempt + 1`, after attempt `attempt` (1-based) failed:
 * min(cap, initial * factor^(attempt-1)) with equal jitter (half fixed, half
 * random), so retries of many batches spread out but never come much sooner
 * than the schedule says. A Retry-After is a floor (never sooner than the
 * endpoint asked), still under the cap.
 */
export function retryDelayMs(retry: Retry, attempt: number, retryAfterMs: number | null, random = Math.random): number {
  const exp = retry.initial_ms * Math.pow(retry.factor, Math.max(0, attempt - 1));
  const base = Math.min(retry.cap_ms, Number.isFinite(exp) ? exp : retry.cap_ms);
  const jittered = base / 2 + random() * (base / 2);
  const floor = retryAfterMs ?? 0;
  return Math.round(Math.min(retry.cap_ms, Math.max(jittered, floor)));
}

/** No attempt after this one: max_attempts reached, or the first attempt is older than max_age. */
export function exhausted(retry: Retry, attempt: number, firstAttemptAt: Date, now = Date.now()): boolean {
  if (retry.max_attempts !== undefined && attempt >= retry.max_attempts) return true;
  if (retry.max_age_ms !== undefined && now - firstAttemptAt.getTime() >= retry.max_age_ms) return true;
  return false;
}
