// Secrets at rest: with SLUICE_SECRETS_KEY set, a dump of the buffer database
// (every table, and the data files Postgres wrote, WAL included) holds none of
// the webhook secrets, header values or connection-string passwords written
// through config apply and the management API; plans compare plain values; a
// key the process lacks stops plan, the API and the gateway with its key id and
// the fix; production mode without a key is warned about at start.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConsumers } from '../src/buffer/consumers.js';
import { applyConfig, exportConfig, planConfig } from '../src/config/apply.js';
import { loadConfig } from '../src/config/load.js';
import type { SluiceConfig } from '../src/config/types.js';
import { Gateway } from '../src/gateway.js';
import { Keyring, keyringFromEnv, newKey, useKeyring, type SecretsKey } from '../src/secrets/keyring.js';
import { isProductionMode, NO_KEY_WARNING } from '../src/secrets/startup.js';
import { generateKeyPair } from '../src/signing/secrets.js';
import { startApi, type ApiFixture } from './api-fixture.js';

const key = (id: string): SecretsKey => ({ id, key: randomBytes(32) });
const envKey = (k: SecretsKey) => `${k.id}:${k.key.toString('base64')}`;
const K1 = key('k1');

// Planted secrets, each unique to this file's database server.
const SOURCE_PASSWORD = 'PlantedSourcePw-3c9e1';
const QUERY_PASSWORD = 'PlantedQueryPw-7a4d2';
const HEADER_VALUE = 'Bearer PlantedHeader-51b8e';
const API_HEADER_VALUE = 'PlantedApiHeader-0d6f3';
const URL_TOKEN = 'PlantedUrlToken-9e27c';
const SECRET = 'whsec_' + randomBytes(32).toString('base64');
const KEY_PAIR = generateKeyPair();
// Not secret: proves the dump and the file scan read the rows at all.
const MARKER = 'visible-marker-4b1f0';

const CONFIG = `
sources:
  - name: app
    url: "postgres://app:${SOURCE_PASSWORD}@db.internal.example:5432/app"
    tables: [public.orders]
  - name: other
    url: "postgres://db2.internal.example/app?user=app&password=${QUERY_PASSWORD}"
    tables: [public.orders]
consumers:
  - name: orders-hook
    source: app
    kind: webhook
    tables: [public.orders]
    annotations: { team: ${MARKER} }
    webhook:
      url: https://hooks.example.com/services/${URL_TOKEN}
      headers: { Authorization: "${HEADER_VALUE}" }
      secrets: ["${KEY_PAIR.privateKey}", "${SECRET}"]
  - name: generated-hook
    source: other
    kind: webhook
    tables: [public.orders]
    webhook:
      url: https://hooks.example.com/generated
`;

let f: ApiFixture;
const generated: string[] = [];
const planted = () => [SOURCE_PASSWORD, QUERY_PASSWORD, HEADER_VALUE, API_HEADER_VALUE, URL_TOKEN, SECRET, KEY_PAIR.privateKey, ...generated];
const config = (): SluiceConfig => loadConfig({ text: CONFIG }, {});

beforeAll(async () => {
  f = await startApi('secrets_at_rest');
});
afterAll(async () => {
  useKeyring(null);
  await f?.stop();
});
afterEach(() => useKeyring(new Keyring(K1)));

/** Every row of every table, as COPY writes it (what a data-only pg_dump holds). */
async function dumpTables(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ t: string }>(
      `SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
         -- A partitioned table holds no rows itself: its partitions are listed.
         AND NOT EXISTS (SELECT 1 FROM pg_partitioned_table p WHERE p.partrelid = format('%I.%I', schemaname, tablename)::regclass)`,
    );
    let out = '';
    for (const { t } of rows) for await (const chunk of c.query(copyTo(`COPY ${t} TO STDOUT`))) out += String(chunk);
    return out;
  } finally {
    await c.end();
  }
}

/** The names of `needles` found in any file under `dir` (heap, WAL, everything). */
function foundInFiles(dir: string, needles: string[]): string[] {
  const found = new Set<string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        const data = readFileSync(p);
        for (const n of needles) if (data.includes(n)) found.add(n);
      }
    }
  };
  walk(dir);
  return [...found];
}

