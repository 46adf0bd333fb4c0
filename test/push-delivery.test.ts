// Push delivery on the happy path, against a real embedded Postgres and a real
// receiver on 127.0.0.1: bodies, headers, signatures (checked by the
// standardwebhooks and svix libraries), per-group order, batching, rotation.
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { withTransaction, type Pool } from '../src/db/pool.js';
import { USER_AGENT } from '../src/push/deliver.js';
import { rotateConsumerSecret } from '../src/push/secrets.js';
import { verifyWebhook } from '../src/receive/index.js';
import { generateKeyPair } from '../src/signing/secrets.js';
import { eventually } from './helpers/capture.js';
import {
  insertMessages,
  insertWebhookConsumer,
  messagesFor,
  seqsByGroup,
  startReceiver,
  TEST_SECRET,
  usePushEnv,
  webhookSettings,
  type Script,
} from './helpers/receiver.js';

const env = usePushEnv('push_delivery');
const { receiver, run } = { receiver: (s?: Script) => env.receiver(s), run: () => env.run() };
const remaining = (id: string) => env.remaining(id);
let pool: Pool;
beforeAll(() => {
  pool = env.pool;
});

describe('push delivery', () => {
  it('delivers every message once, in order per group, signed and with the documented headers', async () => {
    const r = await receiver();
    const id = await insertWebhookConsumer(pool, 'orders-hook', webhookSettings(r.url, { headers: { 'x-team': 'billing' } }));
    const msgs = messagesFor(['a', 'b', 'c', 'd', 'e'], 200);
    await run();
    await insertMessages(pool, id, msgs);
    await eventually(async () => r.accepted().length >= 200 && (await remaining(id)) === 0);

    expect(r.accepted()).toHaveLength(200);
    for (const [, seqs] of seqsByGroup(r.accepted())) expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(r.accepted().map((m) => m.metadata.commit_lsn)).size).toBe(200);

    const std = new StandardWebhook(TEST_SECRET);
    const svix = new SvixWebhook(TEST_SECRET);
    for (const d of r.deliveries) {
      const h = { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature };
      expect(() => std.verify(d.raw.toString('utf8'), h)).not.toThrow();
      expect(() => svix.verify(d.raw, h)).not.toThrow();
      expect(d.headers['content-type']).toBe('application/json');
      expect(d.headers['user-agent']).toBe(USER_AGENT);
      expect(d.headers['x-team']).toBe('billing');
      expect(d.messages.length).toBeLessThanOrEqual(10);
    }
    // Stored payloads are spliced, never re-serialised: exact numerics survive, consumer added.
    const first = r.deliveries[0];
    expect(first.raw.toString()).toContain('"amount":"12345678901234567890.5"');
    expect(first.messages[0].metadata.consumer).toEqual({ id, name: 'orders-hook', annotations: {} });
    expect(USER_AGENT).toMatch(/^sluice\/\d+\.\d+\.\d+/);

    const attempts = await pool.query('SELECT outcome, status, message_count FROM sluice.webhook_attempts WHERE consumer_id = $1', [id]);
    expect(attempts.rows.every((a) => a.outcome === 'delivered' && a.status === 200)).toBe(true);
    expect(attempts.rows.reduce((n, a) => n + a.message_count, 0)).toBe(200);
  });

  it('sends the bare message when batching is off', async () => {
    const r = await receiver();
    const id = await insertWebhookConsumer(pool, 'bare', webhookSettings(r.url, { batch_size: 1, batched: false }));
    await run();
    await insertMessages(pool, id, messagesFor(['x', 'y'], 6));
    await eventually(async () => r.accepted().length >= 6);
    for (const d of r.deliveries) {
      const body = JSON.parse(d.raw.toString());
      expect(body.data).toBeUndefined();
      expect(body.action).toBe('insert');
    }
    expect(seqsByGroup(r.accepted()).get('x')).toEqual([0, 1, 2]);
  });

  it('fills a batch for batch_timeout when messages trickle in', async () => {
    const r = await receiver();
    const id = await insertWebhookConsumer(pool, 'linger', webhookSettings(r.url, { batch_size: 50, batch_timeout_ms: 300 }));
    await run();
    await new Promise((s) => setTimeout(s, 300));
    // Five separate commits within the batch window.
    for (let i = 0; i < 5; i++) await insertMessages(pool, id, messagesFor([`t${i}`], 2, 5000 + i * 10));
    await eventually(async () => r.accepted().length >= 10);
    expect(r.deliveries.length).toBeLessThanOrEqual(2);
  });

  it('signs v1a with a whsk_ key, beside v1 for a whsec_ secret; each verifies with its own key only', async () => {
    const r = await receiver();
    const { privateKey, publicKey } = generateKeyPair();
    const id = await insertWebhookConsumer(pool, 'ed25519', webhookSettings(r.url, { secrets: [privateKey, TEST_SECRET] }));
    await run();
    await insertMessages(pool, id, messagesFor(['e'], 3));
    await eventually(async () => r.accepted().length >= 3);
    for (const d of r.deliveries) {
      const h = { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature };
      const entries = d.signature.split(' ');
      expect(entries.map((e) => e.split(',')[0]).sort()).toEqual(['v1', 'v1a']);
      // v1a by the raw Standard Webhooks rule, with node:crypto alone: ed25519 over "id.timestamp.body".
      const v1a = entries.find((e) => e.startsWith('v1a,'))!.slice(4);
      const raw = Buffer.from(publicKey.slice('whpk_'.length), 'base64');
      const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
      expect(cryptoVerify(null, Buffer.from(`${d.id}.${d.timestamp}.${d.raw.toString()}`), key, Buffer.from(v1a, 'base64'))).toBe(true);
      expect(verifyWebhook(d.raw, h, publicKey, {})).toMatchObject({ id: d.id });
      // The v1 entry is the whsec_ secret's, as the third-party verifiers see it.
      expect(() => new StandardWebhook(TEST_SECRET).verify(d.raw.toString(), h)).not.toThrow();
      expect(() => new SvixWebhook(TEST_SECRET).verify(d.raw, h)).not.toThrow();
      expect(() => verifyWebhook(d.raw, h, generateKeyPair().publicKey, {})).toThrow(/signature/);
    }
  });

  it('signs with the old and the new secret during a rotation overlap', async () => {
    const r = await receiver();
    const id = await insertWebhookConsumer(pool, 'rotating', webhookSettings(r.url));
    const rotated = await withTransaction(pool, async (db) => {
      const { rows } = await db.query('SELECT config FROM sluice.consumers WHERE id = $1 FOR UPDATE', [id]);
      const out = await rotateConsumerSecret(db, id, rows[0].config);
      await db.query('UPDATE sluice.consumers SET config = $2 WHERE id = $1', [id, JSON.stringify(out.config)]);
      return out;
    });
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secrets[0].expires_at).toBeNull();
    expect(rotated.secrets[1].expires_at).not.toBeNull();
    const first = await run();
    await insertMessages(pool, id, messagesFor(['r'], 3));
    await eventually(async () => r.accepted().length >= 3);
    for (const d of r.deliveries) {
      const h = { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature };
      expect(d.signature.split(' ')).toHaveLength(2);
      expect(() => new StandardWebhook(TEST_SECRET).verify(d.raw.toString(), h)).not.toThrow();
      expect(() => new StandardWebhook(rotated.secret).verify(d.raw.toString(), h)).not.toThrow();
      expect(() => new SvixWebhook(rotated.secret).verify(d.raw, h)).not.toThrow();
    }

    // After the overlap the old secret stops signing.
    await pool.query(`UPDATE sluice.webhook_secret_expiries SET expires_at = now() - interval '1 second' WHERE consumer_id = $1`, [id]);
    await first.stop();
    await run();
    const before = r.deliveries.length;
    await insertMessages(pool, id, messagesFor(['s'], 1, 9000));
    await eventually(async () => r.deliveries.length > before);
    const last = r.deliveries[r.deliveries.length - 1];
    const h = { 'webhook-id': last.id, 'webhook-timestamp': last.timestamp, 'webhook-signature': last.signature };
    expect(last.signature.split(' ')).toHaveLength(1);
    expect(() => new StandardWebhook(rotated.secret).verify(last.raw.toString(), h)).not.toThrow();
    expect(() => new StandardWebhook(TEST_SECRET).verify(last.raw.toString(), h)).toThrow();
  });

  it("sends a group's next batch once the previous one's ack commits, not at the next poll", async () => {
    // One group, ten batches' worth: each batch waits for the one before it to
    // be acked. Nothing else wakes the dispatcher (no new messages), so a batch
    // that waited for the once-a-second re-check would show as a gap.
    const r = await receiver();
    const id = await insertWebhookConsumer(pool, 'one-hot-row', webhookSettings(r.url, { batch_size: 10 }));
    await run();
    await insertMessages(pool, id, messagesFor(['hot'], 100));
    await eventually(async () => r.accepted().length === 100, 15_000);
    expect(seqsByGroup(r.accepted()).get('hot')).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const gaps = r.deliveries.slice(1).map((d, i) => d.receivedAt - r.deliveries[i].receivedAt);
    expect(Math.max(...gaps)).toBeLessThan(500);
  });

  it('keeps many groups in order with several batches in flight', async () => {
    const r = await receiver(() => ({ status: 200, delayMs: Math.random() * 20 }));
    const id = await insertWebhookConsumer(pool, 'many', webhookSettings(r.url, { batch_size: 25, max_in_flight: 8 }));
    const groups = Array.from({ length: 40 }, (_, i) => `g${i}`);
    await run();
    await insertMessages(pool, id, messagesFor(groups, 1200));
    await eventually(async () => (await remaining(id)) === 0, 30_000);
    expect(r.accepted()).toHaveLength(1200);
    for (const [, seqs] of seqsByGroup(r.accepted())) expect(seqs).toEqual(seqs.map((_, i) => i));
    // Never two batches with the same group in flight: a batch id appears once.
    expect(new Set(r.deliveries.map((d) => d.id)).size).toBe(r.deliveries.length);
  });
});
