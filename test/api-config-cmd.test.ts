// `sluice config export | plan | apply` against a real buffer database, and
// agreement with the management API (what one writes the other reads).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configCommand } from '../src/cli/config-cmd.js';
import { loadConfig } from '../src/config/load.js';
import { SOURCE, WEBHOOK_CONSUMER, startApi, type ApiFixture } from './api-fixture.js';

let f: ApiFixture;
let dir: string;
let env: Record<string, string>;
beforeAll(async () => {
  f = await startApi('api_config_cmd');
  dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-config-cmd-'));
  // SLUICE_DATA_DIR: never pick up a developer's running `npm start`.
  env = { DATABASE_URL: f.url, SLUICE_DATA_DIR: dir };
});
afterAll(async () => {
  await f?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function run(args: string[], e: Record<string, string> = env): Promise<string> {
  const out: string[] = [];
  await configCommand(args, e, (t) => out.push(t));
  return out.join('\n');
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

  it('export prints YAML the loader accepts, including API-created consumers', async () => {
    expect((await f.call('POST', '/api/consumers', WEBHOOK_CONSUMER)).status).toBe(201);
    const yaml = await run(['export']);
    const config = loadConfig({ text: yaml }, {});
    expect(config.consumers.map((c) => c.name).sort()).toEqual(['from-yaml', 'orders-hook']);
    const stored = (await f.pool.query("SELECT config FROM sluice.consumers WHERE name = 'orders-hook'")).rows[0].config;
    expect(config.consumers.find((c) => c.name === 'orders-hook')).toEqual(stored);
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
    expect(await run([])).toMatch(/^usage: sluice config export/);
  });

  it('an invalid file is reported with paths and nothing is applied', async () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'consumers:\n  - name: x\n    source: main\n    kind: pull\n    tabels: [a]\n');
    await expect(run(['apply', '-f', file])).rejects.toThrow(/tabels/);
    expect((await f.pool.query("SELECT name FROM sluice.consumers")).rows.map((r) => r.name)).toEqual(['from-yaml']);
  });
});
