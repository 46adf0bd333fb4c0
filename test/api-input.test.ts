// Input that used to reach Postgres, or slip past the documented rules, through
// the real app and a real Postgres: NUL characters, runaway nesting, content
// types and encodings the API does not list, loose pull parameters, and the
// requests fastify or Node refused in a shape of their own. Each gets its 4xx
// in the one error shape, and changes nothing.
import net from 'node:net';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, PULL_CONSUMER, SOURCE, WEBHOOK_CONSUMER, startApi, type ApiFixture } from './api-fixture.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('api_input');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  expect((await f.call('POST', '/api/consumers', PULL_CONSUMER)).status).toBe(201);
  expect((await f.call('POST', '/api/consumers', WEBHOOK_CONSUMER)).status).toBe(201);
});
afterAll(async () => {
  await f?.stop();
});

/** Everything a refused request could have changed. */
async function snapshot(): Promise<string> {
  const tables = ['sources', 'consumers', 'api_tokens', 'messages'];
  const parts = await Promise.all(tables.map((t) => f.pool.query(`SELECT to_jsonb(x)::text AS row FROM sluice.${t} x ORDER BY 1`)));
  return JSON.stringify(parts.map((p) => p.rows.map((r) => r.row)));
}

interface Sent {
  method?: InjectOptions['method'];
  url: string;
  payload?: string | Buffer;
  headers?: Record<string, string>;
}

async function send({ method = 'POST', url, payload, headers = { 'content-type': 'application/json' } }: Sent) {
  const res = await f.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers }, ...(payload !== undefined && { payload }) });
  return { status: res.statusCode, body: res.json() as { summary: string; validation_errors?: Record<string, string[]> }, raw: res.body };
}

/** Each request gets `status`, a summary, and (for 422) the field named; nothing stored changes. */
async function expectRefused(cases: Array<[Sent, number, string?]>) {
  const before = await snapshot();
  for (const [req, status, field] of cases) {
    const label = `${req.method ?? 'POST'} ${req.url} ${String(req.payload).slice(0, 80)}`;
    const res = await send(req);
    expect(res.status, label).toBe(status);
    expect(res.body.summary, label).toMatch(/\w{3,}/);
    if (field !== undefined) expect(Object.keys(res.body.validation_errors ?? {}), label).toContain(field);
    // The refusal never echoes a raw NUL back.
    expect(res.raw.includes('\u0000'), label).toBe(false);
  }
  expect(await snapshot()).toBe(before);
}

const json = (value: unknown) => JSON.stringify(value);
const nested = (levels: number, leaf: unknown = 1): unknown => {
  let v = leaf;
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
};
/** As JSON text: JSON.stringify itself overflows the stack at such depths. */
const deepText = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);

describe('NUL characters (Postgres text and jsonb cannot hold them)', () => {
  it('are a 422 naming the field, wherever they are, before any database call', async () => {
    const hook = WEBHOOK_CONSUMER.name;
    await expectRefused([
      [{ url: '/api/tokens', payload: json({ name: 'ops\u0000' }) }, 422, 'name'],
      [{ url: '/api/consumers', payload: json({ ...PULL_CONSUMER, name: 'x1', annotations: { 'team\u0000': 'a' } }) }, 422, 'annotations["team\\u0000"]'],
      [{ url: '/api/consumers', payload: json({ ...PULL_CONSUMER, name: 'x2', annotations: { team: ['ok', 'a\u0000b'] } }) }, 422, 'annotations.team[1]'],
      [{ method: 'PATCH', url: `/api/consumers/${hook}`, payload: json({ webhook: { headers: { 'X-Api-Key': 'Bearer k\u0000' } } }) }, 422, 'webhook.headers["X-Api-Key"]'],
      [{ url: '/api/sources', payload: json({ name: 'other', url: 'postgres://u:pw@db/app\u0000', tables: ['t'] }) }, 422, 'url'],
      [{ url: `/api/consumers/${hook}/pause`, payload: json({ reason: 'maintenance\u0000' }) }, 422, 'reason'],
      [{ method: 'GET', url: '/api/consumers/a%00b', headers: {} }, 422, 'name'],
      [{ method: 'DELETE', url: '/api/sources/a%00b', headers: {} }, 422, 'name'],
      [{ method: 'GET', url: `/api/consumers/${hook}/dead-letters?cursor=1%00`, headers: {} }, 422, 'cursor'],
      [{ url: `/api/http_pull_consumers/${PULL_CONSUMER.name}/ack`, payload: json({ ack_ids: ['AAAA\u0000'] }) }, 422, 'ack_ids[0]'],
      [{ method: 'GET', url: `/api/http_pull_consumers/${PULL_CONSUMER.name}/receive?wait_for=1s%00`, headers: {} }, 422, 'wait_for'],
    ]);
    // The consumer paused by nobody is still active.
    expect((await f.call('GET', `/api/consumers/${hook}`)).body.state).toBe('active');
  });
});

