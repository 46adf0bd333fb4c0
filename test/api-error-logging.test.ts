// No error path logs a value that can hold a secret. Secrets are planted in a
// source (its URL's password) and consumers (a header value, a signing secret),
// then the database is broken underneath the app in three ways that make
// Postgres quote them back: a CHECK constraint (its detail is the failing row),
// a trigger whose exception quotes the row in its message, detail and hint, and
// renamed tables for every read path. Every route that can then fail is driven;
// each must answer the masked 500 with a request_id, and the captured log must
// hold none of the planted values.
import { Writable } from 'node:stream';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/http/app.js';
import { ADMIN_TOKEN, PULL_CONSUMER, SOURCE, startApi, type ApiFixture } from './api-fixture.js';

const PASSWORD = 'PW-source-s3cret-7f3a';
const HEADER = 'Bearer HDR-s3cret-91bc';
const SIGNING = 'whsec_' + Buffer.from('SIGNING-s3cret-0123456789abcdef').toString('base64');
const PLANTED = [PASSWORD, HEADER, 'HDR-s3cret-91bc', SIGNING, SIGNING.slice(6)];

// Its URL is set once the test database exists: a source's database is set up when it is saved.
const source = { ...SOURCE, name: 'secret-src', url: '' };
const hook = {
  name: 'secret-hook',
  source: 'main',
  kind: 'webhook',
  tables: ['public.orders'],
  webhook: { url: 'https://example.com/hook', headers: { Authorization: HEADER }, secrets: [SIGNING] },
};

let f: ApiFixture;
let app: FastifyInstance;
const lines: string[] = [];

beforeAll(async () => {
  f = await startApi('api_error_logging');
  // A role whose password is the planted secret, so the source can be saved (and set up).
  await f.pool.query(`CREATE ROLE secret_src LOGIN SUPERUSER PASSWORD '${PASSWORD}'`);
  const url = new URL(f.url);
  url.username = 'secret_src';
  url.password = PASSWORD;
  source.url = url.toString();
  for (const [path, body] of [['/api/sources', SOURCE], ['/api/sources', source], ['/api/consumers', PULL_CONSUMER], ['/api/consumers', hook]] as const) {
    const r = await f.call('POST', path, body);
    expect(r.status, `${path} ${r.raw}`).toBe(201);
  }
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  app = await buildApp({ ...f.deps, logger: { level: 'trace', stream } });
});
afterAll(async () => {
  await app?.close();
  await f?.stop();
});

type Req = [InjectOptions['method'], string, unknown?];

/** Each request is the masked 500, with its request id logged beside safe fields only. */
async function expectMasked500s(requests: Req[]) {
  for (const [method, url, body] of requests) {
    const label = `${method} ${url}`;
    const res = await app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(body !== undefined && { payload: JSON.stringify(body) }),
    });
    expect(res.statusCode, `${label}: ${res.body}`).toBe(500);
    expect(res.json(), label).toEqual({ summary: 'internal error', request_id: expect.any(String) });
    const logged = lines.map((l) => JSON.parse(l)).find((l) => l.reqId === res.json().request_id && l.msg === 'request failed');
    expect(logged?.error?.type, label).toBe('DatabaseError');
    expect(logged?.error?.code, label).toMatch(/^[0-9A-Z]{5}$/);
    for (const key of ['message', 'detail', 'where', 'hint', 'internalQuery']) expect(logged.error[key], `${label} ${key}`).toBeUndefined();
  }
}

function expectNoSecretLogged() {
  const all = lines.join('\n');
  expect(lines.length).toBeGreaterThan(0);
  for (const secret of PLANTED) expect(all.includes(secret), secret).toBe(false);
}

