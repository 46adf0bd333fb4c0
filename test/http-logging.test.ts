// The HTTP log is quiet by default: no line per request at info (fastify's
// default wrote two), one line per request at debug, with the path alone.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/http/app.js';
import { ADMIN_TOKEN, PULL_CONSUMER, SOURCE, startApi, type ApiFixture } from './api-fixture.js';
import { insertSeries } from './helpers/buffer.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('http_logging');
});
afterAll(async () => {
  await f?.stop();
});

/** A stream for pino that keeps the lines written to it. */
function logSink(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream };
}

async function logOf(level: string): Promise<Array<Record<string, unknown>>> {
  const { lines, stream } = logSink();
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

  it('writes one info line when a consumer is paused or resumed through the API, with the consumer and the reason', async () => {
    expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
    expect((await f.call('POST', '/api/consumers', PULL_CONSUMER)).status).toBe(201);
    const { lines, stream } = logSink();
    const app = await buildApp({ ...f.deps, logger: { level: 'info', stream } });
    try {
      const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
      const url = `/api/consumers/${PULL_CONSUMER.name}`;
      expect((await app.inject({ method: 'POST', url: `${url}/pause`, headers, payload: { reason: 'deploying' } })).statusCode).toBe(200);
      expect((await app.inject({ method: 'POST', url: `${url}/resume`, headers, payload: {} })).statusCode).toBe(200);
    } finally {
      await app.close();
    }
    const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.consumer);
    expect(logged).toMatchObject([
      { level: 30, msg: 'consumer paused', consumer: PULL_CONSUMER.name, state: 'paused', reason: 'deploying' },
      { level: 30, msg: 'consumer resumed', consumer: PULL_CONSUMER.name, state: 'active' },
    ]);
  });

  it('writes one warn line when a pull claim makes dead letters (max_deliver), with the consumer, groups and reason', async () => {
    const spent = { name: 'spent-pull', source: 'main', kind: 'pull', tables: ['public.orders'], pull: { max_deliver: 1 } };
    expect((await f.call('POST', '/api/consumers', spent)).status).toBe(201);
    await f.deps.consumers.reload();
    const id = (await f.pool.query(`SELECT id FROM sluice.consumers WHERE name = 'spent-pull'`)).rows[0].id;
    await f.pool.query('UPDATE sluice.consumer_positions SET commit_lsn = 0, commit_idx = -1 WHERE consumer_id = $1', [id]);
    await insertSeries(f.pool, id, 1_000, 3, 3);
    const { lines, stream } = logSink();
    const app = await buildApp({ ...f.deps, logger: { level: 'info', stream } });
    try {
      const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
      const base = '/api/http_pull_consumers/spent-pull';
      const first = await app.inject({ method: 'POST', url: `${base}/receive`, headers, payload: { batch_size: 10 } });
      const ids = first.json().data.map((d: { ack_id: string }) => d.ack_id);
      expect(ids).toHaveLength(3);
      expect((await app.inject({ method: 'POST', url: `${base}/nack`, headers, payload: { ack_ids: ids } })).json().applied).toBe(3);
      expect((await app.inject({ method: 'POST', url: `${base}/receive`, headers, payload: { batch_size: 10 } })).json().data).toEqual([]);
    } finally {
      await app.close();
    }
    const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'pull messages became dead letters');
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 40, consumer: 'spent-pull', group_count: 3, dead_lettered: 3, reason: 'delivered 1 time (max_deliver) without an ack' });
    expect(logged[0].groups).toHaveLength(3);
  });
});