describe('the keyring', () => {
  it('reads "<id>:<base64>" keys and refuses malformed ones without echoing key material', () => {
    const k2 = key('2025-06.b');
    const ring = keyringFromEnv({ SLUICE_SECRETS_KEY: envKey(k2), SLUICE_SECRETS_KEYS_OLD: `${envKey(K1)}, ${envKey(key('k0'))}` });
    expect(ring.current?.id).toBe('2025-06.b');
    expect(ring.ids().sort()).toEqual(['2025-06.b', 'k0', 'k1']);
    expect(keyringFromEnv({}).current).toBeNull();
    expect(keyringFromEnv({ SLUICE_SECRETS_KEY: newKey('fresh') }).current?.id).toBe('fresh');

    const short = randomBytes(16).toString('base64');
    for (const [env, reason] of [
      [{ SLUICE_SECRETS_KEY: randomBytes(32).toString('base64') }, /SLUICE_SECRETS_KEY: expected "<key id>:<base64/],
      [{ SLUICE_SECRETS_KEY: `k:${short}` }, /SLUICE_SECRETS_KEY: key "k" is 16 bytes; AES-256 needs 32/],
      [{ SLUICE_SECRETS_KEY: 'k:not base64!' }, /key "k" is not base64/],
      [{ SLUICE_SECRETS_KEY: `bad id:${short}` }, /key id "bad id" must be/],
      [{ SLUICE_SECRETS_KEYS_OLD: envKey(K1) }, /SLUICE_SECRETS_KEYS_OLD is set but SLUICE_SECRETS_KEY is not/],
      [{ SLUICE_SECRETS_KEY: envKey(K1), SLUICE_SECRETS_KEYS_OLD: envKey(key('k1')) }, /key id "k1" is given twice/],
    ] as const) {
      let message = '';
      try {
        keyringFromEnv(env);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(reason);
      expect(message).not.toContain(short);
      expect(message).not.toContain(K1.key.toString('base64'));
    }
  });

  it('production mode: NODE_ENV=production, or a buffer database of the operator own', () => {
    const none = { buffer: {} };
    expect(isProductionMode({ NODE_ENV: 'production' }, none)).toBe(true);
    expect(isProductionMode({ DATABASE_URL: 'postgres://db/x' }, none)).toBe(true);
    expect(isProductionMode({}, { buffer: { url: 'postgres://db/x' } })).toBe(true);
    expect(isProductionMode({ NODE_ENV: 'development' }, none)).toBe(false);
  });
});

describe('secrets at rest with a key set', () => {
  it('a dump of the database, and its data files, hold none of the secrets written by apply and the API', async () => {
    useKeyring(new Keyring(K1));
    await applyConfig(f.pool, config(), { onGeneratedSecret: (_c, s) => generated.push(s) });
    expect(generated).toHaveLength(1);
    // Through the management API too: a header value, then a masked round trip.
    const created = await f.call('POST', '/api/consumers', {
      name: 'api-hook',
      source: 'app',
      kind: 'webhook',
      tables: ['public.orders'],
      webhook: { url: 'https://hooks.example.com/api', headers: { 'X-Api-Key': API_HEADER_VALUE } },
    });
    expect(created.status).toBe(201);
    generated.push(created.body.webhook.secrets[0]);
    const shown = (await f.call('GET', '/api/consumers/api-hook')).body;
    expect((await f.call('PATCH', '/api/consumers/api-hook', { webhook: { ...shown.webhook, timeout: '5s' } })).status).toBe(200);
    expect(f.deps.consumers.get('api-hook')!.config.webhook!.headers['X-Api-Key']).toBe(API_HEADER_VALUE);
    expect(f.deps.consumers.get('api-hook')!.config.webhook!.secrets).toEqual([generated[1]]);

    const configs = (await f.pool.query<{ t: string }>('SELECT config::text AS t FROM sluice.sources UNION ALL SELECT config::text FROM sluice.consumers')).rows
      .map((r) => r.t)
      .join('\n');
    const dump = await dumpTables(f.url);
    expect(configs).toContain('"kid": "k1"');
    expect(dump).toContain(MARKER);
    for (const secret of planted()) {
      expect(configs).not.toContain(secret);
      expect(dump).not.toContain(secret);
    }
    // The files Postgres wrote (tables, WAL), after a checkpoint: the marker is there, no secret is.
    await f.pool.query('CHECKPOINT');
    if (f.pg.dataDir) expect(foundInFiles(f.pg.dataDir, [MARKER, ...planted()])).toEqual([MARKER]);
  });

  it('plans compare plain values: applying the same file again changes nothing, and export gets them back', async () => {
    useKeyring(new Keyring(K1));
    expect(await planConfig(f.pool, config())).toEqual([]);
    const before = (await f.pool.query('SELECT name, config::text, updated_at FROM sluice.consumers ORDER BY name')).rows;
    expect(await applyConfig(f.pool, config())).toEqual([]);
    expect((await f.pool.query('SELECT name, config::text, updated_at FROM sluice.consumers ORDER BY name')).rows).toEqual(before);

    const exported = await exportConfig(f.pool);
    const hook = exported.consumers.find((c) => c.name === 'orders-hook')!.webhook!;
    expect(hook.secrets).toEqual([KEY_PAIR.privateKey, SECRET]);
    expect(hook.headers).toEqual({ Authorization: HEADER_VALUE });
    expect(exported.sources.find((s) => s.name === 'other')!.url).toContain(`password=${QUERY_PASSWORD}`);
    // metadata.database comes from the opened source URL.
    const served = (await loadConsumers(f.pool)).find((c) => c.name === 'orders-hook')!;
    expect(served.database).toMatchObject({ name: 'app', database: 'app', hostname: 'db.internal.example' });
    // One header changed: the plan shows that field only, masked.
    const changed = config();
    changed.consumers[0].webhook!.headers.Authorization = 'Bearer another-value-0000000';
    const plan = await planConfig(f.pool, changed);
    expect(plan).toEqual([{ action: 'update', resource: 'consumer', name: 'orders-hook', fields: [expect.objectContaining({ path: 'webhook.headers.Authorization' })] }]);
  });

  it('a key the process lacks stops plan and the API with its id and the fix, never a secret', async () => {
    useKeyring(new Keyring(key('k2')));
    await expect(planConfig(f.pool, config())).rejects.toThrow(/encrypted with key "k1", which this process does not have.*SLUICE_SECRETS_KEYS_OLD=k1:<base64 key>/);
    const res = await f.call('GET', '/api/consumers/orders-hook');
    expect(res.status).toBe(500);
    for (const secret of planted()) expect(res.raw).not.toContain(secret);
  });

  it('the CLI says so in one message, without a stack trace; secrets status counts per key', () => {
    const file = path.join(os.tmpdir(), `sluice-secrets-${process.pid}.yaml`);
    writeFileSync(file, CONFIG);
    const run = (args: string[], extra: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
        encoding: 'utf8',
        env: { ...process.env, DATABASE_URL: f.url, SLUICE_SECRETS_KEYS_OLD: '', ...extra },
        timeout: 30_000,
      });
      return { code: r.status, out: r.stdout, err: r.stderr };
    };
    const plan = run(['config', 'plan', '-f', file], { SLUICE_SECRETS_KEY: envKey(key('k2')) });
    expect(plan.code).toBe(1);
    expect(plan.err).toMatch(/^sluice: source "app" url is encrypted with key "k1", which this process does not have/);
    expect(plan.err).not.toMatch(/\n\s+at /);

    const status = run(['secrets', 'status'], { SLUICE_SECRETS_KEY: envKey(key('k2')) });
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/key "k1" \(NOT AVAILABLE to this process\): 1\d secrets/);
    expect(status.out).toMatch(/rotate-key/);
  });
});

