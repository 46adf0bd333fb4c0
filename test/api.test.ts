// The app as a whole: health and readiness, the error shape, the OpenAPI
// document, log redaction, and a real listening server.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { createPool } from '../src/db/pool.js';
import { buildApp } from '../src/http/app.js';
import { ADMIN_TOKEN, startApi, type ApiFixture } from './api-fixture.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('api_app');
});
afterAll(async () => {
  await f?.stop();
});

const running = (name: string, ok: boolean, standingBy = false) => ({
  name,
  running: ok,
  standing_by: standingBy,
  slot: `sluice_${name}`,
  lag_bytes: 0,
  last_error: ok ? null : 'connect ECONNREFUSED 10.1.2.3:5432 (postgres://app:hunter2@db.internal/app)',
});

describe('health and readiness', () => {
  it('/health answers 200 without a token', async () => {
    const r = await f.call('GET', '/health', undefined, null);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok' });
  });

  it('/ready is 200 when the buffer answers and every source runs', async () => {
    f.statuses.splice(0, f.statuses.length, running('a', true), running('b', true));
    const r = await f.call('GET', '/ready', undefined, null);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok' });
  });

  it('/ready is 503 when a source is not running, and says nothing more than "capture"', async () => {
    f.statuses.splice(0, f.statuses.length, running('a', true), running('b', false));
    const r = await f.call('GET', '/ready', undefined, null);
    expect(r.status).toBe(503);
    expect(r.body).toEqual({ summary: 'Not ready: a source is not being captured.', status: 'unavailable', reason: 'capture' });
    for (const leak of ['10.1.2.3', 'hunter2', 'db.internal', 'ECONNREFUSED', '"b"']) expect(r.raw).not.toContain(leak);
    f.statuses.splice(0, f.statuses.length);
  });

  it('/ready is 200 on a second gateway standing by for a source another process streams', async () => {
    f.statuses.splice(0, f.statuses.length, running('a', true), { ...running('b', false, true), last_error: 'slot sluice_b is in use by another process (standing by)' });
    const r = await f.call('GET', '/ready', undefined, null);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok' });
    f.statuses.splice(0, f.statuses.length);
  });

  it('/ready is 503 "buffer" when the buffer does not answer, without the error or address', async () => {
    const dead = createPool('postgres://postgres:topsecret@127.0.0.1:1/none');
    const app = await buildApp({ pool: dead, consumers: new ConsumerRegistry(dead), instanceId: 't', logger: false });
    try {
      const r = await app.inject({ method: 'GET', url: '/ready' });
      expect(r.statusCode).toBe(503);
      expect(r.json()).toEqual({ summary: 'Not ready: the buffer database does not answer.', status: 'unavailable', reason: 'buffer' });
      for (const leak of ['127.0.0.1', 'topsecret', 'ECONNREFUSED']) expect(r.body).not.toContain(leak);
    } finally {
      await app.close();
      await dead.end();
    }
  });
});

describe('error shape', () => {
  it('an unknown route is a 404 in the error shape', async () => {
    const outside = await f.call('GET', '/nope', undefined, null);
    expect(outside.status).toBe(404);
    expect(outside.body).toEqual({ summary: 'No route for GET /nope.' });
    const inside = await f.call('GET', '/api/nope');
    expect(inside.status).toBe(404);
    expect(inside.body.summary).toMatch(/No route for GET \/api\/nope/);
  });

  it('an unknown /api route still needs a token (it reveals nothing)', async () => {
    const r = await f.call('GET', '/api/nope', undefined, null);
    expect(r.status).toBe(401);
  });

  it('a body that is not JSON is a 400 with a clear summary, whatever the content type', async () => {
    for (const contentType of ['application/json', 'application/x-www-form-urlencoded', undefined]) {
      const r = await f.app.inject({
        method: 'POST',
        url: '/api/tokens',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(contentType && { 'content-type': contentType }) },
        payload: '{"name": ',
      });
      expect(r.statusCode, String(contentType)).toBe(400);
      expect(r.json()).toEqual({ summary: 'The request body is not valid JSON.' });
    }
  });

  it('a JSON body is accepted with no content type or a form type (curl -d)', async () => {
    for (const contentType of ['application/x-www-form-urlencoded', undefined]) {
      const r = await f.app.inject({
        method: 'POST',
        url: '/api/tokens',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(contentType && { 'content-type': contentType }) },
        payload: JSON.stringify({ name: `via-${contentType ?? 'none'}` }),
      });
      expect(r.statusCode, String(contentType)).toBe(201);
    }
  });

  it('a body over the limit is a 413 with a clear summary', async () => {
    const app = await buildApp({ ...f.deps, bodyLimitBytes: 64 });
    try {
      const r = await app.inject({
        method: 'POST',
        url: '/api/tokens',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ name: 'x'.repeat(100) }),
      });
      expect(r.statusCode).toBe(413);
      expect(r.json()).toEqual({ summary: 'The request body is larger than this server accepts.' });
    } finally {
      await app.close();
    }
  });

  it('wrong types and unknown fields are 422 with every field named', async () => {
    const r = await f.call('POST', '/api/tokens', { name: 5, consumers: 'x', extra: true });
    expect(r.status).toBe(422);
    expect(r.body.summary).toMatch(/^Invalid request: /);
    expect(Object.keys(r.body.validation_errors).sort()).toEqual(['consumers', 'extra', 'name']);
    expect(r.body.validation_errors.extra).toEqual(['is not a known field']);
  });

  it('a 5xx is masked, carries the request id, and is logged with it (never a stack)', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const app = await buildApp({ ...f.deps, logger: { level: 'info', stream } });
    app.get('/boom', async () => {
      throw new Error('db password is hunter2');
    });
    try {
      const r = await app.inject({ method: 'GET', url: '/boom' });
      expect(r.statusCode).toBe(500);
      const body = r.json();
      expect(Object.keys(body).sort()).toEqual(['request_id', 'summary']);
      expect(body.summary).toBe('internal error');
      expect(r.body).not.toContain('hunter2');
      expect(r.body).not.toContain('at ');
      const logged = lines.map((l) => JSON.parse(l)).find((l) => l.error?.message === 'db password is hunter2');
      expect(logged?.reqId).toBe(body.request_id);
      expect(logged?.error?.type).toBe('Error');
    } finally {
      await app.close();
    }
  });

  it('never logs a bearer token', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const app = await buildApp({ ...f.deps, logger: { level: 'trace', stream } });
    try {
      await app.inject({ method: 'GET', url: '/api/sources', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      await app.inject({ method: 'GET', url: '/api/sources', headers: { authorization: 'Bearer slk_guessed-token-value' } });
      expect(lines.length).toBeGreaterThan(0);
      const all = lines.join('\n');
      expect(all).not.toContain(ADMIN_TOKEN);
      expect(all).not.toContain('slk_guessed-token-value');
    } finally {
      await app.close();
    }
  });
});

