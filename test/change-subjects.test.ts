// Captured changes have subjects too (<database>.<schema>.<table>.<action>):
// a consumer of a source may narrow its tables' changes by subject pattern,
// on a real capture through the pull API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiFixture } from './api-fixture.js';
import { eventually, sourceConfig, startCapture, type CaptureFixture } from './helpers/capture.js';
import { changeSubject, subjectToken } from '../src/pipeline/route/subjects.js';

let f: ApiFixture;
let capture: CaptureFixture;
const SOURCE = { name: 'main', tables: ['public.orders', 'public.users'] };

async function drain(name: string): Promise<string[]> {
  const out: string[] = [];
  for (let round = 0; round < 50; round++) {
    const r = await f.call('POST', `/api/http_pull_consumers/${name}/receive`, { batch_size: 100 });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const items = r.body.data as Array<{ ack_id: string; data: any }>;
    if (items.length === 0) return out;
    for (const { data } of items) out.push(`${data.metadata.table_name}.${data.action}:${data.record.id}`);
    expect((await f.call('POST', `/api/http_pull_consumers/${name}/ack`, { ack_ids: items.map((i) => i.ack_id) })).status).toBe(200);
  }
  throw new Error('drain did not end');
}

beforeAll(async () => {
  f = await startApi('change_subjects');
  expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  capture = await startCapture(f.url, sourceConfig('main', SOURCE.tables), []);
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await f?.stop();
});

describe('subjects of captured changes', () => {
  it('are <database>.<schema>.<table>.<action>, names made tokens', () => {
    expect(changeSubject('app', 'public', 'orders', 'insert')).toBe('app.public.orders.insert');
    expect(subjectToken('order items')).toBe('order_items');
    expect(subjectToken('naïve.x')).toBe('na_ve_x');
    expect(subjectToken('')).toBe('_');
  });

  it('narrow a source consumer to the changes its patterns match, beside its tables (and filter)', async () => {
    const db = (await f.pool.query('SELECT current_database() AS d')).rows[0].d as string;
    for (const body of [
      { name: 'deletes', source: 'main', kind: 'pull', tables: SOURCE.tables, subjects: [`${db}.public.*.delete`] },
      { name: 'order-writes', source: 'main', kind: 'pull', tables: SOURCE.tables, subjects: ['*.public.orders.insert', '*.*.orders.update'] },
      { name: 'all', source: 'main', kind: 'pull', tables: SOURCE.tables, subjects: ['>'] },
    ]) {
      const r = await f.call('POST', '/api/consumers', body);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body.subjects).toEqual(body.subjects);
    }
    await f.deps.consumers.reload();
    await f.pool.query(`INSERT INTO public.orders VALUES (1, 'new'), (2, 'new'); INSERT INTO public.users VALUES (1, 'ann');
      UPDATE public.orders SET status = 'paid' WHERE id = 1; DELETE FROM public.orders WHERE id = 2; DELETE FROM public.users WHERE id = 1`);
    const all = await eventually(async () => {
      const got = await drain('all');
      return got.length === 6 ? got : null;
    });
    expect(all).toEqual(['orders.insert:1', 'orders.insert:2', 'users.insert:1', 'orders.update:1', 'orders.delete:2', 'users.delete:1']);
    expect(await drain('deletes')).toEqual(['orders.delete:2', 'users.delete:1']);
    expect(await drain('order-writes')).toEqual(['orders.insert:1', 'orders.insert:2', 'orders.update:1']);
    const bad = await f.call('POST', '/api/consumers', { name: 'bad', source: 'main', kind: 'pull', tables: SOURCE.tables, subjects: ['a.>.b'] });
    expect(bad.status).toBe(422);
    expect(bad.body.validation_errors['subjects[0]'][0]).toMatch(/only be the last token/);
  });
});
