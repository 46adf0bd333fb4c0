// The WebCrypto path: globalThis.crypto.subtle only, no Buffer, no node: modules,
// so it runs on Cloudflare Workers, Deno, Bun, Next edge and browsers alike.

import { constantTimeEqual } from './signatures.js';

/** The few SubtleCrypto members used here, typed locally so no DOM lib is required. */
interface Subtle {
  importKey(format: 'raw', key: Uint8Array, alg: unknown, extractable: false, usages: string[]): Promise<unknown>;
  sign(alg: 'HMAC', key: unknown, data: Uint8Array): Promise<ArrayBuffer>;
  verify(alg: 'Ed25519', key: unknown, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
}

function subtle(): Subtle {
  const s = (globalThis as { crypto?: { subtle?: Subtle } }).crypto?.subtle;
  if (!s) throw new Error('verifyWebhookAsync needs WebCrypto (globalThis.crypto.subtle), which this runtime lacks');
  return s;
}

export async function webMatches(
  keys: { hmac: Uint8Array[]; ed25519: Uint8Array[] },
  sigs: { v1: Uint8Array[]; v1a: Uint8Array[] },
  content: Uint8Array,
): Promise<boolean> {
  const s = subtle();
  if (sigs.v1.length > 0) {
    for (const raw of keys.hmac) {
      const key = await s.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      const expected = new Uint8Array(await s.sign('HMAC', key, content));
      // Check every entry with no early exit inside the comparison itself.
      for (const sig of sigs.v1) if (constantTimeEqual(expected, sig)) return true;
    }
  }
  if (sigs.v1a.length > 0) {
    for (const raw of keys.ed25519) {
      let key: unknown;
      try {
        key = await s.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
      } catch (err) {
        if ((err as { name?: string })?.name === 'NotSupportedError') {
          throw new Error('this runtime\'s WebCrypto has no Ed25519, so v1a signatures cannot be checked here');
        }
        continue; // not a usable ed25519 point: it can match nothing
      }
      for (const sig of sigs.v1a) if (await s.verify('Ed25519', key, sig, content)) return true;
    }
  }
  return false;
}
