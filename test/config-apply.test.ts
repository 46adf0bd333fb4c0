import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { applyConfig, exportConfig, formatPlan, planConfig } from '../src/config/apply.js';
import { formatExportNote, redactExport } from '../src/config/export.js';
import { loadConfig, stringifyConfig } from '../src/config/load.js';
import type { SluiceConfig } from '../src/config/types.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SECRET2 = 'whsec_' + Buffer.alloc(32, 9).toString('base64');

let server: TestPg;
const pools: Pool[] = [];

beforeAll(async () => {
  server = await startTestPg();
});
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await server?.stop();
});

/** A fresh, migrated buffer database per test. */
async function freshDb(name: string): Promise<{ pool: Pool; url: string }> {
  const url = await server.createDatabase(name);
  const pool = createPool(url, { max: 4 });
  pools.push(pool);
  await migrate(pool);
  return { pool, url };
}

interface Overrides {
  timeout?: string;
  secrets?: string[];
  token?: string;
  consumers?: string[];
  extraSource?: boolean;
}

function config(overrides: Overrides = {}): SluiceConfig {
  const names = overrides.consumers ?? ['orders-pull', 'orders-hook'];
  const consumers: string[] = [];
  if (names.includes('orders-pull')) {
    consumers.push(`  - {name: orders-pull, source: app, kind: pull, tables: [orders], annotations: {team: billing}}`);
  }
  if (names.includes('orders-hook')) {
    consumers.push(
      [
        '  - name: orders-hook',
        '    source: app',
        '    kind: webhook',
        '    tables: [orders, items]',
        '    group_by: {orders: [customer_id]}',
        '    webhook:',
        '      url: "https://hooks.example.com/in"',
        `      headers: {Authorization: "Bearer ${overrides.token ?? 'very-secret-token-1234'}"}`,
        `      secrets: [${(overrides.secrets ?? [SECRET]).map((s) => `"${s}"`).join(', ')}]`,
        `      timeout: ${overrides.timeout ?? '30s'}`,
      ].join('\n'),
    );
  }
  const sources = ['  - {name: app, tables: [orders, items]}'];
  if (overrides.extraSource) sources.push('  - {name: other, url: "postgres://u:pw@db.example.com/x", tables: [t]}');
  const text = ['sources:', ...sources, 'consumers:', ...consumers].join('\n');
  return loadConfig({ text: consumers.length ? text : text.replace('consumers:', 'consumers: []') }, {});
}

