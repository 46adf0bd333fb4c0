// Reading the three Standard Webhooks headers from whatever the framework hands
// over, and the replay-window check on the timestamp.

import { WebhookVerificationError } from './errors.js';
import type { HeaderRecord, VerifyOptions, WebhookHeadersInput } from './types.js';

export interface SignedHeaders {
  id: string;
  timestamp: number;
  signature: string;
}

const NAMES = ['id', 'timestamp', 'signature'] as const;
export const DEFAULT_TOLERANCE_SECONDS = 300;

function isHeadersLike(h: WebhookHeadersInput): h is { get(name: string): string | null } {
  return typeof (h as { get?: unknown }).get === 'function';
}

/** Case-insensitive lookup; a repeated header (string[]) is joined with spaces. */
function fromRecord(headers: HeaderRecord, name: string): string | undefined {
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() !== name) continue;
    const value = headers[key];
    if (value == null) continue;
    return typeof value === 'string' ? value : value.join(' ');
  }
  return undefined;
}

function lookup(headers: WebhookHeadersInput, name: string): string | undefined {
  const value = isHeadersLike(headers) ? headers.get(name) : fromRecord(headers, name);
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

export function readSignedHeaders(headers: WebhookHeadersInput, options: VerifyOptions = {}): SignedHeaders {
  if (headers == null || typeof headers !== 'object') {
    throw new WebhookVerificationError('missing_header', 'no headers were given');
  }
  const found: Record<string, string> = {};
  for (const name of NAMES) {
    // Svix sends the same values under svix-*; accept them when webhook-* is absent.
    const value = lookup(headers, `webhook-${name}`) ?? lookup(headers, `svix-${name}`);
    if (value === undefined) {
      throw new WebhookVerificationError('missing_header', `missing required header webhook-${name}`);
    }
    found[name] = value;
  }
  return { id: found.id, timestamp: checkTimestamp(found.timestamp, options), signature: found.signature };
}

/** Rejects anything but plain Unix seconds, then anything outside the tolerance window. */
export function checkTimestamp(raw: string, options: VerifyOptions): number {
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (!(tolerance >= 0) || !Number.isFinite(tolerance)) {
    throw new RangeError('toleranceSeconds must be a finite number >= 0');
  }
  const ts = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(ts)) {
    throw new WebhookVerificationError('invalid_timestamp', 'webhook-timestamp is not a Unix time in seconds');
  }
  const now = Math.floor((options.now ? options.now() : new Date()).getTime() / 1000);
  if (now - ts > tolerance) {
    throw new WebhookVerificationError(
      'timestamp_too_old',
      `webhook-timestamp is ${now - ts} s in the past (tolerance ${tolerance} s): a replay, or a clock that is off`,
    );
  }
  if (ts - now > tolerance) {
    throw new WebhookVerificationError(
      'timestamp_too_new',
      `webhook-timestamp is ${ts - now} s in the future (tolerance ${tolerance} s): check the clocks`,
    );
  }
  return ts;
}
