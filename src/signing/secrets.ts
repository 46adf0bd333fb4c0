// Endpoint secrets in Standard Webhooks form:
//   whsec_<base64 of 24–64 random bytes>  HMAC-SHA256 (signature "v1"); the key is the DECODED bytes
//   whsk_<base64 of the 32-byte ed25519 seed>  private key (signature "v1a")
//   whpk_<base64 of the 32-byte ed25519 public key>
// Raw 32-byte values (not PKCS#8/SPKI DER) are what the Standard Webhooks spec
// means by "base64 encoded" keys, and what WebCrypto imports as 'raw'. A 64-byte
// whsk_ (seed || public key, the libsodium layout) is also read, and checked.
// Errors name the problem, never the secret.

import { createPrivateKey, createPublicKey, createSecretKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

export type ParsedSecret =
  | { kind: 'hmac'; key: KeyObject }
  | { kind: 'ed25519-private'; key: KeyObject; publicKey: KeyObject }
  | { kind: 'ed25519-public'; key: KeyObject };

export class SecretFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretFormatError';
  }
}

export const HMAC_SECRET_BYTES = 32;
const MIN_HMAC_BYTES = 24;
const MAX_HMAC_BYTES = 64;

// RFC 8410 DER headers; the 32 raw key bytes follow each.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

export function generateSecret(): string {
  return 'whsec_' + randomBytes(HMAC_SECRET_BYTES).toString('base64');
}

export function generateKeyPair(): { privateKey: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    privateKey: 'whsk_' + Buffer.from(jwk.d!, 'base64url').toString('base64'),
    publicKey: 'whpk_' + Buffer.from(jwk.x!, 'base64url').toString('base64'),
  };
}

/** Buffer.from(…, 'base64') skips junk silently; a mistyped secret must fail instead. */
function strictBase64(text: string, prefix: string): Buffer {
  const ok = /^[A-Za-z0-9+/]*={0,2}$/.test(text) && text.length % 4 !== 1 && (!text.endsWith('=') || text.length % 4 === 0);
  if (!ok || text.length === 0) throw new SecretFormatError(`secret is not valid base64 after "${prefix}"`);
  return Buffer.from(text, 'base64');
}

function rawPublicKey(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

export function parseSecret(secret: string): ParsedSecret {
  if (typeof secret !== 'string') throw new SecretFormatError('secret must be a string');
  if (secret.startsWith('whsec_')) {
    const bytes = strictBase64(secret.slice(6), 'whsec_');
    if (bytes.length < MIN_HMAC_BYTES || bytes.length > MAX_HMAC_BYTES) {
      throw new SecretFormatError(`whsec_ secret decodes to ${bytes.length} bytes; it must hold 24-64 bytes`);
    }
    return { kind: 'hmac', key: createSecretKey(bytes) };
  }
  if (secret.startsWith('whsk_')) {
    const bytes = strictBase64(secret.slice(5), 'whsk_');
    if (bytes.length !== 32 && bytes.length !== 64) {
      throw new SecretFormatError(`whsk_ key decodes to ${bytes.length} bytes; expected a 32-byte ed25519 seed`);
    }
    const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, bytes.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
    const publicKey = createPublicKey(key);
    if (bytes.length === 64 && !rawPublicKey(publicKey).equals(bytes.subarray(32))) {
      throw new SecretFormatError('whsk_ key of 64 bytes: its second half is not the public key of its first');
    }
    return { kind: 'ed25519-private', key, publicKey };
  }
  if (secret.startsWith('whpk_')) {
    const bytes = strictBase64(secret.slice(5), 'whpk_');
    if (bytes.length !== 32) throw new SecretFormatError(`whpk_ key decodes to ${bytes.length} bytes; expected 32`);
    return { kind: 'ed25519-public', key: createPublicKey({ key: Buffer.concat([SPKI_ED25519, bytes]), format: 'der', type: 'spki' }) };
  }
  throw new SecretFormatError('secret must start with "whsec_", "whsk_" or "whpk_"');
}

/** The public half of a whsk_ key, as the whpk_ string to hand to receivers. */
export function publicKeyOf(privateKey: string): string {
  const parsed = parseSecret(privateKey);
  if (parsed.kind !== 'ed25519-private') throw new SecretFormatError('publicKeyOf needs a whsk_ private key');
  return 'whpk_' + rawPublicKey(parsed.publicKey).toString('base64');
}

/** For list APIs and logs: the prefix and the last 4 characters only (`whsec_…a1b2`). */
export function maskSecret(secret: string): string {
  const prefix = /^(whsec_|whsk_|whpk_)/.exec(secret)?.[1] ?? '';
  // Too short to show 4 characters and keep the rest meaningfully hidden.
  if (secret.length - prefix.length < 16) return `${prefix}…`;
  return `${prefix}…${secret.slice(-4)}`;
}