describe('applyConfig', () => {
  it('creates, then applying the same config again changes nothing', async () => {
    const { pool, url } = await freshDb('cfg_apply_twice');
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    const notified: string[] = [];
    listener.on('notification', (n) => notified.push(n.channel));
    await listener.query('LISTEN sluice_config');
    try {
      const first = await applyConfig(pool, config());
      expect(first.map((c) => `${c.action} ${c.resource} ${c.name}`)).toEqual([
        'create source app',
        'create consumer orders-hook',
        'create consumer orders-pull',
      ]);
      const { rows: consumers } = await pool.query('SELECT name, source_name, kind, config, annotations, updated_at FROM sluice.consumers ORDER BY name');
      expect(consumers.map((r) => [r.name, r.source_name, r.kind])).toEqual([
        ['orders-hook', 'app', 'webhook'],
        ['orders-pull', 'app', 'pull'],
      ]);
      expect(consumers[1].annotations).toEqual({ team: 'billing' });
      // The stored config is the normalised ConsumerConfig.
      expect(consumers[0].config).toEqual(config().consumers.find((c) => c.name === 'orders-hook'));
      const { rows: sources } = await pool.query('SELECT updated_at FROM sluice.sources');

      await waitFor(() => notified.length === 1);
      const second = await applyConfig(pool, config());
      expect(second).toEqual([]);
      expect(await planConfig(pool, config())).toEqual([]);
      const { rows: after } = await pool.query('SELECT updated_at FROM sluice.consumers ORDER BY name');
      expect(after.map((r) => r.updated_at)).toEqual(consumers.map((r) => r.updated_at));
      expect((await pool.query('SELECT updated_at FROM sluice.sources')).rows).toEqual(sources);
      // Nothing changed, so running gateways are not asked to reload.
      await new Promise((r) => setTimeout(r, 200));
      expect(notified).toEqual(['sluice_config']);
    } finally {
      await listener.end();
    }
  });

  it('plans a field-level diff with secrets masked, and applies only it', async () => {
    const { pool } = await freshDb('cfg_plan_diff');
    await applyConfig(pool, config());
    const { rows: before } = await pool.query("SELECT id, updated_at FROM sluice.consumers WHERE name = 'orders-pull'");

    const changed = config({ timeout: '10s', secrets: [SECRET2, SECRET], token: 'another-secret-token-5678', extraSource: true });
    const plan = await planConfig(pool, changed);
    expect(plan.map((c) => `${c.action} ${c.resource} ${c.name}`)).toEqual(['create source other', 'update consumer orders-hook']);
    expect(plan[1].fields).toEqual([
      { path: 'webhook.headers.Authorization', before: '…1234', after: '…5678' },
      { path: 'webhook.secrets', before: ['whsec_…LaSw'], after: [`whsec_…${SECRET2.slice(-4)}`, 'whsec_…LaSw'] },
      { path: 'webhook.timeout_ms', before: 30_000, after: 10_000 },
    ]);
    const printed = formatPlan(plan);
    expect(printed).toContain('~ consumer orders-hook');
    expect(printed).toContain('webhook.timeout_ms: 30000 → 10000');
    expect(printed).toContain('url: "postgres://u:****@db.example.com/x"');
    expect(printed).toContain('webhook.headers.Authorization: "…1234" → "…5678"');
    for (const secret of [SECRET, SECRET2, 'secret-token', ':pw@']) expect(printed).not.toContain(secret);
    expect(JSON.stringify(plan)).not.toContain(SECRET2);

    // Planning wrote nothing.
    expect((await pool.query("SELECT config->'webhook'->>'timeout_ms' AS t FROM sluice.consumers WHERE name = 'orders-hook'")).rows[0].t).toBe('30000');

    expect(await applyConfig(pool, changed)).toEqual(plan);
    const { rows } = await pool.query("SELECT config->'webhook' AS w FROM sluice.consumers WHERE name = 'orders-hook'");
    expect(rows[0].w).toMatchObject({ timeout_ms: 10_000, secrets: [SECRET2, SECRET] });
    // The untouched consumer keeps its id and updated_at.
    const { rows: untouched } = await pool.query("SELECT id, updated_at FROM sluice.consumers WHERE name = 'orders-pull'");
    expect(untouched).toEqual(before);
  });

  it('a webhook consumer declared without secrets keeps the stored ones', async () => {
    const { pool } = await freshDb('cfg_keep_secrets');
    await applyConfig(pool, config({ secrets: [SECRET2, SECRET] }));
    const stored = async () => (await pool.query("SELECT config->'webhook'->'secrets' AS s, updated_at FROM sluice.consumers WHERE name = 'orders-hook'")).rows[0];
    const before = await stored();
    const without = config();
    without.consumers.find((c) => c.name === 'orders-hook')!.webhook!.secrets = [];
    const generated: string[] = [];
    expect(await planConfig(pool, without)).toEqual([]);
    expect(await applyConfig(pool, without, { onGeneratedSecret: (_, s) => generated.push(s) })).toEqual([]);
    expect(await stored()).toEqual(before);
    expect(before.s).toEqual([SECRET2, SECRET]);
    expect(generated).toEqual([]);
  });

  it('refuses to change a consumer\'s kind, with the path and the fix, and changes nothing', async () => {
    const { pool } = await freshDb('cfg_kind');
    await applyConfig(pool, config());
    const before = (await pool.query('SELECT name, kind, updated_at FROM sluice.consumers ORDER BY name')).rows;
    const switched = config();
    const hook = switched.consumers.find((c) => c.name === 'orders-hook')!;
    switched.consumers[switched.consumers.indexOf(hook)] = { ...hook, kind: 'pull', webhook: undefined };
    const index = switched.consumers.findIndex((c) => c.name === 'orders-hook');
    for (const attempt of [() => planConfig(pool, switched), () => applyConfig(pool, switched)]) {
      await expect(attempt()).rejects.toThrow(
        new RegExp(`consumers\\[${index}\\]\\.kind: consumer "orders-hook" is a webhook consumer and cannot become pull; give the pull consumer a new name`),
      );
    }
    expect((await pool.query('SELECT name, kind, updated_at FROM sluice.consumers ORDER BY name')).rows).toEqual(before);
  });

  it('prune deletes what the config no longer lists, with its buffered messages', async () => {
    const { pool } = await freshDb('cfg_prune');
    await applyConfig(pool, config({ extraSource: true }));
    const { rows: ids } = await pool.query('SELECT id, name FROM sluice.consumers');
    for (const { id } of ids) {
      await pool.query("INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx) VALUES ($1, 1, 0)", [id]);
    }
    const smaller = config({ consumers: ['orders-pull'] });

    // Without prune, nothing is deleted.
    expect(await applyConfig(pool, smaller)).toEqual([]);
    expect((await pool.query('SELECT count(*)::int AS n FROM sluice.consumers')).rows[0].n).toBe(2);

    const plan = await applyConfig(pool, smaller, { prune: true });
    expect(plan.map((c) => `${c.action} ${c.resource} ${c.name}`)).toEqual(['delete source other', 'delete consumer orders-hook']);
    expect(formatPlan(plan)).toBe('- source other\n- consumer orders-hook');
    const { rows: left } = await pool.query('SELECT c.name, count(m.*)::int AS messages FROM sluice.consumers c LEFT JOIN sluice.messages m ON m.consumer_id = c.id GROUP BY c.name');
    expect(left).toEqual([{ name: 'orders-pull', messages: 1 }]);
    expect((await pool.query('SELECT count(*)::int AS n FROM sluice.messages')).rows[0].n).toBe(1);
    expect((await pool.query('SELECT name FROM sluice.sources')).rows).toEqual([{ name: 'app' }]);
    expect(await applyConfig(pool, smaller, { prune: true })).toEqual([]);
  });
});

