import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  verifyRequest,
  verifyWebhook,
  verifyWebhookAsync,
  WebhookVerificationError,
  type Message,
  type VerifyKeys,
  type VerifyOptions,
  type WebhookBody,
  type WebhookHeadersInput,
} from '../src/receive/index.js';
import { generateKeyPair, generateSecret, signPayload } from '../src/signing/index.js';
import { KAT } from './helpers/kat.js';

const katNow = () => new Date(KAT.timestamp * 1000);
const katHeaders = () => headersFor(KAT.id, KAT.timestamp, KAT.signature);

const T = 1_800_000_000; // a fixed "now" for everything not talking to the libraries
const at = (seconds: number) => () => new Date(seconds * 1000);

function headersFor(id: string, timestamp: number, signature: string): Record<string, string> {
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };
}

interface Order {
  id: number;
  status: string;
}
const message: Message<Order> = {
  record: { id: 42, status: 'paid' },
  changes: { status: 'pending' },
  action: 'update',
  metadata: {
    table_schema: 'public',
    table_name: 'orders',
    commit_timestamp: '2026-11-23T20:15:01.123456Z',
    commit_lsn: 23923704,
    commit_idx: 3,
    idempotency_key: 'MjM5MjM3MDQ6Mw==',
    record_pks: ['42'],
    database_name: 'app',
    consumer: { id: 'c1', name: 'orders-webhook', annotations: {} },
    transaction_annotations: null,
  },
};
const batchBody = JSON.stringify({ data: [message, message] });

function signed(body: string, secrets: string[], id = 'msg_x', ts = T) {
  return headersFor(id, ts, signPayload({ id, timestamp: ts, body, secrets }));
}

type Verify = (body: WebhookBody, h: WebhookHeadersInput, s: VerifyKeys, o?: VerifyOptions) => Promise<unknown>;
// Both paths, run through the same cases.
const paths: [string, Verify][] = [
  ['sync (node:crypto)', async (...a) => verifyWebhook(...a)],
  ['async (WebCrypto)', (...a) => verifyWebhookAsync(...a)],
];