describe('OpenAPI', () => {
  it('/api/openapi.json is an OpenAPI 3 document listing every route', async () => {
    const r = await f.call('GET', '/api/openapi.json');
    expect(r.status).toBe(200);
    expect(r.body.openapi).toMatch(/^3\./);
    const listed = Object.entries(r.body.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    const routes = [
      ['GET', '/health'],
      ['GET', '/ready'],
      ['GET', '/api/sources'],
      ['POST', '/api/sources'],
      ['GET', '/api/sources/{name}'],
      ['PATCH', '/api/sources/{name}'],
      ['DELETE', '/api/sources/{name}'],
      ['POST', '/api/sources/{name}/test'],
      ['GET', '/api/consumers'],
      ['POST', '/api/consumers'],
      ['GET', '/api/consumers/{name}'],
      ['PATCH', '/api/consumers/{name}'],
      ['DELETE', '/api/consumers/{name}'],
      ['POST', '/api/consumers/{name}/pause'],
      ['POST', '/api/consumers/{name}/resume'],
      ['GET', '/api/consumers/{name}/stats'],
      ['GET', '/api/consumers/{name}/dead-letters'],
      ['POST', '/api/consumers/{name}/dead-letters/retry'],
      ['POST', '/api/consumers/{name}/dead-letters/discard'],
      ['POST', '/api/tokens'],
      ['GET', '/api/tokens'],
      ['DELETE', '/api/tokens/{id}'],
      ...['http_pull_consumers', 'sequin_streams'].flatMap((base) => [
        ['GET', `/api/${base}/{name}/receive`],
        ['POST', `/api/${base}/{name}/receive`],
        ['POST', `/api/${base}/{name}/ack`],
        ['POST', `/api/${base}/{name}/nack`],
        ['POST', `/api/${base}/{name}/modify-visibility`],
      ]),
    ].map(([method, url]) => `${method} ${url}`);
    for (const route of routes) expect(listed).toContain(route);
    expect(r.body.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
    // The body of a consumer is the config loader's schema.
    const create = r.body.paths['/api/consumers'].post;
    expect(Object.keys(create.requestBody.content['application/json'].schema.properties)).toContain('webhook');
  });
});

describe('a real server', () => {
  it('serves the API on 127.0.0.1:0', async () => {
    const app = await buildApp(f.deps);
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      const base = `http://127.0.0.1:${port}`;
      expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok' });
      const denied = await fetch(`${base}/api/tokens`);
      expect(denied.status).toBe(401);
      expect(denied.headers.get('www-authenticate')).toBe('Bearer');
      // curl -d style: a JSON body sent as a form.
      const created = await fetch(`${base}/api/tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: JSON.stringify({ name: 'over-http' }),
      });
      expect(created.status).toBe(201);
      const { token } = (await created.json()) as { token: string };
      const listed = await fetch(`${base}/api/tokens`, { headers: { authorization: `Bearer ${token}` } });
      expect(listed.status).toBe(200);
    } finally {
      await app.close();
    }
  });
});