describe('exportConfig', () => {
  it('round-trips through YAML: export → stringify → loadConfig', async () => {
    const { pool } = await freshDb('cfg_export');
    const original = config({ extraSource: true });
    await applyConfig(pool, original);
    const exported = await exportConfig(pool);
    const byName = <T extends { name: string }>(xs: T[]) => [...xs].sort((a, b) => a.name.localeCompare(b.name));
    expect(byName(exported.sources)).toEqual(byName(original.sources));
    expect(byName(exported.consumers)).toEqual(byName(original.consumers));

    const text = stringifyConfig(exported);
    expect(text).toContain('timeout: 30s');
    expect(loadConfig({ text }, {})).toEqual(exported);
    // And an export applied back is a no-op.
    expect(await planConfig(pool, loadConfig({ text }, {}), { prune: true })).toEqual([]);
  });
});

describe('redactExport', () => {
  const text = `
buffer: {url: "postgres://buf:buffer-pw@localhost/sluice"}
auth: {admin_token: admin-token-secret}
metrics: {token: metrics-token-secret-0123456789}
sources:
  - {name: app, url: "postgresql://app@db.example.com/app?password=pw%26x", tables: [orders]}
consumers:
  - name: a-b
    source: app
    kind: webhook
    tables: [orders]
    webhook: {url: "https://x.example.com/", headers: {X-Key: "true"}, secrets: ["${SECRET}"]}
  - name: a_b
    source: app
    kind: webhook
    tables: [orders]
    webhook: {url: "https://x.example.com/", headers: {X-Key: "k2"}}
  - {name: p, source: app, kind: pull, tables: [orders]}
`;

  it('gives every secret its own variable, and loads back to the same config with them set', () => {
    const original = loadConfig({ text }, {});
    const r = redactExport(original);
    const vars = {
      SLUICE_BUFFER_PASSWORD: 'buffer-pw',
      SLUICE_ADMIN_TOKEN: 'admin-token-secret',
      SLUICE_METRICS_TOKEN: 'metrics-token-secret-0123456789',
      SLUICE_SOURCE_APP_PASSWORD: 'pw%26x',
      SLUICE_CONSUMER_A_B_HEADER_X_KEY: 'true',
      SLUICE_CONSUMER_A_B_HEADER_X_KEY_2: 'k2',
    };
    expect(r.references.map((ref) => ref.variable)).toEqual(Object.keys(vars));
    expect(r.omittedSecrets).toEqual(['a-b']);
    for (const secret of ['buffer-pw', 'admin-token-secret', 'metrics-token-secret', 'pw%26x', 'k2', 'whsec_']) expect(r.yaml).not.toContain(secret);
    const note = formatExportNote(r);
    expect(note).toContain('SLUICE_CONSUMER_A_B_HEADER_X_KEY_2  consumer a_b: webhook.headers.X-Key');
    for (const secret of ['buffer-pw', 'admin-token-secret', 'pw%26x', 'k2', 'whsec_']) expect(note).not.toContain(secret);
    // A header value "true" stays a string: references are quoted.
    const loaded = loadConfig({ text: r.yaml }, vars);
    expect(loaded).toEqual({ ...original, consumers: original.consumers.map((c) => (c.webhook ? { ...c, webhook: { ...c.webhook, secrets: [] } } : c)) });
  });

  it('has nothing to say about a config without secrets', () => {
    const r = redactExport(loadConfig({ text: 'sources: [{name: app, tables: [orders]}]' }, {}));
    expect(r.references).toEqual([]);
    expect(formatExportNote(r)).toBe('');
    expect(r.yaml).toBe(stringifyConfig(loadConfig({ text: 'sources: [{name: app, tables: [orders]}]' }, {})));
  });
});

async function waitFor(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
