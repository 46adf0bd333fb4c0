// /api/consumers against a real buffer database: both kinds, secrets shown
// once, header values write-only, pause/resume, stats, and API == YAML.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportConfig } from '../src/config/apply.js';
import { loadConfig, stringifyConfig, validateConsumer } from '../src/config/load.js';
import { PULL_CONSUMER, SOURCE, WEBHOOK_CONSUMER, expectRejections, startApi, type ApiFixture } from './api-fixture.js';
import { generateKeyPair } from '../src/signing/secrets.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('api_consumers');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
});
afterAll(async () => {
  await f?.stop();
});

const snapshot = async () =>
  JSON.stringify((await f.pool.query('SELECT name, config, state, updated_at FROM sluice.consumers ORDER BY name')).rows);

const SECRET_RE = /^whsec_[A-Za-z0-9+/]{43}=$/;

describe('pull consumers', () => {
  it('create, list, get; the registry knows it at once', async () => {
    const r = await f.call('POST', '/api/consumers', { ...PULL_CONSUMER, pull: { ack_wait: '1m', max_deliver: 5 } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      name: 'orders-pull',
      source: 'main',
      kind: 'pull',
      tables: ['public.orders'],
      group_by: true,
      dead_letter_blocks_group: false,
      annotations: {},
      pull: { ack_wait: '1m', max_ack_pending: 10_000, max_waiting: 20, max_deliver: 5 },
      state: 'active',
      state_reason: null,
    });
    expect(f.deps.consumers.get('orders-pull')?.id).toBe(r.body.id);
    const list = await f.call('GET', '/api/consumers');
    expect(list.body.data.map((c: { name: string }) => c.name)).toEqual(['orders-pull']);
    expect((await f.call('GET', '/api/consumers/orders-pull')).body).toEqual(list.body.data[0]);
  });

  it('annotations survive the round trip', async () => {
    const r = await f.call('PATCH', '/api/consumers/orders-pull', { annotations: { team: 'billing', tier: 1 } });
    expect(r.status).toBe(200);
    expect(r.body.annotations).toEqual({ team: 'billing', tier: 1 });
    expect(f.deps.consumers.get('orders-pull')?.annotations).toEqual({ team: 'billing', tier: 1 });
  });

  it('pause and resume', async () => {
    const paused = await f.call('POST', '/api/consumers/orders-pull/pause', { reason: 'maintenance' });
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ state: 'paused', state_reason: 'maintenance' });
    expect(f.deps.consumers.get('orders-pull')?.state).toBe('paused');
    const noBody = await f.call('POST', '/api/consumers/orders-pull/pause');
    expect(noBody.body.state_reason).toBe('paused through the API');
    const resumed = await f.call('POST', '/api/consumers/orders-pull/resume');
    expect(resumed.body).toMatchObject({ state: 'active', state_reason: null });
    expect(f.deps.consumers.get('orders-pull')?.state).toBe('active');
  });

  it('stats', async () => {
    const r = await f.call('GET', '/api/consumers/orders-pull/stats');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ pending: 0, in_flight: 0, dead_lettered: 0, oldest_pending_age_ms: null, pending_at_least: false });
  });
});

