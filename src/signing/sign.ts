// Signing webhook deliveries (Standard Webhooks v1 / v1a). createSigner parses
// and imports the keys once; the returned function is what runs per POST.

import { createHmac, sign as edSign } from 'node:crypto';
import { parseSecret, SecretFormatError, type ParsedSecret } from './secrets.js';

/** A `whsec_…` / `whsk_…` string, or the result of parseSecret(). */
export type SigningKey = string | ParsedSecret;

export interface SignInput {
  /** webhook-id: the delivery id, unchanged across retries. */
  id: string;
  /** Unix seconds of this attempt (a Date is floored to seconds). */
  timestamp: number | Date;
  /** The exact bytes that will be sent. */
  body: string | Buffer;
}

export type Signer = (input: SignInput) => string;

// A type alias, not an interface: an alias is assignable to an index-signature
// type, so these headers go straight into verifyWebhook (sluice/webhooks), fetch
// or a header record; an interface would not type-check there.
export type WebhookSignatureHeaders = {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
};

function seconds(timestamp: number | Date): number {
  const ts = timestamp instanceof Date ? Math.floor(timestamp.getTime() / 1000) : timestamp;
  if (!Number.isSafeInteger(ts) || ts < 0) throw new RangeError('timestamp must be whole Unix seconds');
  return ts;
}

// The id is part of the signed string `${id}.${ts}.${body}`; a '.' in it would let
// two different (id, timestamp) pairs sign the same bytes, so the spec forbids it.
function checkId(id: string): void {
  if (!/^[\x21-\x7e]+$/.test(id) || id.includes('.')) {
    throw new RangeError('webhook id must be non-empty printable ASCII without "." or spaces');
  }
}

export function createSigner(secrets: readonly SigningKey[]): Signer {
  const parsed = secrets.map((s) => (typeof s === 'string' ? parseSecret(s) : s));
  if (parsed.length === 0) throw new SecretFormatError('no active signing secret');
  if (parsed.some((p) => p.kind === 'ed25519-public')) {
    throw new SecretFormatError('a whpk_ public key cannot sign; give the whsk_ private key');
  }
  const hmacKeys = parsed.flatMap((p) => (p.kind === 'hmac' ? [p.key] : []));
  const edKeys = parsed.flatMap((p) => (p.kind === 'ed25519-private' ? [p.key] : []));

  return ({ id, timestamp, body }) => {
    checkId(id);
    const prefix = `${id}.${seconds(timestamp)}.`;
    const out: string[] = [];
    // Streamed into the HMAC: no copy of the body per secret.
    for (const key of hmacKeys) out.push('v1,' + createHmac('sha256', key).update(prefix).update(body).digest('base64'));
    if (edKeys.length > 0) {
      const content = Buffer.concat([Buffer.from(prefix), typeof body === 'string' ? Buffer.from(body) : body]);
      for (const key of edKeys) out.push('v1a,' + edSign(null, content, key).toString('base64'));
    }
    return out.join(' ');
  };
}

/** One-off signing; for repeated use keep a createSigner() per endpoint. */
export function signPayload(input: SignInput & { secrets: readonly SigningKey[] }): string {
  return createSigner(input.secrets)(input);
}

/** The three Standard Webhooks headers; timestamp defaults to now. */
export function webhookHeaders(
  input: { id: string; timestamp?: number | Date; body: string | Buffer },
  signer: Signer | readonly SigningKey[],
): WebhookSignatureHeaders {
  const sign = typeof signer === 'function' ? signer : createSigner(signer);
  const ts = seconds(input.timestamp ?? new Date());
  return {
    'webhook-id': input.id,
    'webhook-timestamp': String(ts),
    'webhook-signature': sign({ id: input.id, timestamp: ts, body: input.body }),
  };
}
