// Bearer tokens: the bootstrap admin token, stored admin and scoped tokens,
// revocation, and what each kind may reach.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../src/http/auth.js';
import { PULL_CONSUMER, SOURCE, startApi, type ApiFixture } from './api-fixture.js';
import { eventually } from './helpers/capture.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('api_auth');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  expect((await f.call('POST', '/api/consumers', PULL_CONSUMER)).status).toBe(201);
  expect((await f.call('POST', '/api/consumers', { ...PULL_CONSUMER, name: 'other-pull' })).status).toBe(201);
});
afterAll(async () => {
  await f?.stop();
});

describe('authentication', () => {
  it('401 without a token, with a malformed header, and with an unknown token', async () => {
    const missing = await f.call('GET', '/api/sources', undefined, null);
    expect(missing.status).toBe(401);
    expect(missing.body.summary).toMatch(/Missing bearer token/);
    const basic = await f.app.inject({ method: 'GET', url: '/api/sources', headers: { authorization: 'Basic YTpi' } });
    expect(basic.statusCode).toBe(401);
    const unknown = await f.call('GET', '/api/sources', undefined, 'slk_not-a-real-token');
    expect(unknown.status).toBe(401);
    expect(unknown.body).toEqual({ summary: 'Unknown or revoked token.' });
    expect(unknown.headers['www-authenticate']).toMatch(/invalid_token/);
  });

  it('the bootstrap admin token reaches the management API', async () => {
    expect((await f.call('GET', '/api/sources')).status).toBe(200);
  });

  it('a near miss of the admin token is refused', async () => {
    expect((await f.call('GET', '/api/sources', undefined, 'test-admin-token-012345678')).status).toBe(401);
    expect((await f.call('GET', '/api/sources', undefined, 'test-admin-token-0123456789x')).status).toBe(401);
  });
});