describe('nesting and size', () => {
  it('a body nested thousands of levels deep is a 422, not a stack overflow', async () => {
    await expectRefused([
      [{ url: '/api/consumers', payload: json({ ...PULL_CONSUMER, name: 'deep', annotations: {} }).replace('{}', deepText(4150)) }, 422, 'annotations' + '.a'.repeat(63)],
      [{ url: '/api/tokens', payload: '['.repeat(100_000) + ']'.repeat(100_000) }, 422],
      [{ url: `/api/http_pull_consumers/${PULL_CONSUMER.name}/ack`, payload: json({ ack_ids: nested(70) }) }, 422],
    ]);
  });

  it("a consumer's or source's annotations nest at most 32 levels and hold at most 64 KiB", async () => {
    await expectRefused([
      [{ url: '/api/consumers', payload: json({ ...PULL_CONSUMER, name: 'deep33', annotations: nested(33) }) }, 422, 'annotations'],
      [{ url: '/api/consumers', payload: json({ ...PULL_CONSUMER, name: 'big', annotations: { note: 'x'.repeat(65_536) } }) }, 422, 'annotations'],
      [{ url: '/api/sources', payload: json({ name: 'deep-src', tables: ['t'], annotations: nested(33) }) }, 422, 'annotations'],
    ]);
    const ok = await f.call('POST', '/api/consumers', { ...PULL_CONSUMER, name: 'deep32', annotations: nested(32) });
    expect(ok.status).toBe(201);
    expect((await f.call('DELETE', '/api/consumers/deep32')).status).toBe(204);
  });
});

describe('bodies: exactly the documented content types, charset and encoding', () => {
  const token = (name: string) => json({ name });

  it('JSON is accepted as application/json (charset utf-8 or none), without a type, or as curl -d sends it', async () => {
    const types = ['application/json', 'application/json; charset=utf-8', 'application/json;charset="UTF-8"', 'application/x-www-form-urlencoded', undefined];
    for (const type of types) {
      const res = await send({ url: '/api/tokens', payload: token(`t-${type ?? 'none'}`), headers: type ? { 'content-type': type } : {} });
      expect(res.status, String(type)).toBe(201);
    }
    const identity = await send({ url: '/api/tokens', payload: token('t-identity'), headers: { 'content-type': 'application/json', 'content-encoding': 'identity' } });
    expect(identity.status).toBe(201);
  });

  it('other types, charsets and encodings are 415; bytes that are not UTF-8 are 415, never stored as U+FFFD', async () => {
    const ack = `/api/http_pull_consumers/${PULL_CONSUMER.name}/ack`;
    await expectRefused([
      [{ url: '/api/tokens', payload: token('plain'), headers: { 'content-type': 'text/plain' } }, 415],
      [{ url: '/api/tokens', payload: token('octets'), headers: { 'content-type': 'application/octet-stream' } }, 415],
      [{ url: '/api/tokens', payload: token('utf16'), headers: { 'content-type': 'application/json; charset=utf-16' } }, 415],
      [{ url: '/api/tokens', payload: token('ebcdic'), headers: { 'content-type': 'application/json; charset=ebcdic' } }, 415],
      [{ url: '/api/tokens', payload: token('gzip'), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }, 415],
      [{ url: '/api/tokens', payload: Buffer.concat([Buffer.from('{"name": "caf'), Buffer.from([0xe9]), Buffer.from('"}')]) }, 415],
      [{ url: ack, payload: json({ ack_ids: [] }), headers: { 'content-type': 'text/plain' } }, 415],
      [{ url: ack, payload: json({ ack_ids: [] }), headers: { 'content-encoding': 'gzip' } }, 415],
    ]);
    const res = await send({ url: '/api/tokens', payload: token('plain'), headers: { 'content-type': 'text/plain' } });
    expect(res.body.summary).toMatch(/Content-Type "text\/plain" is not accepted; send JSON as application\/json/);
  });

  it('pull parameters are exactly as documented: no spaces around numbers or units', async () => {
    const receive = `/api/http_pull_consumers/${PULL_CONSUMER.name}/receive`;
    await expectRefused([
      [{ url: receive, payload: json({ batch_size: ' 10' }) }, 422, 'batch_size'],
      [{ url: receive, payload: json({ max_batch_size: '10 ' }) }, 422, 'max_batch_size'],
      [{ url: receive, payload: json({ wait_for: '5 s' }) }, 422, 'wait_for'],
      [{ method: 'GET', url: `${receive}?batch_size=%2010`, headers: {} }, 422, 'batch_size'],
    ]);
    const ok = await send({ url: receive, payload: json({ batch_size: '10', wait_for: '500ms' }) });
    expect(ok.status).toBe(200);
  });
});

