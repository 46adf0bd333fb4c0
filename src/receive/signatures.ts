// The signature header and the signed bytes, shared by the Node and WebCrypto paths.

import { decodeBase64 } from './base64.js';
import type { WebhookBody } from './types.js';

export interface HeaderSignatures {
  /** Decoded `v1,` (HMAC-SHA256) signatures. */
  v1: Uint8Array[];
  /** Decoded `v1a,` (ed25519) signatures. */
  v1a: Uint8Array[];
}

/**
 * `v1,<b64> v1a,<b64> …`. Unknown versions are skipped (forward compatibility,
 * as the spec asks), and so are undecodable entries: one bad entry must not
 * hide a good one. A trailing comma is tolerated because Web `Headers.get`
 * joins repeated headers with ", ".
 */
export function parseSignatureHeader(header: string): HeaderSignatures {
  const out: HeaderSignatures = { v1: [], v1a: [] };
  for (const entry of header.split(/\s+/)) {
    const comma = entry.indexOf(',');
    if (comma < 0) continue;
    const version = entry.slice(0, comma);
    const bytes = decodeBase64(entry.slice(comma + 1).replace(/,+$/, ''));
    if (!bytes) continue;
    if (version === 'v1' && bytes.length === 32) out.v1.push(bytes);
    else if (version === 'v1a' && bytes.length === 64) out.v1a.push(bytes);
  }
  return out;
}

export function bodyBytes(body: WebhookBody): Uint8Array {
  if (typeof body === 'string') return new TextEncoder().encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  // A Uint8Array/ArrayBuffer from another realm (iframe, vm) fails instanceof; accept it by shape.
  const other: unknown = body;
  if (Object.prototype.toString.call(other) === '[object ArrayBuffer]') return new Uint8Array(other as ArrayBuffer);
  if (ArrayBuffer.isView(other)) return new Uint8Array(other.buffer, other.byteOffset, other.byteLength);
  throw new TypeError('body must be the raw request body: string, Buffer, Uint8Array or ArrayBuffer');
}

/** The exact bytes `${id}.${timestamp}.${body}`, as one buffer (WebCrypto and ed25519 need one). */
export function signedContent(id: string, timestamp: number, body: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode(`${id}.${timestamp}.`);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

/** Time depends only on the length (public: always 32 here), never on where bytes differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