const writes = (): Req[] => [
  ['POST', '/api/sources', { ...source, name: 'secret-src-2', slot: 'other_slot' }],
  ['PATCH', `/api/sources/${source.name}`, { create_if_missing: false }],
  ['DELETE', `/api/sources/${source.name}`],
  ['POST', '/api/consumers', { ...hook, name: 'secret-hook-2' }],
  ['PATCH', `/api/consumers/${hook.name}`, { webhook: { timeout: '10s' } }],
  ['POST', `/api/consumers/${hook.name}/pause`, { reason: 'maintenance' }],
  ['POST', `/api/consumers/${hook.name}/resume`],
  ['POST', `/api/consumers/${hook.name}/rotate-secret`, {}],
  ['DELETE', `/api/consumers/${hook.name}`],
];

describe('a broken database never puts a secret in the log', () => {
  it('a CHECK constraint whose detail quotes the failing row (config included)', async () => {
    for (const table of ['sources', 'consumers']) {
      await f.pool.query(`ALTER TABLE sluice.${table} ADD CONSTRAINT test_broken CHECK (name IS NULL) NOT VALID`);
    }
    try {
      // DELETE passes a CHECK: a source with consumers is a 409, the webhook consumer goes.
      await expectMasked500s(writes().filter(([method]) => method !== 'DELETE'));
    } finally {
      for (const table of ['sources', 'consumers']) await f.pool.query(`ALTER TABLE sluice.${table} DROP CONSTRAINT test_broken`);
    }
    expectNoSecretLogged();
  });

  it('a trigger whose error quotes the row in its message, detail and hint', async () => {
    await f.pool.query(`
      CREATE FUNCTION sluice.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'refused row %', row_to_json(coalesce(NEW, OLD))
          USING DETAIL = row_to_json(coalesce(NEW, OLD))::text, HINT = (coalesce(NEW, OLD)).config::text;
      END $$`);
    for (const table of ['sources', 'consumers']) {
      await f.pool.query(`CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE OR DELETE ON sluice.${table} FOR EACH ROW EXECUTE FUNCTION sluice.test_refuse()`);
    }
    try {
      // The source is used by no consumer, so its DELETE reaches the trigger.
      await expectMasked500s(writes());
    } finally {
      for (const table of ['sources', 'consumers']) await f.pool.query(`DROP TRIGGER test_refuse ON sluice.${table}`);
      await f.pool.query('DROP FUNCTION sluice.test_refuse()');
    }
    expectNoSecretLogged();
  });

  it('tables gone from under every read path (management and pull routes alike)', async () => {
    const tables = ['sources', 'consumers', 'messages', 'api_tokens', 'webhook_attempts', 'webhook_batches'];
    for (const t of tables) await f.pool.query(`ALTER TABLE sluice.${t} RENAME TO ${t}_gone`);
    const pull = `/api/http_pull_consumers/${PULL_CONSUMER.name}`;
    try {
      await expectMasked500s([
        ['GET', '/api/sources'],
        ['GET', `/api/sources/${source.name}`],
        ['POST', `/api/sources/${source.name}/test`],
        ['GET', '/api/consumers'],
        ['GET', `/api/consumers/${hook.name}`],
        ['GET', `/api/consumers/${PULL_CONSUMER.name}/stats`],
        ['GET', `/api/consumers/${PULL_CONSUMER.name}/dead-letters`],
        ['POST', `/api/consumers/${PULL_CONSUMER.name}/dead-letters/retry`, { all: true }],
        ['GET', `/api/consumers/${hook.name}/attempts`],
        ['GET', '/api/tokens'],
        ['POST', '/api/tokens', { name: 'x', consumers: [PULL_CONSUMER.name] }],
        ['GET', `${pull}/receive`],
        ['POST', `${pull}/ack`, { ack_ids: ['AAAAAAAAAAAAAAAAAAAAAA'] }],
        ['POST', `${pull}/nack`, { ack_ids: ['AAAAAAAAAAAAAAAAAAAAAA'] }],
      ]);
    } finally {
      for (const t of tables) await f.pool.query(`ALTER TABLE sluice.${t}_gone RENAME TO ${t}`);
    }
    expectNoSecretLogged();
  });
});