describe('webhook consumers', () => {
  let generated: string;

  it('a secret is generated when none is given and shown in the create response only', async () => {
    const r = await f.call('POST', '/api/consumers', WEBHOOK_CONSUMER);
    expect(r.status).toBe(201);
    expect(r.body.webhook.secrets).toHaveLength(1);
    generated = r.body.webhook.secrets[0];
    expect(generated).toMatch(SECRET_RE);
    expect(r.body.webhook.headers).toEqual({ 'X-Api-Key': '********' });
    expect(r.raw).not.toContain('super-secret-header-value');

    for (const later of [await f.call('GET', '/api/consumers/orders-hook'), await f.call('GET', '/api/consumers')]) {
      expect(later.raw).not.toContain(generated);
      expect(later.raw).not.toContain(generated.slice(6, 30));
      expect(later.raw).not.toContain('super-secret-header-value');
    }
    const got = (await f.call('GET', '/api/consumers/orders-hook')).body;
    expect(got.webhook.secrets).toEqual([`whsec_…${generated.slice(-4)}`]);
    expect(got.webhook.headers).toEqual({ 'X-Api-Key': '********' });
    // Stored in full, for signing.
    const { rows } = await f.pool.query("SELECT config FROM sluice.consumers WHERE name = 'orders-hook'");
    expect(rows[0].config.webhook.secrets).toEqual([generated]);
    expect(rows[0].config.webhook.headers).toEqual({ 'X-Api-Key': 'super-secret-header-value' });
  });

  it('a secret given by the caller is not echoed back', async () => {
    const own = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    const r = await f.call('POST', '/api/consumers', { ...WEBHOOK_CONSUMER, name: 'own-secret', webhook: { url: 'https://example.com/x', secrets: [own] } });
    expect(r.status).toBe(201);
    expect(r.raw).not.toContain(own);
    expect(r.body.webhook.secrets).toEqual([`whsec_…${own.slice(-4)}`]);
    expect((await f.call('DELETE', '/api/consumers/own-secret')).status).toBe(204);
  });

  it('takes an ed25519 whsk_ key (v1a) and masks it; refuses a whpk_ public key, which cannot sign', async () => {
    const { privateKey, publicKey } = generateKeyPair();
    const r = await f.call('POST', '/api/consumers', { ...WEBHOOK_CONSUMER, name: 'ed-hook', webhook: { url: 'https://example.com/x', secrets: [privateKey] } });
    expect(r.status).toBe(201);
    expect(r.raw).not.toContain(privateKey.slice(5, 30));
    expect(r.body.webhook.secrets).toEqual([`whsk_…${privateKey.slice(-4)}`]);
    expect((await f.call('DELETE', '/api/consumers/ed-hook')).status).toBe(204);

    const bad = await f.call('POST', '/api/consumers', { ...WEBHOOK_CONSUMER, name: 'pk-hook', webhook: { url: 'https://example.com/x', secrets: [publicKey] } });
    expect(bad.status).toBe(422);
    expect(bad.body.summary).toBeTruthy();
    expect(JSON.stringify(bad.body.validation_errors)).toMatch(/whsk_/);
    expect(bad.raw).not.toContain(publicKey.slice(5));
    expect((await f.call('GET', '/api/consumers/pk-hook')).status).toBe(404);
  });

  it('GET → edit → PATCH keeps masked secrets and header values; new values replace', async () => {
    const got = (await f.call('GET', '/api/consumers/orders-hook')).body;
    const webhook = { ...got.webhook, timeout: '10s', headers: { ...got.webhook.headers, 'X-Other': 'v2' } };
    const r = await f.call('PATCH', '/api/consumers/orders-hook', { webhook });
    expect(r.status).toBe(200);
    expect(r.body.webhook.timeout).toBe('10s');
    expect(r.body.webhook.headers).toEqual({ 'X-Api-Key': '********', 'X-Other': '********' });
    const { rows } = await f.pool.query("SELECT config FROM sluice.consumers WHERE name = 'orders-hook'");
    expect(rows[0].config.webhook.secrets).toEqual([generated]);
    expect(rows[0].config.webhook.headers).toEqual({ 'X-Api-Key': 'super-secret-header-value', 'X-Other': 'v2' });
    expect(rows[0].config.webhook.timeout_ms).toBe(10_000);

    const removed = await f.call('PATCH', '/api/consumers/orders-hook', { webhook: { headers: { 'X-Other': null } } });
    expect(removed.body.webhook.headers).toEqual({ 'X-Api-Key': '********' });
  });

  it('a consumer created through the API is the same resource as in YAML (export → load)', async () => {
    const yaml = stringifyConfig(await exportConfig(f.pool));
    const loaded = loadConfig({ text: yaml }, {});
    const stored = (await f.pool.query("SELECT config FROM sluice.consumers WHERE name = 'orders-hook'")).rows[0].config;
    expect(loaded.consumers.find((c) => c.name === 'orders-hook')).toEqual(stored);
    // And the create body, validated as YAML would be, gives that resource (with the generated secret).
    const fromYaml = validateConsumer(
      { ...WEBHOOK_CONSUMER, webhook: { ...WEBHOOK_CONSUMER.webhook, timeout: '10s', secrets: stored.webhook.secrets } },
      { sources: loaded.sources },
    );
    expect(fromYaml).toEqual(stored);
    expect(loaded.consumers.find((c) => c.name === 'orders-pull')).toEqual(
      (await f.pool.query("SELECT config FROM sluice.consumers WHERE name = 'orders-pull'")).rows[0].config,
    );
  });
});