async function errorOf(p: Promise<unknown>): Promise<WebhookVerificationError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(WebhookVerificationError);
    return e as WebhookVerificationError;
  }
  throw new Error('expected verification to fail');
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe.each(paths)('verify, %s', (_name, verify) => {
  it('accepts the known-answer vector', async () => {
    const r = await verify(KAT.body, katHeaders(), KAT.secret, { now: katNow });
    expect(r).toEqual({ id: KAT.id, timestamp: KAT.timestamp, batched: false, data: [{ test: 2432232314 }] });
  });

  it('returns a typed batch, and wraps a bare message as a batch of one', async () => {
    const s = generateSecret();
    const batch = (await verify(batchBody, signed(batchBody, [s]), s, { now: at(T) })) as Awaited<
      ReturnType<typeof verifyWebhookAsync<Order>>
    >;
    expect(batch.batched).toBe(true);
    expect(batch.data.map((m) => m.record.status)).toEqual(['paid', 'paid']);
    const one = JSON.stringify(message);
    expect(await verify(one, signed(one, [s]), s, { now: at(T) })).toEqual({
      id: 'msg_x',
      timestamp: T,
      batched: false,
      data: [message],
    });
  });

  it('verifies what standardwebhooks and svix sign', async () => {
    const s = generateSecret();
    const date = new Date(T * 1000);
    for (const lib of [new StandardWebhook(s), new SvixWebhook(s)]) {
      const h = headersFor('msg_lib', T, lib.sign('msg_lib', date, batchBody));
      expect(await verify(batchBody, h, s, { now: at(T) })).toMatchObject({ id: 'msg_lib', batched: true });
    }
  });

  it('accepts svix-* header names when webhook-* are absent', async () => {
    const s = generateSecret();
    const sig = new SvixWebhook(s).sign('msg_svix', new Date(T * 1000), '{}');
    const h = { 'svix-id': 'msg_svix', 'svix-timestamp': String(T), 'svix-signature': sig };
    expect(await verify('{}', h, s, { now: at(T) })).toMatchObject({ id: 'msg_svix' });
  });

  it('rotation: old + new signatures; a receiver with only one secret accepts', async () => {
    const [oldS, newS] = [generateSecret(), generateSecret()];
    const h = signed(batchBody, [newS, oldS]);
    for (const s of [oldS, newS, [generateSecret(), oldS]]) {
      expect(await verify(batchBody, h, s, { now: at(T) })).toMatchObject({ batched: true });
    }
  });

  it('accepts when only the LAST of several signatures matches', async () => {
    const s = generateSecret();
    const good = signPayload({ id: 'msg_x', timestamp: T, body: '{}', secrets: [s] });
    const others = signPayload({ id: 'msg_x', timestamp: T, body: '{}', secrets: [generateSecret(), generateSecret()] });
    const header = `${others} v2,abcd v1,not-base64!! v1a,${Buffer.alloc(64).toString('base64')} ${good}`;
    expect(await verify('{}', headersFor('msg_x', T, header), s, { now: at(T) })).toMatchObject({ id: 'msg_x' });
  });

  it('rejects a tampered body, id or timestamp, and a wrong secret', async () => {
    const s = generateSecret();
    const h = signed(batchBody, [s]);
    const cases: [WebhookBody, Record<string, string>, string][] = [
      [batchBody.replace('paid', 'PAID'), h, s],
      [batchBody + ' ', h, s],
      [batchBody, { ...h, 'webhook-id': 'msg_y' }, s],
      [batchBody, { ...h, 'webhook-timestamp': String(T + 1) }, s],
      [batchBody, h, generateSecret()],
    ];
    for (const [body, headers, secret] of cases) {
      expect((await errorOf(verify(body, headers, secret, { now: at(T) }))).code).toBe('no_matching_signature');
    }
  });

  it('rejects a JSON.stringify(parsed) round trip of a body that was not minified', async () => {
    const s = generateSecret();
    const raw = '{ "data": [] }';
    const e = await errorOf(verify(JSON.stringify(JSON.parse(raw)), signed(raw, [s]), s, { now: at(T) }));
    expect(e.code).toBe('no_matching_signature');
    expect(e.message).toMatch(/raw bytes/);
  });

  it('reports each missing header by name', async () => {
    const s = generateSecret();
    const h = signed('{}', [s]);
    for (const name of Object.keys(h)) {
      const { [name]: _gone, ...rest } = h;
      const e = await errorOf(verify('{}', rest, s, { now: at(T) }));
      expect(e.code).toBe('missing_header');
      expect(e.message).toContain(name);
      expect((await errorOf(verify('{}', { ...h, [name]: '  ' }, s, { now: at(T) }))).code).toBe('missing_header');
    }
  });

  it('finds headers in any letter case, as string[] values, and in a Web Headers object', async () => {
    const s = generateSecret();
    const h = signed('{}', [s]);
    const mixed = {
      'Webhook-Id': h['webhook-id'],
      'WEBHOOK-SIGNATURE': h['webhook-signature'],
      'webhook-Timestamp': [h['webhook-timestamp']],
    };
    expect(await verify('{}', mixed, s, { now: at(T) })).toMatchObject({ id: 'msg_x' });
    expect(await verify('{}', new Headers(h), s, { now: at(T) })).toMatchObject({ id: 'msg_x' });
    // A repeated signature header, as Node gives it (string[]) and as Headers joins it (", ").
    const other = signPayload({ id: 'msg_x', timestamp: T, body: '{}', secrets: [generateSecret()] });
    const split = { ...h, 'webhook-signature': [other, h['webhook-signature']] };
    expect(await verify('{}', split, s, { now: at(T) })).toMatchObject({ id: 'msg_x' });
    const joined = new Headers({ ...h, 'webhook-signature': other });
    joined.append('webhook-signature', h['webhook-signature']);
    expect(await verify('{}', joined, s, { now: at(T) })).toMatchObject({ id: 'msg_x' });
  });

  it('accepts timestamps within ±300 s and rejects beyond, with the right code', async () => {
    const s = generateSecret();
    const h = signed('{}', [s]);
    for (const d of [-300, -299, 0, 299, 300]) {
      expect(await verify('{}', h, s, { now: at(T + d) })).toMatchObject({ timestamp: T });
    }
    expect((await errorOf(verify('{}', h, s, { now: at(T + 301) }))).code).toBe('timestamp_too_old');
    expect((await errorOf(verify('{}', h, s, { now: at(T - 301) }))).code).toBe('timestamp_too_new');
  });

  it('honours a custom tolerance', async () => {
    const s = generateSecret();
    const h = signed('{}', [s]);
    expect(await verify('{}', h, s, { now: at(T + 3600), toleranceSeconds: 3600 })).toMatchObject({ id: 'msg_x' });
    expect((await errorOf(verify('{}', h, s, { now: at(T + 11), toleranceSeconds: 10 }))).code).toBe(
      'timestamp_too_old',
    );
    expect((await errorOf(verify('{}', h, s, { now: at(T - 1), toleranceSeconds: 0 }))).code).toBe('timestamp_too_new');
  });

  it('rejects timestamps that are not Unix seconds', async () => {
    const s = generateSecret();
    for (const ts of ['abc', '1800000000.5', '-1800000000', '1e9', '0x6b49d200', '99999999999999999999']) {
      const h = { ...signed('{}', [s]), 'webhook-timestamp': ts };
      expect((await errorOf(verify('{}', h, s, { now: at(T) }))).code, ts).toBe('invalid_timestamp');
    }
  });

  it('verifies a v1a-only header (ed25519) with the whpk_ public key', async () => {
    const { privateKey, publicKey } = generateKeyPair();
    const h = signed(batchBody, [privateKey]);
    expect(h['webhook-signature']).toMatch(/^v1a,\S+$/);
    expect(await verify(batchBody, h, publicKey, { now: at(T) })).toMatchObject({ batched: true });
    expect(await verify(batchBody, h, [generateSecret(), publicKey], { now: at(T) })).toMatchObject({ batched: true });
    const e = await errorOf(verify(batchBody, h, generateKeyPair().publicKey, { now: at(T) }));
    expect(e.code).toBe('no_matching_signature');
    expect((await errorOf(verify(batchBody + ' ', h, publicKey, { now: at(T) }))).code).toBe('no_matching_signature');
    // An HMAC secret never matches a v1a entry, and a v1a-signed request is not accepted by one.
    expect((await errorOf(verify(batchBody, h, generateSecret(), { now: at(T) }))).code).toBe('no_matching_signature');
  });

  it('rejects invalid secrets with an explanation, never echoing them', async () => {
    const h = katHeaders();
    const bare = KAT.secret.slice(6);
    const cases: [VerifyKeys, RegExp][] = [
      [bare, /"whsec_"/],
      ['whsec_' + Buffer.alloc(16, 9).toString('base64'), /24-64 bytes/],
      ['whsec_' + bare.replace('Q', '_'), /not valid base64/],
      [generateKeyPair().privateKey, /whpk_ public key/],
      ['whpk_' + Buffer.alloc(31).toString('base64'), /whpk_/],
      [[], /no secret/],
      [[KAT.secret, 'oops-' + bare], /secret #2/],
    ];
    for (const [secret, why] of cases) {
      const e = await errorOf(verify(KAT.body, h, secret, { now: katNow }));
      expect(e.code).toBe('invalid_secret');
      expect(e.message).toMatch(why);
      const text = `${e.message} ${String(e)} ${e.stack} ${JSON.stringify(e)}`;
      for (const s of [secret].flat()) {
        expect(text).not.toContain(s.replace(/^wh(sec|sk|pk)_/, '').slice(0, 12) || '\u0000');
      }
    }
  });

  it('accepts a secret with surrounding whitespace (env files)', async () => {
    expect(await verify(KAT.body, katHeaders(), `  ${KAT.secret}\n`, { now: katNow })).toMatchObject({ id: KAT.id });
  });

  it('no error message ever contains the secret', async () => {
    const s = generateSecret();
    const h = signed('{}', [s]);
    const failures = [
      verify('{}', {}, s),
      verify('{}', { ...h, 'webhook-timestamp': 'x' }, s, { now: at(T) }),
      verify('{}', h, s, { now: at(T + 1000) }),
      verify('{}', h, s, { now: at(T - 1000) }),
      verify('{ }', h, s, { now: at(T) }),
      verify('{}', h, [generateSecret(), generateSecret()], { now: at(T) }),
    ];
    for (const p of failures) {
      const e = await errorOf(p);
      const text = `${e.message} ${String(e)} ${e.stack} ${JSON.stringify(e)}`;
      expect(text).not.toContain(s.slice(6));
    }
  });

  it('rejects a signed body that is not a JSON object, after checking the signature', async () => {
    const s = generateSecret();
    for (const body of ['not json', '[1,2]', 'null', '']) {
      expect((await errorOf(verify(body, signed(body, [s]), s, { now: at(T) }))).code).toBe('invalid_body');
    }
    // Unsigned garbage is a signature failure, not a parse error: nothing unauthenticated is parsed.
    expect((await errorOf(verify('not json', signed('{}', [s]), s, { now: at(T) }))).code).toBe('no_matching_signature');
  });

  it('reads Buffer, Uint8Array (also a subarray view) and ArrayBuffer bodies', async () => {
    const s = generateSecret();
    const h = signed(batchBody, [s]);
    const bytes = new TextEncoder().encode(batchBody);
    const padded = new Uint8Array(bytes.length + 10);
    padded.set(bytes, 5);
    for (const body of [Buffer.from(batchBody), bytes, bytes.buffer, padded.subarray(5, 5 + bytes.length)]) {
      expect(await verify(body as WebhookBody, h, s, { now: at(T) })).toMatchObject({ batched: true });
    }
  });
});

describe('the WebCrypto path without Buffer', () => {
  it('verifies Uint8Array and ArrayBuffer bodies, HMAC and ed25519, with globalThis.Buffer removed', () => {
    const s = generateSecret();
    const { privateKey, publicKey } = generateKeyPair();
    const h = signed(batchBody, [s, privateKey]);
    const onlyEd = signed(batchBody, [privateKey]);
    const cases = [
      { headers: h, key: s, as: 'bytes' },
      { headers: h, key: s, as: 'arraybuffer' },
      { headers: onlyEd, key: publicKey, as: 'arraybuffer' },
      { headers: onlyEd, key: publicKey, as: 'bytes' },
      { headers: { ...h, 'webhook-id': 'msg_z' }, key: s, as: 'arraybuffer' },
    ];
    const child = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'verify-without-buffer.ts'), JSON.stringify({ body: batchBody, now: T, cases })], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.stderr).toBe('');
    const [bufferType, ...results] = JSON.parse(child.stdout) as [string, ...Array<{ data?: Array<{ record: Order }>; code?: string }>];
    expect(bufferType).toBe('undefined');
    for (const r of results.slice(0, 4)) expect(r.data?.[0].record.id).toBe(42);
    expect(results[4]).toEqual({ code: 'no_matching_signature' });
  });
});

