// Dead letters through the management API: paged listing, retry, discard.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PULL_CONSUMER, SOURCE, expectRejections, startApi, type ApiFixture } from './api-fixture.js';
import { insertLogRows } from './helpers/buffer.js';

let f: ApiFixture;
let consumerId: string;
beforeAll(async () => {
  f = await startApi('api_dead_letters');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  const c = await f.call('POST', '/api/consumers', { ...PULL_CONSUMER, annotations: { team: 'a' } });
  consumerId = c.body.id;
  // Five dead letters and one pending message. The id 2^53+1 must come back exactly.
  for (let i = 0; i < 6; i++) {
    const payload =
      `{"record":{"id":9007199254740993,"n":${i}},"changes":null,"action":"insert","metadata":{"table_schema":"public",` +
      `"table_name":"orders","commit_lsn":${1000 + i},"commit_idx":${i},"transaction_annotations":null}}`;
    // The change in the source's log, and the consumer's row of it (taken in: a dead letter or waiting).
    await insertLogRows(f.pool, consumerId, [{ lsn: 1000 + i, idx: i, group: `g${i}`, payload }], { notify: false });
    await f.pool.query(
      `INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, state, deliver_count, last_error)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [consumerId, 1000 + i, i, `g${i}`, i < 5 ? 1 : 0, i < 5 ? 3 : 0, i < 5 ? 'max_deliver reached' : null],
    );
  }
});
afterAll(async () => {
  await f?.stop();
});

const deadIds = async () =>
  (await f.pool.query('SELECT commit_lsn, commit_idx FROM sluice.messages WHERE state = 1 ORDER BY 1, 2')).rows.map(
    (r) => `${r.commit_lsn}:${r.commit_idx}`,
  );

describe('dead letters', () => {
  it('list a page at a time, oldest first, with the message as delivered', async () => {
    const first = await f.call('GET', '/api/consumers/orders-pull/dead-letters?limit=2');
    expect(first.status).toBe(200);
    expect(first.body.data.map((d: { id: string }) => d.id)).toEqual(['1000:0', '1001:1']);
    expect(first.body.next_cursor).toBe('1001:1');
    const d = first.body.data[0];
    expect(d).toMatchObject({ group_key: 'g0', deliver_count: 3, last_error: 'max_deliver reached', last_delivered_at: null });
    expect(d.message.metadata.consumer).toEqual({ id: consumerId, name: 'orders-pull', annotations: { team: 'a' } });
    expect(first.raw).toContain('"id":9007199254740993');

    const second = await f.call('GET', `/api/consumers/orders-pull/dead-letters?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.data.map((x: { id: string }) => x.id)).toEqual(['1002:2', '1003:3']);
    const last = await f.call('GET', `/api/consumers/orders-pull/dead-letters?limit=2&cursor=${second.body.next_cursor}`);
    expect(last.body.data.map((x: { id: string }) => x.id)).toEqual(['1004:4']);
    expect(last.body.next_cursor).toBeNull();
  });

  it('stats count them', async () => {
    const r = await f.call('GET', '/api/consumers/orders-pull/stats');
    expect(r.body).toMatchObject({ pending: 1, in_flight: 0, dead_lettered: 5 });
    expect(r.body.oldest_pending_age_ms).toBeGreaterThanOrEqual(0);
  });

  it('retry by ids makes them pending again; unknown ids change nothing', async () => {
    const r = await f.call('POST', '/api/consumers/orders-pull/dead-letters/retry', { ids: ['1000:0', '1001:1', '999:9'] });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ success: true, retried: 2 });
    expect(await deadIds()).toEqual(['1002:2', '1003:3', '1004:4']);
    const { rows } = await f.pool.query('SELECT deliver_count FROM sluice.messages WHERE commit_lsn = 1000');
    expect(rows[0].deliver_count).toBe(0);
  });

  it('discard by ids deletes them', async () => {
    const r = await f.call('POST', '/api/consumers/orders-pull/dead-letters/discard', { ids: ['1002:2'] });
    expect(r.body).toEqual({ success: true, discarded: 1 });
    expect(await deadIds()).toEqual(['1003:3', '1004:4']);
  });

  it('malformed selections are refused and change nothing', async () => {
    const before = await deadIds();
    const base = '/api/consumers/orders-pull/dead-letters';
    await expectRejections(f, [
      ['POST', `${base}/retry`, {}, 422, /either/],
      ['POST', `${base}/retry`, { ids: ['1003:3'], all: true }, 422, /either/],
      ['POST', `${base}/retry`, { all: false }, 422, /all/],
      ['POST', `${base}/retry`, { all: 'yes' }, 422, /all/],
      ['POST', `${base}/retry`, { ids: [] }, 422, /ids/],
      ['POST', `${base}/retry`, { ids: ['abc'] }, 422, /ids/],
      ['POST', `${base}/discard`, { ids: ['99999999999999999999:1'] }, 422, /ids/],
      ['POST', `${base}/discard`, { ids: ['9223372036854775808:1'] }, 422, /not a message key/],
      ['POST', `${base}/discard`, { ids: ['1:1'], extra: 1 }, 422, /extra/],
      ['POST', `${base}/discard`, '[]', 400, /must be a JSON object/],
      ['POST', `${base}/discard`, '{', 400, /not valid JSON/],
      ['POST', '/api/consumers/nope/dead-letters/discard', { all: true }, 404, /Consumer "nope" does not exist/],
      ['GET', `${base}?limit=0`, undefined, 422, /limit/],
      ['GET', `${base}?limit=abc`, undefined, 422, /limit: must be integer/],
      ['GET', `${base}?limit=5000`, undefined, 422, /limit/],
      ['GET', `${base}?cursor=x`, undefined, 422, /cursor/],
      ['GET', `${base}?cursor=99999999999999999999:0`, undefined, 422, /cursor/],
      ['GET', `${base}?other=1`, undefined, 422, /other: is not a known field/],
      ['GET', '/api/consumers/nope/dead-letters', undefined, 404, /Consumer "nope" does not exist/],
    ]);
    expect(await deadIds()).toEqual(before);
  });

  it('retry all and discard all', async () => {
    await f.pool.query('UPDATE sluice.messages SET state = 1 WHERE commit_lsn = 1000');
    expect((await f.call('POST', '/api/consumers/orders-pull/dead-letters/discard', { all: true })).body).toEqual({ success: true, discarded: 3 });
    await f.pool.query('UPDATE sluice.messages SET state = 1 WHERE commit_lsn IN (1001, 1005)');
    expect((await f.call('POST', '/api/consumers/orders-pull/dead-letters/retry', { all: true })).body).toEqual({ success: true, retried: 2 });
    expect(await deadIds()).toEqual([]);
  });
});