describe('malformed and invalid input', () => {
  it('each gets a clear 4xx and changes nothing', async () => {
    const before = await snapshot();
    const hook = WEBHOOK_CONSUMER;
    await expectRejections(f, [
      ['POST', '/api/consumers', '{"name": "x",', 400, /not valid JSON/],
      ['POST', '/api/consumers', '"a string"', 400, /must be a JSON object/],
      ['POST', '/api/consumers', { ...PULL_CONSUMER, name: 'New_Consumer!' }, 422, /name/],
      ['POST', '/api/consumers', { ...PULL_CONSUMER, name: 'n2', tables: 'public.orders' }, 422, /tables: must be a list/],
      ['POST', '/api/consumers', { ...PULL_CONSUMER, name: 'n2', colour: 'blue' }, 422, /colour: unknown key/],
      ['POST', '/api/consumers', { ...PULL_CONSUMER, name: 'n2', source: 'mian' }, 422, /no source named "mian" \(did you mean "main"\?\)/],
      ['POST', '/api/consumers', { ...PULL_CONSUMER, name: 'n2', tables: ['public.items'] }, 422, /not captured by source "main"/],
      ['POST', '/api/consumers', { ...PULL_CONSUMER, name: 'n2', kind: 'carrier-pigeon' }, 422, /kind: must be one of/],
      ['POST', '/api/consumers', { ...PULL_CONSUMER, name: 'n2', pull: { ack_wait: 'forever' } }, 422, /pull.ack_wait/],
      ['POST', '/api/consumers', { ...hook, name: 'n2', webhook: { url: 'ftp://x' } }, 422, /webhook.url/],
      ['POST', '/api/consumers', { ...hook, name: 'n2', webhook: { url: 'https://x', secrets: ['whsec_short'] } }, 422, /secrets/],
      ['POST', '/api/consumers', { ...hook, name: 'n2', webhook: { url: 'https://x', headers: { 'webhook-id': 'x' } } }, 422, /set by Sluice/],
      ['POST', '/api/consumers', { ...hook, name: 'n2', webhook: undefined }, 422, /webhook: is required/],
      ['POST', '/api/consumers', PULL_CONSUMER, 409, /already exists/],
      ['PATCH', '/api/consumers/orders-pull', { name: 'other' }, 422, /name.*cannot be changed/],
      ['PATCH', '/api/consumers/orders-pull', { kind: 'webhook' }, 422, /kind.*cannot be changed/],
      ['PATCH', '/api/consumers/orders-pull', { pull: { max_waiting: 'lots' } }, 422, /pull.max_waiting/],
      ['PATCH', '/api/consumers/orders-pull', [1], 400, /must be a JSON object/],
      ['PATCH', '/api/consumers/nope', { tables: ['public.orders'] }, 404, /Consumer "nope" does not exist/],
      ['GET', '/api/consumers/nope', undefined, 404, /does not exist/],
      ['GET', '/api/consumers/nope/stats', undefined, 404, /does not exist/],
      ['POST', '/api/consumers/nope/pause', undefined, 404, /does not exist/],
      ['POST', '/api/consumers/nope/resume', undefined, 404, /does not exist/],
      ['POST', '/api/consumers/orders-pull/pause', { reason: 5 }, 422, /reason/],
      ['POST', '/api/consumers/orders-pull/pause', { why: 'x' }, 422, /why.*not a known field/],
      ['DELETE', '/api/consumers/nope', undefined, 404, /does not exist/],
    ]);
    expect(await snapshot()).toBe(before);
  });
});

describe('delete', () => {
  it('removes the consumer and its buffered messages', async () => {
    const id = f.deps.consumers.get('orders-pull')!.id;
    await f.pool.query(
      `INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx) VALUES ($1, 1, 0)`,
      [id],
    );
    expect((await f.call('DELETE', '/api/consumers/orders-pull')).status).toBe(204);
    expect((await f.call('GET', '/api/consumers/orders-pull')).status).toBe(404);
    expect(f.deps.consumers.get('orders-pull')).toBeUndefined();
    const { rows } = await f.pool.query('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1', [id]);
    expect(rows[0].n).toBe(0);
  });
});
