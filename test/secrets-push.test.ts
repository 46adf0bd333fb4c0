// Secrets encrypted at rest, seen from the delivery side: a real embedded
// Postgres and a real receiver on 127.0.0.1. Sealed consumers still sign and
// send their headers; rows stored in plain text before encryption keep working
// and are encrypted by rotate-key; a rotation to a new key leaves nothing under
// the old one; a key this process lacks stops a reload, never signing.
import { randomBytes } from 'node:crypto';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import * as q from '../src/config/queries.js';
import { verifyWebhook } from '../src/receive/index.js';
import { Keyring, useKeyring, type SecretsKey } from '../src/secrets/keyring.js';
import { rotateKey } from '../src/secrets/rotate.js';
import { generateKeyPair } from '../src/signing/secrets.js';
import { ensureSource, startAtEarliest } from './helpers/buffer.js';
import { consumerConfig, eventually, quietLog } from './helpers/capture.js';
import { insertMessages, insertWebhookConsumer, messagesFor, TEST_SECRET, usePushEnv, webhookSettings, type Receiver } from './helpers/receiver.js';

const env = usePushEnv('secrets_push');
const key = (id: string): SecretsKey => ({ id, key: randomBytes(32) });
const K1 = key('k1');
const K2 = key('k2');
const HEADER = 'PlantedHeaderValue-6f1c';

afterEach(() => useKeyring(Keyring.none));

async function storedText(name: string): Promise<string> {
  return (await env.pool.query<{ t: string }>('SELECT config::text AS t FROM sluice.consumers WHERE name = $1', [name])).rows[0].t;
}

/** Every key id in a consumer's stored config ("plain" for a plain-text secret). */
async function storedKeyIds(name: string): Promise<string[]> {
  const { config } = (await env.pool.query('SELECT config FROM sluice.consumers WHERE name = $1', [name])).rows[0];
  const w = config.webhook;
  return [w.url, ...w.secrets, ...Object.values(w.headers)].map((v: any) => (typeof v === 'string' ? 'plain' : v.kid)).sort();
}

/** A webhook consumer written by the config layer, so sealed under the process keyring. */
async function insertSealed(name: string, url: string, secrets = [TEST_SECRET]): Promise<string> {
  await ensureSource(env.pool, 'src');
  await q.insertConsumer(
    env.pool,
    consumerConfig(name, 'src', ['public.orders'], { kind: 'webhook', pull: undefined, webhook: webhookSettings(url, { secrets, headers: { 'x-api-key': HEADER } }) }),
  );
  const id: string = (await env.pool.query('SELECT id FROM sluice.consumers WHERE name = $1', [name])).rows[0].id;
  await startAtEarliest(env.pool, id);
  return id;
}

/** Delivers `count` messages and checks each delivery's v1 signature with TEST_SECRET. */
async function deliverSigned(r: Receiver, id: string, count: number, firstLsn: number): Promise<void> {
  const before = r.accepted().length;
  await insertMessages(env.pool, id, messagesFor(['a', 'b'], count, firstLsn));
  await eventually(async () => r.accepted().length >= before + count);
  for (const d of r.deliveries) {
    const h = { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature };
    expect(() => new StandardWebhook(TEST_SECRET).verify(d.raw.toString(), h)).not.toThrow();
  }
}

