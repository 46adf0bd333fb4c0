import { createPublicKey, verify as nodeVerify, webcrypto } from 'node:crypto';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';
import { describe, expect, it } from 'vitest';
import {
  activeSecrets,
  createSigner,
  generateKeyPair,
  generateSecret,
  maskSecret,
  parseSecret,
  publicKeyOf,
  ROTATION_OVERLAP_MS,
  rotateSecrets,
  SecretFormatError,
  signPayload,
  webhookHeaders,
} from '../src/index.js'; // the package's main entry, which is the signer
import { KAT } from './helpers/kat.js';


const nowSeconds = () => Math.floor(Date.now() / 1000);

function headersFor(id: string, timestamp: number, signature: string): Record<string, string> {
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };
}

describe('signPayload', () => {
  it('reproduces the known-answer vector exactly', () => {
    expect(signPayload({ ...KAT, secrets: [KAT.secret] })).toBe(KAT.signature);
    expect(signPayload({ ...KAT, body: Buffer.from(KAT.body), secrets: [KAT.secret] })).toBe(KAT.signature);
    expect(signPayload({ ...KAT, timestamp: new Date(KAT.timestamp * 1000 + 999), secrets: [KAT.secret] })).toBe(
      KAT.signature,
    );
  });

  it('signs what the standardwebhooks and svix libraries sign, byte for byte', () => {
    const secret = generateSecret();
    const body = JSON.stringify({ data: [{ record: { id: 1, name: 'zoë ✓' }, action: 'insert' }] });
    const at = new Date(1_700_000_000_000);
    const ours = signPayload({ id: 'msg_1', timestamp: at, body, secrets: [secret] });
    expect(ours).toBe(new StandardWebhook(secret).sign('msg_1', at, body));
    expect(ours).toBe(new SvixWebhook(secret).sign('msg_1', at, body));
  });

  it('what we sign, standardwebhooks and svix verify', () => {
    const secret = generateSecret();
    const body = '{"data":[{"action":"update"}]}';
    const headers = webhookHeaders({ id: 'msg_2', body }, [secret]);
    expect(new StandardWebhook(secret).verify(body, headers)).toEqual({ data: [{ action: 'update' }] });
    expect(new SvixWebhook(secret).verify(body, headers)).toEqual({ data: [{ action: 'update' }] });
    expect(() => new StandardWebhook(generateSecret()).verify(body, headers)).toThrow(/No matching signature/);
  });

  it('puts one v1 entry per secret; a verifier holding either one accepts (rotation)', () => {
    const [oldS, newS] = [generateSecret(), generateSecret()];
    const body = '{"data":[]}';
    const ts = nowSeconds();
    const header = signPayload({ id: 'msg_3', timestamp: ts, body, secrets: [newS, oldS] });
    const entries = header.split(' ');
    expect(entries).toHaveLength(2);
    expect(entries.every((e) => /^v1,[A-Za-z0-9+/]{43}=$/.test(e))).toBe(true);
    for (const s of [oldS, newS]) {
      expect(new StandardWebhook(s).verify(body, headersFor('msg_3', ts, header))).toEqual({ data: [] });
      expect(new SvixWebhook(s).verify(body, headersFor('msg_3', ts, header))).toEqual({ data: [] });
    }
  });

  it('signs v1a with whsk_ keys; the signature verifies against the raw whpk_ key (node and WebCrypto)', async () => {
    const { privateKey, publicKey } = generateKeyPair();
    const hmac = generateSecret();
    const body = '{"data":[{"action":"delete"}]}';
    const header = signPayload({ id: 'msg_4', timestamp: 1_700_000_000, body, secrets: [hmac, privateKey] });
    const [v1, v1a] = header.split(' ');
    expect(v1.startsWith('v1,')).toBe(true);
    expect(v1a.startsWith('v1a,')).toBe(true);
    const sig = Buffer.from(v1a.slice(4), 'base64');
    const content = Buffer.from(`msg_4.1700000000.${body}`);
    const raw = Buffer.from(publicKey.slice(5), 'base64');
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
    expect(nodeVerify(null, content, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig)).toBe(true);
    const wk = await webcrypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
    expect(await webcrypto.subtle.verify('Ed25519', wk, sig, content)).toBe(true);
    expect(await webcrypto.subtle.verify('Ed25519', wk, sig, Buffer.from(`msg_4.1700000001.${body}`))).toBe(false);
  });

  it('createSigner accepts parsed keys and refuses public keys, empty lists and unsafe ids', () => {
    const sign = createSigner([parseSecret(KAT.secret)]);
    expect(sign(KAT)).toBe(KAT.signature);
    expect(() => createSigner([])).toThrow(SecretFormatError);
    expect(() => createSigner([generateKeyPair().publicKey])).toThrow(/whpk_ public key cannot sign/);
    expect(() => sign({ ...KAT, id: 'a.b' })).toThrow(RangeError);
    expect(() => sign({ ...KAT, id: '' })).toThrow(RangeError);
    expect(() => sign({ ...KAT, timestamp: 1.5 })).toThrow(RangeError);
  });

  it('webhookHeaders returns the three headers, timestamp defaulting to now', () => {
    const before = nowSeconds();
    const h = webhookHeaders({ id: 'msg_5', body: '{}' }, createSigner([KAT.secret]));
    expect(Object.keys(h).sort()).toEqual(['webhook-id', 'webhook-signature', 'webhook-timestamp']);
    expect(Number(h['webhook-timestamp'])).toBeGreaterThanOrEqual(before);
    expect(Number(h['webhook-timestamp'])).toBeLessThanOrEqual(nowSeconds());
    expect(webhookHeaders({ ...KAT }, [KAT.secret])).toEqual(headersFor(KAT.id, KAT.timestamp, KAT.signature));
  });
});

