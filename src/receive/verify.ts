// Verifying a Sluice (Standard Webhooks) delivery. Order of checks: the keys
// given (a configuration error should be loud on every request), the headers,
// the timestamp window, the signatures, and only then the body is parsed.

import { parseVerifiedBody } from './body.js';
import { WebhookVerificationError } from './errors.js';
import { readSignedHeaders, type SignedHeaders } from './headers.js';
import { parseVerifyKeys, type VerifyKeySet } from './keys.js';
import { nodeMatches } from './node-crypto.js';
import { bodyBytes, parseSignatureHeader, signedContent } from './signatures.js';
import type {
  RequestLike,
  VerifiedWebhook,
  VerifyKeys,
  VerifyOptions,
  WebhookBody,
  WebhookHeadersInput,
} from './types.js';
import { webMatches } from './web-crypto.js';

interface Prepared {
  keys: VerifyKeySet;
  headers: SignedHeaders;
  bytes: Uint8Array;
}

function prepare(body: WebhookBody, headers: WebhookHeadersInput, secret: VerifyKeys, options?: VerifyOptions): Prepared {
  const keys = parseVerifyKeys(secret);
  const signed = readSignedHeaders(headers, options);
  return { keys, headers: signed, bytes: bodyBytes(body) };
}

function noMatch(): WebhookVerificationError {
  return new WebhookVerificationError(
    'no_matching_signature',
    'no signature in webhook-signature matches the given secret(s); check the secret, and that the body is the raw bytes received (not re-serialised JSON)',
  );
}

/**
 * Synchronous verification for Node (>= 20.16), Bun and Deno, using node:crypto
 * loaded on first call. Returns the body as a batch (see VerifiedWebhook).
 * Throws WebhookVerificationError; on runtimes without node:crypto it throws a
 * plain Error pointing at verifyWebhookAsync.
 */
export function verifyWebhook<R = Record<string, unknown>>(
  body: WebhookBody,
  headers: WebhookHeadersInput,
  secret: VerifyKeys,
  options?: VerifyOptions,
): VerifiedWebhook<R> {
  const { keys, headers: h, bytes } = prepare(body, headers, secret, options);
  const prefix = new TextEncoder().encode(`${h.id}.${h.timestamp}.`);
  if (!nodeMatches(keys, parseSignatureHeader(h.signature), prefix, bytes)) throw noMatch();
  return parseVerifiedBody<R>(bytes, h.id, h.timestamp);
}

/** The same checks with WebCrypto only: for Workers, Deno, Bun, edge runtimes and Node. */
export async function verifyWebhookAsync<R = Record<string, unknown>>(
  body: WebhookBody,
  headers: WebhookHeadersInput,
  secret: VerifyKeys,
  options?: VerifyOptions,
): Promise<VerifiedWebhook<R>> {
  const { keys, headers: h, bytes } = prepare(body, headers, secret, options);
  const content = signedContent(h.id, h.timestamp, bytes);
  if (!(await webMatches(keys, parseSignatureHeader(h.signature), content))) throw noMatch();
  return parseVerifiedBody<R>(bytes, h.id, h.timestamp);
}

/**
 * Verifies a whole Web `Request` (fetch handlers, Next route handlers, Hono…).
 * It reads the raw body, so the request body is consumed: pass
 * `request.clone()` if something else must read it too.
 */
export async function verifyRequest<R = Record<string, unknown>>(
  request: RequestLike,
  secret: VerifyKeys,
  options?: VerifyOptions,
): Promise<VerifiedWebhook<R>> {
  // Keys and headers first, so a bad secret or a missing header never costs a body read.
  parseVerifyKeys(secret);
  readSignedHeaders(request.headers, options);
  const body = new Uint8Array(await request.arrayBuffer());
  return verifyWebhookAsync<R>(body, request.headers, secret, options);
}