describe('webhook deliveries with secrets encrypted at rest', () => {
  it('signs (v1 and v1a) and sends header values from a sealed config; the row holds none of them', async () => {
    useKeyring(new Keyring(K1));
    const r = await env.receiver();
    const { privateKey, publicKey } = generateKeyPair();
    const id = await insertSealed('sealed', r.url, [privateKey, TEST_SECRET]);
    const text = await storedText('sealed');
    for (const planted of [privateKey, TEST_SECRET, HEADER, r.url]) expect(text).not.toContain(planted);
    expect(await storedKeyIds('sealed')).toEqual(['k1', 'k1', 'k1', 'k1']);

    await env.run();
    await deliverSigned(r, id, 6, 1000);
    for (const d of r.deliveries) {
      const h = { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature };
      expect(verifyWebhook(d.raw, h, publicKey, {})).toMatchObject({ id: d.id });
      expect(d.headers['x-api-key']).toBe(HEADER);
    }
  });

  it('keeps plain-text rows from before working; rotate-key seals them without restarting their worker', async () => {
    const r = await env.receiver();
    // Written as before encryption existed: the config as plain JSON.
    const id = await insertWebhookConsumer(env.pool, 'legacy', webhookSettings(r.url, { headers: { 'x-api-key': HEADER } }));
    useKeyring(new Keyring(K1));
    const lines: string[] = [];
    const log = { ...quietLog, info: (_o: unknown, m?: string) => void lines.push(m ?? '') };
    await env.run({ log });
    await deliverSigned(r, id, 4, 2000);
    expect(r.deliveries.every((d) => d.headers['x-api-key'] === HEADER)).toBe(true);

    const report = await rotateKey(env.pool, new Keyring(K1));
    expect(report).toMatchObject({ keyId: 'k1', plain: 3, resealed: 3, rows: 1 });
    expect(await storedKeyIds('legacy')).toEqual(['k1', 'k1', 'k1']);
    expect(await storedText('legacy')).not.toContain(TEST_SECRET);
    // The registry sees the same plain values, so the dispatcher keeps the worker.
    await env.registry.reload();
    await deliverSigned(r, id, 4, 2100);
    expect(lines.filter((l) => l === 'webhook dispatch started')).toHaveLength(1);
    expect(lines).not.toContain('webhook dispatch stopped');
    // Nothing left to do: a second run writes nothing.
    expect((await rotateKey(env.pool, new Keyring(K1))).rows).toBe(0);
  });

  it('rotates to a new key id: nothing stays under the old one, and the old key can then go', async () => {
    useKeyring(new Keyring(K1));
    const r = await env.receiver();
    const id = await insertSealed('rotated', r.url);
    // The new key is current, the old one still given.
    useKeyring(new Keyring(K2, [K1]));
    const report = await rotateKey(env.pool, new Keyring(K2, [K1]));
    expect(report).toMatchObject({ keyId: 'k2', plain: 0, resealed: 3, rows: 1 });
    expect(report.byOldKey).toEqual(new Map([['k1', 3]]));
    expect(await storedKeyIds('rotated')).toEqual(['k2', 'k2', 'k2']);

    useKeyring(new Keyring(K2));
    await env.run();
    await deliverSigned(r, id, 4, 3000);
    expect(r.deliveries.every((d) => d.headers['x-api-key'] === HEADER)).toBe(true);
  });

  it('a key this process lacks fails the reload with its id, and the running worker keeps signing', async () => {
    useKeyring(new Keyring(K1));
    const r = await env.receiver();
    const id = await insertSealed('orphan', r.url);
    await env.run();
    await deliverSigned(r, id, 2, 4000);

    // The operator dropped k1 before rotating away from it.
    useKeyring(new Keyring(K2));
    await expect(env.registry.reload()).rejects.toThrow(/consumer "orphan" webhook\.url is encrypted with key "k1", which this process does not have.*SLUICE_SECRETS_KEYS_OLD=k1:/);
    await expect(new ConsumerRegistry(env.pool).reload()).rejects.toThrow(/key "k1"/);
    // The registry keeps what it had: deliveries go on, signed as before.
    expect(env.registry.get('orphan')!.config.webhook!.secrets).toEqual([TEST_SECRET]);
    await deliverSigned(r, id, 2, 4100);
    expect(r.deliveries.every((d) => d.signature.startsWith('v1,'))).toBe(true);
  });

  it('a sealed value moved into another field does not open there (a signing secret never leaves as a header)', async () => {
    useKeyring(new Keyring(K1));
    const r = await env.receiver();
    await insertSealed('moved', r.url);
    // Someone with write access to the table copies the sealed secret into a header value.
    await env.pool.query(
      `UPDATE sluice.consumers SET config = jsonb_set(config, '{webhook,headers,x-api-key}', config->'webhook'->'secrets'->0) WHERE name = 'moved'`,
    );
    await expect(new ConsumerRegistry(env.pool).reload()).rejects.toThrow(
      /consumer "moved" webhook\.headers\.x-api-key cannot be decrypted with key "k1".*altered/,
    );
  });
});
