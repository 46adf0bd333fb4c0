// node:crypto, loaded only when the synchronous verifier is called, so importing
// `sluice/webhooks` never touches a Node module and works on Web runtimes.
// process.getBuiltinModule (Node >= 20.16, also Bun and Deno) is synchronous,
// unlike import(), which is what keeps verifyWebhook synchronous.

/** The few node:crypto members used here, typed locally so users need no @types/node. */
interface NodeCrypto {
  createHmac(alg: 'sha256', key: Uint8Array): {
    update(data: Uint8Array): { update(data: Uint8Array): { digest(): Uint8Array } };
  };
  timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean;
  createPublicKey(input: { key: Uint8Array; format: 'der'; type: 'spki' }): unknown;
  verify(alg: null, data: Uint8Array, key: unknown, signature: Uint8Array): boolean;
}

let cached: NodeCrypto | undefined;

function load(): NodeCrypto {
  if (cached) return cached;
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const mod = proc?.getBuiltinModule?.('node:crypto') as NodeCrypto | undefined;
  if (!mod) {
    throw new Error(
      'verifyWebhook (synchronous) needs node:crypto through process.getBuiltinModule (Node >= 20.16); ' +
        'on this runtime use `await verifyWebhookAsync(...)` or `await verifyRequest(request, ...)`',
    );
  }
  return (cached = mod);
}

// RFC 8410 SubjectPublicKeyInfo header for an ed25519 key; the 32 raw key bytes follow.
const ED25519_SPKI_PREFIX = Uint8Array.of(0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00);

export function nodeMatches(
  keys: { hmac: Uint8Array[]; ed25519: Uint8Array[] },
  sigs: { v1: Uint8Array[]; v1a: Uint8Array[] },
  prefix: Uint8Array,
  body: Uint8Array,
): boolean {
  const crypto = load();
  if (sigs.v1.length > 0) {
    for (const key of keys.hmac) {
      // One HMAC per secret, then compared against every v1 entry.
      const expected = crypto.createHmac('sha256', key).update(prefix).update(body).digest();
      for (const sig of sigs.v1) if (crypto.timingSafeEqual(expected, sig)) return true;
    }
  }
  if (sigs.v1a.length > 0 && keys.ed25519.length > 0) {
    const content = new Uint8Array(prefix.length + body.length);
    content.set(prefix, 0);
    content.set(body, prefix.length);
    for (const raw of keys.ed25519) {
      const spki = new Uint8Array(ED25519_SPKI_PREFIX.length + 32);
      spki.set(ED25519_SPKI_PREFIX, 0);
      spki.set(raw, ED25519_SPKI_PREFIX.length);
      let key: unknown;
      try {
        key = crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' });
      } catch {
        continue; // not a usable ed25519 point: it can match nothing
      }
      for (const sig of sigs.v1a) if (crypto.verify(null, content, key, sig)) return true;
    }
  }
  return false;
}
