// `sluice config export | plan | apply` against a real buffer database, and
// agreement with the management API (what one writes the other reads).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configCommand } from '../src/cli/config-cmd.js';
import { planConfig } from '../src/config/apply.js';
import { loadConfig } from '../src/config/load.js';
import { SOURCE, WEBHOOK_CONSUMER, startApi, type ApiFixture } from './api-fixture.js';

const HOOK_SECRET = 'whsec_' + Buffer.alloc(32, 7).toString('base64');

let f: ApiFixture;
let dir: string;
let env: Record<string, string>;
/** The test server's port and the fixture database's path, for a source URL of its own. */
let sourcePort: string;
let sourceDb: string;
beforeAll(async () => {
  f = await startApi('api_config_cmd');
  ({ port: sourcePort, pathname: sourceDb } = new URL(f.url));
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-config-cmd-'));
  // SLUICE_DATA_DIR: never pick up a developer's running `npm start`.
  env = { DATABASE_URL: f.url, SLUICE_DATA_DIR: dir };
});
afterAll(async () => {
  await f?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function run(args: string[], e: Record<string, string> = env): Promise<string> {
  return (await runBoth(args, e)).out;
}

/** stdout and the note on stderr, apart. */
async function runBoth(args: string[], e: Record<string, string> = env): Promise<{ out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  await configCommand(args, e, (t) => out.push(t), (t) => err.push(t));
  return { out: out.join('\n'), err: err.join('\n') };
}

const YAML = `
sources:
  - name: main
    tables: [public.orders, public.users]
consumers:
  - name: from-yaml
    source: main
    kind: pull
    tables: [orders]
    pull: { ack_wait: 45s }
`;

describe('sluice config', () => {
  it('plan shows what apply would change; apply does it; a second plan is empty', async () => {
    const file = path.join(dir, 'sluice.yaml');
    writeFileSync(file, YAML);
    const plan = await run(['plan', '-f', file]);
    expect(plan).toContain('+ source main');
    expect(plan).toContain('+ consumer from-yaml');
    expect((await f.pool.query('SELECT count(*)::int AS n FROM sluice.consumers')).rows[0].n).toBe(0);

    const applied = await run(['apply', '--file', file]);
    expect(applied).toContain('Applied 2 changes.');
    expect((await run(['plan', `--config=${file}`]))).toBe('No changes.');

    // The API sees what apply wrote, in the YAML shape.
    await f.deps.consumers.reload();
    const got = await f.call('GET', '/api/consumers/from-yaml');
    expect(got.body).toMatchObject({ name: 'from-yaml', tables: ['public.orders'], pull: { ack_wait: '45s' } });
  });

  it('export --show-secrets prints YAML the loader accepts, including API-created consumers, in full', async () => {
    expect((await f.call('POST', '/api/consumers', WEBHOOK_CONSUMER)).status).toBe(201);
    const { out: yaml, err } = await runBoth(['export', '--show-secrets']);
    expect(err).toBe('');
    const config = loadConfig({ text: yaml }, {});
    expect(config.consumers.map((c) => c.name).sort()).toEqual(['from-yaml', 'orders-hook']);
    const stored = (await f.pool.query("SELECT config FROM sluice.consumers WHERE name = 'orders-hook'")).rows[0].config;
    expect(config.consumers.find((c) => c.name === 'orders-hook')).toEqual(stored);
    expect(yaml).toContain('super-secret-header-value');
  });

  it('export prints no secret; with its variables set, the file applies back as no change', async () => {
    // Every kind of secret a stored config holds, next to literal "${" that must stay literal.
    // The source must be reachable (apply sets up its publication): a role of
    // its own on the test server, whose password is the query's (it wins).
    await f.pool.query(`CREATE ROLE billing_role LOGIN SUPERUSER REPLICATION PASSWORD 'query-pass-s3cret'`);
    await f.pool.query('CREATE TABLE public.invoices (id bigint PRIMARY KEY)');
    const extra = path.join(dir, 'extra.yaml');
    writeFileSync(
      extra,
      `
sources:
  - name: billing
    url: "postgres://billing_role:db-pass-s3cret@127.0.0.1:${sourcePort}${sourceDb}?sslmode=disable&password=query-pass-s3cret"
    tables: [public.invoices]
consumers:
  - name: billing-hook
    source: billing
    kind: webhook
    tables: [invoices]
    annotations: {note: "a $\${literal}"}
    webhook:
      url: "https://hookuser:hook-pass-s3cret@hooks.example.com/in/$\${x}"
      headers:
        Authorization: "Bearer header-s3cret-token"
        X-Count: "40961357"
        X-Literal: "a$\${b"
        X-Empty: ""
      secrets: ["${HOOK_SECRET}"]
`,
    );
    await run(['apply', '-f', extra]);
    const storedRows = async () => (await f.pool.query('SELECT name, config FROM sluice.consumers ORDER BY name')).rows;
    const before = await storedRows();
    const signing = before.flatMap((r) => r.config.webhook?.secrets ?? []);
    expect(signing).toHaveLength(2);

    const { out, err } = await runBoth(['export']);
    const secrets = [...signing, 'whsec_', 'db-pass-s3cret', 'query-pass-s3cret', 'hook-pass-s3cret', 'header-s3cret-token', '40961357', 'super-secret-header-value'];
    for (const secret of secrets) {
      expect(out, secret).not.toContain(secret);
      expect(err, secret).not.toContain(secret);
    }
    expect(out).not.toMatch(/^\s*secrets:/m);
    const vars = {
      SLUICE_SOURCE_BILLING_PASSWORD: 'db-pass-s3cret',
      SLUICE_SOURCE_BILLING_PASSWORD_2: 'query-pass-s3cret',
      SLUICE_CONSUMER_BILLING_HOOK_PASSWORD: 'hook-pass-s3cret',
      SLUICE_CONSUMER_BILLING_HOOK_HEADER_AUTHORIZATION: 'Bearer header-s3cret-token',
      SLUICE_CONSUMER_BILLING_HOOK_HEADER_X_COUNT: '40961357',
      SLUICE_CONSUMER_BILLING_HOOK_HEADER_X_LITERAL: 'a${b',
      SLUICE_CONSUMER_ORDERS_HOOK_HEADER_X_API_KEY: 'super-secret-header-value',
    };
    for (const name of Object.keys(vars)) {
      expect(out).toContain(`\${${name}}`);
      expect(out).not.toContain(`$\${${name}}`);
      expect(err).toContain(name);
    }
    // The literal "${" elsewhere stays escaped; the empty header needs no variable.
    expect(out).toContain('hooks.example.com/in/$$' + '{x}');
    expect(out).toContain('X-Empty: ""');
    expect(err).toMatch(/Left out: the webhook signing secrets of billing-hook, orders-hook/);
    expect(err.match(/SLUICE_[A-Z0-9_]+/g)?.sort()).toEqual(Object.keys(vars).sort());

    // Without its variables the file does not load, and says which one is missing.
    expect(() => loadConfig({ text: out }, {})).toThrow(/SLUICE_SOURCE_BILLING_PASSWORD is not set/);

    const file = path.join(dir, 'exported.yaml');
    writeFileSync(file, out);
    const withVars = { ...env, ...vars };
    expect(await run(['plan', '-f', file, '--prune'], withVars)).toBe('No changes.');
    expect(await planConfig(f.pool, loadConfig(file, withVars), { prune: true })).toEqual([]);
    expect(await run(['apply', '-f', file, '--prune'], withVars)).toBe('No changes.');
    // The signing secrets the file left out are still the stored ones.
    expect(await storedRows()).toEqual(before);
  });

  it('export --show-secrets round-trips every secret exactly', async () => {
    const { out, err } = await runBoth(['export', '--show-secrets']);
    expect(err).toBe('');
    expect(out).toContain('db-pass-s3cret');
    const file = path.join(dir, 'full.yaml');
    writeFileSync(file, out);
    expect(await run(['plan', '-f', file, '--prune'], env)).toBe('No changes.');
    const loaded = loadConfig(file, {});
    const stored = (await f.pool.query('SELECT name, config FROM sluice.consumers ORDER BY name')).rows;
    for (const row of stored) expect(loaded.consumers.find((c) => c.name === row.name)).toEqual(row.config);
    expect(loaded.sources.find((s) => s.name === 'billing')?.url).toBe(
      `postgres://billing_role:db-pass-s3cret@127.0.0.1:${sourcePort}${sourceDb}?sslmode=disable&password=query-pass-s3cret`,
    );
  });

  it('--prune deletes what the file does not list (plan first, masked)', async () => {
    const file = path.join(dir, 'sluice.yaml');
    const plan = await run(['plan', '-f', file, '--prune']);
    expect(plan).toContain('- consumer orders-hook');
    expect(plan).not.toContain('super-secret-header-value');
    await run(['apply', '-f', file, '--prune']);
    expect((await f.pool.query("SELECT name FROM sluice.consumers")).rows.map((r) => r.name)).toEqual(['from-yaml']);
  });

  it('without DATABASE_URL it says how to run', async () => {
    const noDb = { SLUICE_DATA_DIR: dir };
    await expect(run(['export'], noDb)).rejects.toThrow(/DATABASE_URL is not set[\s\S]*DATABASE_URL=postgres:\/\/[\s\S]*only started by `sluice start`/);
    const file = path.join(dir, 'sluice.yaml');
    await expect(run(['plan', '-f', file], noDb)).rejects.toThrow(/sluice config plan needs the buffer database/);
  });

  it('usage errors', async () => {
    await expect(run(['frobnicate'])).rejects.toThrow(/unknown config command "frobnicate"/);
    await expect(run(['plan', '-f'])).rejects.toThrow(/-f needs a file name/);
    await expect(run(['plan', '-f', path.join(dir, 'missing.yaml')])).rejects.toThrow(/no such config file/);
    await expect(run(['export', '--prune'])).rejects.toThrow(/export takes no/);
    await expect(run(['plan', '--show-secrets'])).rejects.toThrow(/--show-secrets is for export only/);
    expect(await run(['help'])).toMatch(/--show-secrets prints everything in full[\s\S]*handle that output as a secret/);
    expect(await run([])).toMatch(/^usage: sluice config export/);
  });

  it('an invalid file is reported with paths and nothing is applied', async () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'consumers:\n  - name: x\n    source: main\n    kind: pull\n    tabels: [a]\n');
    await expect(run(['apply', '-f', file])).rejects.toThrow(/tabels/);
    expect((await f.pool.query("SELECT name FROM sluice.consumers")).rows.map((r) => r.name)).toEqual(['from-yaml']);
  });

  it('apply shows a generated signing secret once, as start does', async () => {
    const file = path.join(dir, 'generated.yaml');
    writeFileSync(
      file,
      YAML + `  - name: gen-hook
    source: main
    kind: webhook
    tables: [orders]
    webhook: { url: "https://hooks.example.com/in" }
`,
    );
    const first = await run(['apply', '-f', file]);
    const shown = /Signing secret of gen-hook \(shown once\): (whsec_\S+)/.exec(first);
    expect(shown, first).not.toBeNull();
    const { rows } = await f.pool.query("SELECT config FROM sluice.consumers WHERE name = 'gen-hook'");
    expect(rows[0].config.webhook.secrets).toEqual([shown![1]]);
    // Kept on the next apply, and never shown again.
    expect(await run(['apply', '-f', file])).toBe('No changes.');
  });
});