describe('verifyRequest', () => {
  const url = 'https://app.example/hooks/sluice';

  it('verifies a whole Web Request from its raw body', async () => {
    const s = generateSecret();
    const req = new Request(url, { method: 'POST', headers: signed(batchBody, [s]), body: batchBody });
    const r = await verifyRequest<Order>(req, s, { now: at(T) });
    expect(r.data[1].record.status).toBe('paid');
    expect(r).toMatchObject({ id: 'msg_x', timestamp: T, batched: true });
  });

  it('verifies the known-answer vector and rejects a tampered Request', async () => {
    const ok = new Request(url, { method: 'POST', headers: katHeaders(), body: KAT.body });
    expect(await verifyRequest(ok, KAT.secret, { now: katNow })).toMatchObject({ id: KAT.id });
    const bad = new Request(url, { method: 'POST', headers: katHeaders(), body: KAT.body.replace('2', '3') });
    expect((await errorOf(verifyRequest(bad, KAT.secret, { now: katNow }))).code).toBe('no_matching_signature');
  });

  it('fails on headers before reading the body', async () => {
    const s = generateSecret();
    const arrayBuffer = vi.fn(async () => new ArrayBuffer(0));
    const req = { headers: new Headers({ 'webhook-id': 'x' }), arrayBuffer };
    expect((await errorOf(verifyRequest(req, s))).code).toBe('missing_header');
    expect(arrayBuffer).not.toHaveBeenCalled();
  });
});