describe('the gateway at start', () => {
  const quiet = { http: { host: '127.0.0.1', port: 0 } };
  const start = async (bufferUrl: string, production = false) => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s).msg) });
    const saved = { NODE_ENV: process.env.NODE_ENV, DATABASE_URL: process.env.DATABASE_URL };
    process.env.NODE_ENV = production ? 'production' : 'test';
    delete process.env.DATABASE_URL;
    const gateway = new Gateway({ config: loadConfig({ text: JSON.stringify(quiet) }, {}), bufferUrl, log, http: false, dispatch: false });
    try {
      await gateway.start();
      return { lines, error: null };
    } catch (err) {
      return { lines, error: err as Error };
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await gateway.stop();
    }
  };

  it('stops, naming the key id and the fix, when a stored secret needs a key it was not given', async () => {
    useKeyring(new Keyring(key('k2')));
    const { error } = await start(f.url);
    expect(error?.message).toMatch(/stored secrets are encrypted with key "k1" \(1\d values, e\.g\. source "app" url\), which this process does not have/);
    expect(error?.message).toMatch(/SLUICE_SECRETS_KEYS_OLD/);
  });

  it('warns in production mode without a key, and only then', async () => {
    const empty = await f.pg.createDatabase('secrets_empty');
    useKeyring(Keyring.none);
    const prod = await start(empty, true);
    expect(prod.error).toBeNull();
    expect(prod.lines.filter((l) => l === NO_KEY_WARNING)).toHaveLength(1);
    expect((await start(empty, false)).lines).not.toContain(NO_KEY_WARNING);
    useKeyring(new Keyring(K1));
    const keyed = await start(empty, true);
    expect(keyed.error).toBeNull();
    expect(keyed.lines).not.toContain(NO_KEY_WARNING);
  });
});
