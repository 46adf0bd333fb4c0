// Streams as a resource: /api/streams and `streams:` in the config file,
// against a real buffer database, and publishing to one. (Consuming: a later step.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, SOURCE, startApi, type ApiFixture } from './api-fixture.js';
import { applyConfig, exportConfig } from '../src/config/apply.js';
import { ConfigError, loadConfig, stringifyConfig } from '../src/config/load.js';
import { streamCommand } from '../src/cli/stream.js';
import { CliError } from '../src/cli/context.js';

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

  describe('publish', () => {
    const stored = async (stream: string) =>
      (
        await f.pool.query(
          `SELECT l.commit_lsn::text AS position, l.commit_idx, l.subject, l.action, l.group_key, l.payload
           FROM sluice.log l JOIN sluice.streams s ON s.log_no = l.source_no WHERE s.name = $1 ORDER BY l.commit_lsn`,
          [stream],
        )
      ).rows;

    it('stores one message or a batch durably, in order, in the envelope; answers each sequence', async () => {
      expect((await f.call('POST', '/api/streams', { name: 'pub' })).status).toBe(201);
      const before = Date.now() * 1000;
      const one = await f.call('POST', '/api/streams/pub/messages', { subject: 'orders.new', data: { id: 1, total: '19.90' } });
      expect(one.status, JSON.stringify(one.body)).toBe(200);
      expect(one.body.data).toEqual([{ sequence: expect.any(Number), duplicate: false }]);
      expect(one.body.data[0].sequence).toBeGreaterThanOrEqual(before);
      const batch = await f.call('POST', '/api/streams/pub/messages', {
        messages: [
          { subject: 'orders.paid', data: { id: 1 }, key: 'order-1' },
          { subject: 'sensors.temperature.us-west', data: 21.5 },
          { subject: 'x', data: null },
        ],
      });
      expect(batch.status, JSON.stringify(batch.body)).toBe(200);
      const seqs = [one.body.data[0].sequence, ...batch.body.data.map((d: any) => d.sequence)];
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      expect(new Set(seqs).size).toBe(4);
      const rows = await stored('pub');
      expect(rows.map((r) => [Number(r.position), r.commit_idx, r.subject, r.action, r.group_key])).toEqual([
        [seqs[0], 0, 'orders.new', 'publish', 'orders.new'],
        [seqs[1], 0, 'orders.paid', 'publish', 'order-1'],
        [seqs[2], 0, 'sensors.temperature.us-west', 'publish', 'sensors.temperature.us-west'],
        [seqs[3], 0, 'x', 'publish', 'x'],
      ]);
      const m = JSON.parse(rows[1].payload);
      expect(m).toEqual({
        subject: 'orders.paid',
        data: { id: 1 },
        metadata: {
          stream: 'pub',
          sequence: seqs[1],
          key: 'order-1',
          published_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
          idempotency_key: Buffer.from(`${seqs[1]}:0`).toString('base64'),
        },
      });
      // Metadata last: a consumer's metadata is spliced in when served.
      expect(rows[1].payload.endsWith('"}}')).toBe(true);
    });

    it('an idempotency_key published again (in another request or the same batch) is stored once', async () => {
      // Without queueing queries on a busy connection, which pg deprecates (a warning in the gateway's output).
      const deprecations: string[] = [];
      const onWarning = (w: Error) => {
        if (w.name === 'DeprecationWarning') deprecations.push(w.message);
      };
      process.on('warning', onWarning);
      try {
        const first = await f.call('POST', '/api/streams/pub/messages', { subject: 'a.b', data: 1, idempotency_key: 'once-1' });
        const again = await f.call('POST', '/api/streams/pub/messages', {
          messages: [
            { subject: 'a.b', data: 2, idempotency_key: 'once-1' },
            { subject: 'a.c', data: 3, idempotency_key: 'once-2' },
            { subject: 'a.c', data: 4, idempotency_key: 'once-2' },
          ],
        });
        expect(again.status).toBe(200);
        const s1 = first.body.data[0].sequence;
        expect(again.body.data).toEqual([
          { sequence: s1, duplicate: true },
          { sequence: expect.any(Number), duplicate: false },
          { sequence: again.body.data[1].sequence, duplicate: true },
        ]);
        const rows = (await stored('pub')).filter((r) => r.subject.startsWith('a.'));
        expect(rows.map((r) => JSON.parse(r.payload).data)).toEqual([1, 3]);
        expect(JSON.parse(rows[0].payload).metadata.idempotency_key).toBe('once-1');
        // Warnings are emitted on a later tick.
        await new Promise((r) => setImmediate(r));
      } finally {
        process.off('warning', onWarning);
      }
      expect(deprecations).toEqual([]);
    });

    it('bad input is a clear 4xx naming the field, and stores nothing of the batch', async () => {
      const count = async () => (await stored('pub')).length;
      const before = await count();
      const cases: Array<[unknown, number, string | RegExp]> = [
        [{ messages: [{ subject: 'ok', data: 1 }, { subject: 'bad..subject', data: 2 }] }, 422, 'messages[1].subject'],
        [{ messages: [{ subject: 'ok', data: 1 }, { subject: 'a.*', data: 2 }] }, 422, 'messages[1].subject'],
        [{ subject: 'ok' }, 422, 'data'],
        [{ data: 1 }, 422, 'subject'],
        [{ subject: 'ok', data: 1, key: '' }, 422, 'key'],
        [{ subject: 'ok', data: 1, idempotency_key: 'x'.repeat(256) }, 422, 'idempotency_key'],
        [{ subject: 'ok', data: 1, extra: true }, 422, 'extra'],
        [{ subject: 'ok', data: 1, messages: [{ subject: 'ok', data: 1 }] }, 422, 'messages'],
        [{ messages: [] }, 422, 'messages'],
      ];
      for (const [body, status, field] of cases) {
        const r = await f.call('POST', '/api/streams/pub/messages', body);
        expect(r.status, JSON.stringify(r.body)).toBe(status);
        expect(typeof r.body.summary).toBe('string');
        expect(Object.keys(r.body.validation_errors ?? {}).join(' '), JSON.stringify(r.body)).toContain(field);
      }
      const notJson = await f.app.inject({
        method: 'POST',
        url: '/api/streams/pub/messages',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        payload: '{"subject": "a", "data": nope}',
      });
      expect(notJson.statusCode).toBe(400);
      expect(JSON.parse(notJson.body).summary).toMatch(/JSON/i);
      const big = await f.call('POST', '/api/streams/pub/messages', { subject: 'a', data: 'x'.repeat(2 * 1024 * 1024) });
      expect(big.status).toBe(413);
      expect(typeof big.body.summary).toBe('string');
      const unknown = await f.call('POST', '/api/streams/nope/messages', { subject: 'a', data: 1 });
      expect(unknown.status).toBe(404);
      expect(unknown.body.summary).toBe('Stream "nope" does not exist.');
      expect(await count()).toBe(before);
    });

    it('concurrent publishes get distinct positions in commit order; a stream made again under its name is published to afresh', async () => {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, c) =>
          f.call('POST', '/api/streams/pub/messages', { messages: Array.from({ length: 50 }, (_, i) => ({ subject: `load.c${c}`, data: i })) }),
        ),
      );
      expect(answers.every((a) => a.status === 200)).toBe(true);
      const seqs = answers.flatMap((a) => a.body.data.map((d: any) => d.sequence));
      expect(new Set(seqs).size).toBe(1000);
      // Per request, in order.
      for (const a of answers) {
        const s = a.body.data.map((d: any) => d.sequence);
        expect([...s].sort((x: number, y: number) => x - y)).toEqual(s);
      }
      expect((await stored('pub')).filter((r) => r.subject.startsWith('load.')).length).toBe(1000);

      // A stream whose last position runs ahead of this clock (another
      // gateway's clock ahead by an hour): positions go on from it.
      const ahead = (Date.now() + 3_600_000) * 1000;
      await f.pool.query(`UPDATE sluice.streams SET last_position = $1 WHERE name = 'pub'`, [ahead]);
      const later = await f.call('POST', '/api/streams/pub/messages', { subject: 'clock.ahead', data: 1 });
      expect(later.status, JSON.stringify(later.body)).toBe(200);
      expect(later.body.data[0].sequence).toBe(ahead + 1);

      expect((await f.call('DELETE', '/api/streams/pub')).status).toBe(204);
      expect((await f.call('POST', '/api/streams/pub/messages', { subject: 'a', data: 1 })).status).toBe(404);
      expect((await f.call('POST', '/api/streams', { name: 'pub' })).status).toBe(201);
      const fresh = await f.call('POST', '/api/streams/pub/messages', { subject: 'a', data: 1, idempotency_key: 'once-1' });
      expect(fresh.status).toBe(200);
      expect(fresh.body.data[0].duplicate).toBe(false);
      expect((await stored('pub')).length).toBe(1);
    });
  });

  it('sluice stream add | ls | pub | rm through a running gateway, refusals in one line', async () => {
    const url = await f.app.listen({ host: '127.0.0.1', port: 0 });
    const lines: string[] = [];
    const run = (args: string[], flags: Record<string, string> = {}) => streamCommand(args, { url, token: ADMIN_TOKEN, ...flags }, {}, (t) => void lines.push(t));
    await run(['add', 'cli-events'], { 'max-age': '2d' });
    expect(lines.pop()).toBe('stream cli-events created (retention: 48h, 20GB)');
    await run(['ls']);
    expect(lines.pop()).toMatch(/^audit .*\ncli-events  retention 48h, 20GB/m);
    await run(['pub', 'cli-events', 'orders.new', '{"id": 1}'], { 'idempotency-key': 'k1' });
    expect(lines.pop()).toMatch(/^published to cli-events: sequence \d+$/);
    await run(['pub', 'cli-events', 'orders.new', '{"id": 1}'], { 'idempotency-key': 'k1' });
    expect(lines.pop()).toMatch(/^published to cli-events: sequence \d+ \(a duplicate/);
    await expect(run(['pub', 'cli-events', 'orders..new', '1'])).rejects.toThrow(/^publish refused \(422\): Invalid request: subject: has an empty token/);
    await expect(run(['pub', 'cli-events', 'orders.new', '{nope'])).rejects.toThrow(/<json> is not JSON/);
    await expect(run(['pub', 'nope', 'a', '1'])).rejects.toThrow(/publish refused \(404\): Stream "nope" does not exist\./);
    await expect(run(['add'])).rejects.toBeInstanceOf(CliError);
    await run(['rm', 'cli-events']);
    expect(lines.pop()).toBe('stream cli-events deleted');
    await expect(run(['rm', 'cli-events'])).rejects.toThrow(/stream rm refused \(404\)/);
  });
});