describe("fastify's and Node's own refusals have the one error shape", () => {
  it('a URL that does not decode is a 400 with a summary', async () => {
    for (const url of ['/api/consumers/%ZZ', `/api/http_pull_consumers/%E0%A4%A/receive`]) {
      const res = await send({ method: 'GET', url, headers: {} });
      expect(res.status, url).toBe(400);
      expect(res.body, url).toEqual({ summary: 'The URL does not decode: a "%" must start an escape such as %20.' });
    }
  });

  it('a Content-Length that does not match the body is a 400 with a summary', async () => {
    const res = await f.app.inject({
      method: 'POST',
      url: '/api/tokens',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', 'content-length': '5' },
      payload: json({ name: 'mismatch' }),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ summary: 'The Content-Length header does not match the body.' });
  });

  describe('over real HTTP', () => {
    let port = 0;
    beforeAll(async () => {
      await f.app.listen({ host: '127.0.0.1', port: 0 });
      port = (f.app.server.address() as net.AddressInfo).port;
    });

    /** Writes raw bytes, reads every response until the server closes the connection (5 s at most). */
    function exchange(request: string): Promise<string> {
      return new Promise((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        let received = '';
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error(`no close within 5 s; got ${received.slice(0, 200)}`));
        }, 5000);
        socket.on('data', (d) => (received += d.toString('latin1')));
        socket.on('error', () => {});
        socket.on('close', () => {
          clearTimeout(timer);
          resolve(received);
        });
        socket.end(request);
      });
    }

    const bodies = (raw: string) => raw.split(/HTTP\/1\.1 /).filter(Boolean).map((r) => ({ status: Number(r.slice(0, 3)), body: JSON.parse(r.slice(r.indexOf('\r\n\r\n') + 4)) }));

    it('a body longer than its Content-Length: the rest is not HTTP, answered with a summary', async () => {
      const body = json({ name: 'counted' });
      const raw = await exchange(
        `POST /api/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n${body}, "consumers": ["x"]}`,
      );
      // Node's parser refuses the extra bytes at once, before the token is
      // stored and answered, and closes the connection.
      const answers = bodies(raw);
      expect(answers.map((a) => a.status)).toEqual([400]);
      expect(answers[0].body).toEqual({ summary: expect.stringMatching(/^The request is not valid HTTP; check that Content-Length matches the body/) });
    });

    it('a 70 KB path is a 431 with a summary', async () => {
      const raw = await exchange(`GET /api/consumers/${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const [answer] = bodies(raw);
      expect(answer.status).toBe(431);
      expect(answer.body).toEqual({ summary: 'The request line and headers are larger than this server accepts (16 KiB).' });
    });
  });
});
