// Streams as a resource: /api/streams and `streams:` in the config file,
// against a real buffer database. (Publishing and consuming: later steps.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SOURCE, startApi, type ApiFixture } from './api-fixture.js';
import { applyConfig, exportConfig } from '../src/config/apply.js';
import { ConfigError, loadConfig, stringifyConfig } from '../src/config/load.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('streams');
});
afterAll(async () => {
  await f?.stop();
});

describe('streams', () => {
  it('create, list, get, patch, delete through the API, in the YAML shape', async () => {
    const r = await f.call('POST', '/api/streams', { name: 'events' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ name: 'events', retention: { max_age: '168h', max_size: '20GB' } });
    expect(r.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await f.call('GET', '/api/streams')).body.data.map((s: any) => s.name)).toEqual(['events']);
    expect((await f.call('GET', '/api/streams/events')).body.name).toBe('events');
    const patched = await f.call('PATCH', '/api/streams/events', { retention: { max_age: '2d' }, annotations: { team: 'core' } });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    expect(patched.body).toMatchObject({ retention: { max_age: '48h', max_size: '20GB' }, annotations: { team: 'core' } });
    // Its own log number, never a source's.
    const { rows } = await f.pool.query(`SELECT log_no FROM sluice.streams WHERE name = 'events'`);
    expect(rows[0].log_no).toBeGreaterThan(0);
    expect((await f.call('DELETE', '/api/streams/events')).status).toBe(204);
    expect((await f.call('GET', '/api/streams/events')).status).toBe(404);
    expect((await f.call('DELETE', '/api/streams/events')).status).toBe(404);
  });

  it('bad input is a 4xx naming the field, and a name shared with a source is a 409 either way', async () => {
    const count = async () => (await f.pool.query('SELECT count(*)::int AS n FROM sluice.streams')).rows[0].n;
    const before = await count();
    for (const [body, field] of [
      [{}, 'name'],
      [{ name: 'bad name' }, 'name'],
      [{ name: 'ok', retention: { max_age: 'forever' } }, 'retention.max_age'],
      [{ name: 'ok', extra: 1 }, 'extra'],
    ] as const) {
      const r = await f.call('POST', '/api/streams', body);
      expect(r.status, JSON.stringify(r.body)).toBe(422);
      expect(Object.keys(r.body.validation_errors ?? {}).join(' '), JSON.stringify(r.body)).toContain(field);
    }
    expect(await count()).toBe(before);
    expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
    const clash = await f.call('POST', '/api/streams', { name: SOURCE.name });
    expect(clash.status).toBe(409);
    expect(clash.body.summary).toMatch(/source named "main" already exists/);
    expect((await f.call('POST', '/api/streams', { name: 'orders-events' })).status).toBe(201);
    const back = await f.call('POST', '/api/sources', { ...SOURCE, name: 'orders-events', slot: 'other_slot', publication: 'other_pub' });
    expect(back.status).toBe(409);
    expect(back.body.summary).toMatch(/stream named "orders-events" already exists/);
    expect((await f.call('POST', '/api/streams', { name: 'orders-events' })).status).toBe(409);
    expect((await f.call('PATCH', '/api/streams/orders-events', { name: 'renamed' })).status).toBe(422);
  });

  it('streams: in the config file, applied, exported and read back the same; a clash with a source names the path', async () => {
    const text = [
      'sources:',
      '  - {name: main, tables: [public.orders, public.users]}',
      'streams:',
      '  - {name: audit, retention: {max_age: 30d}}',
      '  - {name: orders-events}',
    ].join('\n');
    const plan = await applyConfig(f.pool, loadConfig({ text }, {}));
    expect(plan.filter((c) => c.resource === 'stream').map((c) => `${c.action} ${c.name}`)).toEqual(['create audit']);
    const exported = await exportConfig(f.pool);
    expect(exported.streams.map((s) => s.name)).toEqual(['audit', 'orders-events']);
    expect(exported.streams[0].retention.max_age_ms).toBe(30 * 86_400_000);
    const again = loadConfig({ text: stringifyConfig(exported) }, {});
    expect(again.streams).toEqual(exported.streams);
    expect(await applyConfig(f.pool, again)).toEqual([]);

    expect(() => loadConfig({ text: text + '\n  - {name: main}' }, {})).toThrow(ConfigError);
    try {
      loadConfig({ text: text + '\n  - {name: main}\n  - {name: audit}' }, {});
    } catch (e) {
      const issues = (e as ConfigError).issues.map((i) => `${i.path}: ${i.reason}`);
      expect(issues).toContain('streams[2].name: "main" is already the name of a source');
      expect(issues.some((i) => /^streams\[3\]\.name: "audit" is already used by streams\[0\]/.test(i))).toBe(true);
    }
    // A stream named as a source stored (not in the file, not pruned): refused at its path.
    await expect(applyConfig(f.pool, loadConfig({ text: 'streams:\n  - {name: main}' }, {}))).rejects.toSatisfy(
      (e) => e instanceof ConfigError && e.issues.some((i) => i.path === 'streams[0].name' && /name of a source/.test(i.reason)),
    );
    // Pruned: a stream not in the file is deleted.
    const pruned = await applyConfig(f.pool, loadConfig({ text: text.replace('  - {name: orders-events}', '') }, {}), { prune: true });
    expect(pruned.filter((c) => c.resource === 'stream').map((c) => `${c.action} ${c.name}`)).toEqual(['delete orders-events']);
    expect((await f.call('GET', '/api/streams')).body.data.map((s: any) => s.name)).toEqual(['audit']);
  });
});