describe('interop: what we sign, standardwebhooks and svix verify (current time)', () => {
  it('one secret, and two (rotation) with each library holding only one', () => {
    const [oldS, newS] = [generateSecret(), generateSecret()];
    const ts = Math.floor(Date.now() / 1000);
    const h = headersFor('msg_i', ts, signPayload({ id: 'msg_i', timestamp: ts, body: batchBody, secrets: [newS, oldS] }));
    for (const s of [oldS, newS]) {
      expect(new StandardWebhook(s).verify(batchBody, h)).toEqual(JSON.parse(batchBody));
      expect(new SvixWebhook(s).verify(batchBody, h)).toEqual(JSON.parse(batchBody));
    }
    // …and the same header through our own verifier with real time.
    expect(verifyWebhook(batchBody, h, oldS).batched).toBe(true);
  });

  it('what the libraries sign with the current time, verifyWebhook accepts without options', async () => {
    const s = generateSecret();
    const now = new Date();
    const ts = Math.floor(now.getTime() / 1000);
    const h = headersFor('msg_j', ts, new StandardWebhook(s).sign('msg_j', now, batchBody));
    expect(verifyWebhook(batchBody, h, s).id).toBe('msg_j');
    expect((await verifyWebhookAsync(batchBody, h, s)).id).toBe('msg_j');
  });
});

