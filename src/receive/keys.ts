// Turning the secrets a user passes in into key bytes. The prefix decides the
// scheme (Standard Webhooks): whsec_ → HMAC-SHA256 (v1), whpk_ → ed25519 public
// key (v1a). The HMAC key is the base64-DECODED bytes after the prefix; using
// the string itself as the key is the classic whsec_ pitfall, so unprefixed
// values are refused with an explanation rather than guessed at.

import { decodeBase64 } from './base64.js';
import { WebhookVerificationError } from './errors.js';
import type { VerifyKeys } from './types.js';

export interface VerifyKeySet {
  hmac: Uint8Array[];
  ed25519: Uint8Array[];
}

// Standard Webhooks secrets are 24–64 random bytes (svix issues 24, whsec_ + 32 chars).
const MIN_HMAC_BYTES = 24;
const MAX_HMAC_BYTES = 64;

function invalid(position: string, why: string): WebhookVerificationError {
  return new WebhookVerificationError('invalid_secret', `secret${position} ${why}`);
}

function parseOne(raw: unknown, position: string, keys: VerifyKeySet): void {
  if (typeof raw !== 'string') throw invalid(position, 'is not a string');
  // Trailing newlines from env files and secret managers are common; they are never part of a key.
  const secret = raw.trim();
  if (secret.startsWith('whsec_')) {
    const bytes = decodeBase64(secret.slice(6));
    if (!bytes) throw invalid(position, 'is not valid base64 after "whsec_"');
    if (bytes.length < MIN_HMAC_BYTES || bytes.length > MAX_HMAC_BYTES) {
      throw invalid(position, `decodes to ${bytes.length} bytes; whsec_ secrets hold 24-64 bytes`);
    }
    keys.hmac.push(bytes);
  } else if (secret.startsWith('whpk_')) {
    const bytes = decodeBase64(secret.slice(5));
    if (!bytes || bytes.length !== 32) throw invalid(position, 'is not a whpk_ ed25519 public key (base64 of 32 bytes)');
    keys.ed25519.push(bytes);
  } else if (secret.startsWith('whsk_')) {
    throw invalid(position, 'is a whsk_ private signing key; receivers verify with the matching whpk_ public key');
  } else {
    throw invalid(
      position,
      'has no "whsec_" or "whpk_" prefix; pass the secret exactly as shown by Sluice, prefix included ' +
        '(the HMAC key is the base64-decoded part after "whsec_", not the raw string)',
    );
  }
}

export function parseVerifyKeys(secrets: VerifyKeys): VerifyKeySet {
  const list = typeof secrets === 'string' ? [secrets] : secrets;
  if (!Array.isArray(list) || list.length === 0) {
    throw new WebhookVerificationError('invalid_secret', 'no secret was given');
  }
  const keys: VerifyKeySet = { hmac: [], ed25519: [] };
  list.forEach((s, i) => parseOne(s, list.length > 1 ? ` #${i + 1}` : '', keys));
  return keys;
}
