// The HTTP log is quiet by default: no line per request at info (fastify's
// default wrote two), one line per request at debug, with the path alone.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/http/app.js';
import { ADMIN_TOKEN, startApi, type ApiFixture } from './api-fixture.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('http_logging');
});
afterAll(async () => {
  await f?.stop();
});

async function logOf(level: string): Promise<Array<Record<string, unknown>>> {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const app = await buildApp({ ...f.deps, logger: { level, stream } });
  try {
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({ method: 'GET', url: '/api/sources?secret=q', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(res.statusCode).toBe(200);
    }
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
  } finally {
    await app.close();
  }
  return lines.map((l) => JSON.parse(l));
}

describe('request logging', () => {
  it('writes nothing per request at info', async () => {
    expect(await logOf('info')).toEqual([]);
  });

  it('writes one debug line per request, with method, path (no query), status and time', async () => {
    const lines = (await logOf('debug')).filter((l) => l.msg === 'request');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatchObject({ level: 20, method: 'GET', path: '/api/sources', status: 200 });
    expect(typeof lines[0].ms).toBe('number');
    expect(JSON.stringify(lines)).not.toContain('secret=q');
  });
});