describe('tokens', () => {
  it('an admin token: the secret is shown once, stored only as a digest, listed by hint', async () => {
    const created = await f.call('POST', '/api/tokens', { name: 'ci' });
    expect(created.status).toBe(201);
    const { token, id, hint } = created.body;
    expect(token).toMatch(/^slk_[A-Za-z0-9_-]{43}$/);
    expect(created.body).toMatchObject({ name: 'ci', admin: true, consumers: null });
    expect(token.startsWith(hint.replace('…', ''))).toBe(true);

    const stored = await f.pool.query('SELECT token_hash, hint FROM sluice.api_tokens WHERE id = $1', [id]);
    expect(stored.rows[0].token_hash.equals(sha256(token))).toBe(true);
    const dump = JSON.stringify((await f.pool.query('SELECT * FROM sluice.api_tokens')).rows);
    expect(dump).not.toContain(token);

    const list = await f.call('GET', '/api/tokens');
    expect(list.status).toBe(200);
    const entry = list.body.data.find((t: { id: string }) => t.id === id);
    expect(entry).toEqual({ id, name: 'ci', admin: true, consumers: null, hint, created_at: created.body.created_at, last_used_at: null });
    expect(list.raw).not.toContain(token);

    expect((await f.call('GET', '/api/consumers', undefined, token)).status).toBe(200);
  });

  it('records when a stored token was last used, at most once a minute, without a write per request', async () => {
    const { token, id } = (await f.call('POST', '/api/tokens', { name: 'used' })).body;
    const lastUsed = async () => (await f.call('GET', '/api/tokens')).body.data.find((t: { id: string }) => t.id === id).last_used_at;
    expect(await lastUsed()).toBeNull();
    const before = Date.now();
    expect((await f.call('GET', '/api/consumers', undefined, token)).status).toBe(200);
    // Written in the background: the request does not wait for it.
    await eventually(async () => (await lastUsed()) !== null);
    const first = Date.parse(await lastUsed());
    expect(first).toBeGreaterThanOrEqual(before - 1000);
    // More requests within the minute send no UPDATE at all (counted by a test-only trigger).
    await f.pool.query(`
      CREATE TABLE public.token_updates (n int NOT NULL);
      INSERT INTO public.token_updates VALUES (0);
      CREATE FUNCTION public.count_token_update() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN UPDATE public.token_updates SET n = n + 1; RETURN NULL; END $$;
      CREATE TRIGGER count_token_update AFTER UPDATE ON sluice.api_tokens FOR EACH STATEMENT EXECUTE FUNCTION public.count_token_update();`);
    for (let i = 0; i < 10; i++) expect((await f.call('GET', '/api/consumers', undefined, token)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect((await f.pool.query('SELECT n FROM public.token_updates')).rows[0].n).toBe(0);
    expect(Date.parse(await lastUsed())).toBe(first);
  });

  it('a scoped token is 403 on the management API but for reads of its own consumers', async () => {
    const { token } = (await f.call('POST', '/api/tokens', { name: 'worker', consumers: ['orders-pull'] })).body;
    for (const [method, url] of [
      ['GET', '/api/sources'],
      ['POST', '/api/consumers/orders-pull/pause'],
      ['POST', '/api/tokens'],
      ['GET', '/api/openapi.json'],
    ] as const) {
      const r = await f.call(method, url, method === 'POST' ? { name: 'x' } : undefined, token);
      expect(r.status, `${method} ${url}`).toBe(403);
      expect(r.body.summary).toMatch(/only call the pull routes of its consumers and read those consumers; this route needs an admin token/);
    }
    // Reads of its own consumers (every such route: test/api-console.test.ts).
    expect((await f.call('GET', '/api/consumers/orders-pull', undefined, token)).status).toBe(200);
    expect((await f.call('GET', '/api/consumers/orders-pull/stats', undefined, token)).status).toBe(200);
    const other = await f.call('GET', '/api/consumers/other-pull/stats', undefined, token);
    expect(other.status).toBe(403);
    expect(other.body).toEqual({ summary: 'This token may not use consumer "other-pull".' });
  });

  it('a scoped token reaches its own consumer\'s pull routes and is 403 on another\'s', async () => {
    const { token } = (await f.call('POST', '/api/tokens', { name: 'worker2', consumers: ['orders-pull'] })).body;
    const own = await f.call('POST', '/api/http_pull_consumers/orders-pull/receive', {}, token);
    expect(own.status).toBe(200);
    expect(own.body).toEqual({ data: [] });
    for (const path of ['/api/http_pull_consumers/other-pull/receive', '/api/sequin_streams/other-pull/receive']) {
      const other = await f.call('POST', path, {}, token);
      expect(other.status, path).toBe(403);
    }
    const ack = await f.call('POST', '/api/http_pull_consumers/other-pull/ack', { ack_ids: [] }, token);
    expect(ack.status).toBe(403);
  });

  it('a scoped token must name existing consumers', async () => {
    const before = await f.pool.query('SELECT count(*)::int AS n FROM sluice.api_tokens');
    const r = await f.call('POST', '/api/tokens', { name: 'bad', consumers: ['orders-pull', 'nope'] });
    expect(r.status).toBe(422);
    expect(r.body.validation_errors).toEqual({ consumers: ['names unknown consumer "nope"'] });
    const after = await f.pool.query('SELECT count(*)::int AS n FROM sluice.api_tokens');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('malformed token requests are refused with a clear summary', async () => {
    expect((await f.call('POST', '/api/tokens', {})).body.validation_errors).toEqual({ name: ['is required'] });
    expect((await f.call('POST', '/api/tokens', { name: '' })).status).toBe(422);
    expect((await f.call('POST', '/api/tokens', { name: 'x', consumers: [] })).status).toBe(422);
    expect((await f.call('POST', '/api/tokens', { name: 'x', admin: true })).body.validation_errors).toEqual({
      admin: ['is not a known field'],
    });
  });

  it('a revoked token is refused at once, even just after being used (cached)', async () => {
    const { token, id } = (await f.call('POST', '/api/tokens', { name: 'short-lived' })).body;
    expect((await f.call('GET', '/api/sources', undefined, token)).status).toBe(200);
    expect((await f.call('GET', '/api/sources', undefined, token)).status).toBe(200);
    const del = await f.call('DELETE', `/api/tokens/${id}`);
    expect(del.status).toBe(204);
    expect(del.raw).toBe('');
    expect((await f.call('GET', '/api/sources', undefined, token)).status).toBe(401);
    expect((await f.call('GET', '/api/tokens')).body.data.map((t: { id: string }) => t.id)).not.toContain(id);
  });

  it('a token revoked by another process stops working once its registry reloads', async () => {
    const { token, id } = (await f.call('POST', '/api/tokens', { name: 'elsewhere' })).body;
    expect((await f.call('GET', '/api/sources', undefined, token)).status).toBe(200);
    // Another gateway deletes the row and notifies; here that arrives as a registry reload.
    await f.pool.query('DELETE FROM sluice.api_tokens WHERE id = $1', [id]);
    await f.deps.consumers.reload();
    expect((await f.call('GET', '/api/sources', undefined, token)).status).toBe(401);
  });

  it('revoking an unknown or malformed id is a 404', async () => {
    expect((await f.call('DELETE', '/api/tokens/00000000-0000-0000-0000-000000000000')).status).toBe(404);
    const r = await f.call('DELETE', '/api/tokens/not-a-uuid');
    expect(r.status).toBe(404);
    expect(r.body.summary).toBe('Token not-a-uuid does not exist.');
  });
});