describe('secrets', () => {
  it('generateSecret: whsec_ + base64 of 32 random bytes', () => {
    const a = generateSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(a.slice(6), 'base64')).toHaveLength(32);
    expect(generateSecret()).not.toBe(a);
    expect(parseSecret(a).kind).toBe('hmac');
  });

  it('generateKeyPair: base64 of the raw 32-byte seed and public key', () => {
    const { privateKey, publicKey } = generateKeyPair();
    expect(privateKey).toMatch(/^whsk_[A-Za-z0-9+/]{43}=$/);
    expect(publicKey).toMatch(/^whpk_[A-Za-z0-9+/]{43}=$/);
    expect(publicKeyOf(privateKey)).toBe(publicKey);
    expect(parseSecret(publicKey).kind).toBe('ed25519-public');
  });

  it('reads a 64-byte whsk_ (seed || public key) only when the halves belong together', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const seed = Buffer.from(a.privateKey.slice(5), 'base64');
    const good = 'whsk_' + Buffer.concat([seed, Buffer.from(a.publicKey.slice(5), 'base64')]).toString('base64');
    const bad = 'whsk_' + Buffer.concat([seed, Buffer.from(b.publicKey.slice(5), 'base64')]).toString('base64');
    expect(publicKeyOf(good)).toBe(a.publicKey);
    expect(() => parseSecret(bad)).toThrow(/second half/);
  });

  it('accepts 24..64-byte whsec_ secrets (svix issues 24) and rejects the rest without echoing them', () => {
    const of = (n: number) => 'whsec_' + Buffer.alloc(n, 7).toString('base64');
    expect(parseSecret(of(24)).kind).toBe('hmac');
    expect(parseSecret(of(64)).kind).toBe('hmac');
    const bad = [
      of(23),
      of(65),
      'whsec_not base64!!',
      'whsec_' + Buffer.alloc(32, 1).toString('base64url').replace(/A/g, '-'),
      'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      'whsk_' + Buffer.alloc(31).toString('base64'),
      'whpk_' + Buffer.alloc(33).toString('base64'),
    ];
    for (const s of bad) {
      let err: unknown;
      try {
        parseSecret(s);
      } catch (e) {
        err = e;
      }
      expect(err, s).toBeInstanceOf(SecretFormatError);
      const text = String(err) + JSON.stringify(err);
      expect(text).not.toContain(s);
      expect(text).not.toContain(s.replace(/^wh(sec|sk|pk)_/, ''));
    }
  });

  it('maskSecret shows the prefix and the last 4 characters only', () => {
    const s = generateSecret();
    expect(maskSecret(s)).toBe(`whsec_…${s.slice(-4)}`);
    expect(maskSecret(generateKeyPair().privateKey)).toMatch(/^whsk_….{4}$/);
    expect(maskSecret('whsec_short')).toBe('whsec_…');
  });
});

describe('rotation', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const at = (ms: number) => new Date(t0.getTime() + ms);

  it('the new secret signs at once; the old one until the overlap ends', () => {
    const [oldS, newS] = [generateSecret(), generateSecret()];
    const stored = rotateSecrets([{ secret: oldS, expires_at: null }], newS, t0);
    expect(stored).toEqual([
      { secret: newS, expires_at: null },
      { secret: oldS, expires_at: at(ROTATION_OVERLAP_MS).toISOString() },
    ]);
    expect(activeSecrets(stored, t0)).toEqual([newS, oldS]);
    expect(activeSecrets(stored, at(ROTATION_OVERLAP_MS - 1))).toEqual([newS, oldS]);
    expect(activeSecrets(stored, at(ROTATION_OVERLAP_MS))).toEqual([newS]);
  });

  it('during the overlap a receiver holding either secret verifies', () => {
    const [oldS, newS] = [generateSecret(), generateSecret()];
    const stored = rotateSecrets([{ secret: oldS }], newS, t0, 60_000);
    const ts = nowSeconds();
    const header = signPayload({ id: 'msg_r', timestamp: ts, body: '{}', secrets: activeSecrets(stored, at(59_999)) });
    for (const s of [oldS, newS]) expect(new StandardWebhook(s).verify('{}', headersFor('msg_r', ts, header))).toEqual({});
  });

  it('rotating again keeps an earlier expiry and drops expired secrets', () => {
    const [a, b, c] = [generateSecret(), generateSecret(), generateSecret()];
    const once = rotateSecrets([{ secret: a }], b, t0, 1000);
    const twice = rotateSecrets(once, c, at(500), 10_000);
    expect(twice).toEqual([
      { secret: c, expires_at: null },
      { secret: b, expires_at: at(10_500).toISOString() },
      { secret: a, expires_at: at(1000).toISOString() },
    ]);
    expect(rotateSecrets(twice, generateSecret(), at(5000)).map((s) => s.secret)).not.toContain(a);
    expect(() => activeSecrets([{ secret: a, expires_at: 'soon' }], t0)).toThrow(RangeError);
  });
});