describe('the synchronous path off Node', () => {
  it('explains to use verifyWebhookAsync when node:crypto cannot be loaded synchronously', async () => {
    vi.resetModules();
    const proc = process as { getBuiltinModule?: unknown };
    const original = proc.getBuiltinModule;
    proc.getBuiltinModule = undefined;
    try {
      const fresh = await import('../src/receive/index.js');
      expect(() => fresh.verifyWebhook(KAT.body, katHeaders(), KAT.secret, { now: katNow })).toThrow(
        /verifyWebhookAsync/,
      );
      expect(await fresh.verifyWebhookAsync(KAT.body, katHeaders(), KAT.secret, { now: katNow })).toMatchObject({
        id: KAT.id,
      });
    } finally {
      proc.getBuiltinModule = original;
    }
  });
});

describe('src/receive is self-contained', () => {
  const dir = join(import.meta.dirname, '../src/receive');
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));

  it('imports nothing outside src/receive and no node: module at top level', () => {
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) {
      const src = readFileSync(join(dir, f), 'utf8');
      const specifiers = [...src.matchAll(/(?:^|\s)(?:import|export)\b[^;'"]*?from\s*['"]([^'"]+)['"]/g)].map((m) => m[1]);
      const bare = [...src.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)].map((m) => m[1]);
      const dynamic = [...src.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]/g)].map((m) => m[1]);
      for (const spec of [...specifiers, ...bare, ...dynamic]) {
        expect(spec, `${f} imports ${spec}`).toMatch(/^\.\/[\w.-]+\.js$/);
      }
      expect(src, f).not.toMatch(/^\s*import[^;]*['"]node:/m);
      expect(src, f).not.toMatch(/\brequire\s*\(/);
      // Code, not comments, must not touch Node's Buffer (Web runtimes have none).
      const code = src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
      expect(code, `${f} uses Buffer`).not.toMatch(/\bBuffer\s*[.(]|\bnew\s+Buffer\b|:\s*Buffer\b/);
    }
  });
});
