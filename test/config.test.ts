import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  ConfigError,
  loadConfig,
  stringifyConfig,
  toYamlShape,
  validateConsumer,
  validateSource,
  type ConfigIssue,
} from '../src/config/load.js';
import { expand } from '../src/config/substitute.js';
import { formatDuration, formatSize, parseDuration, parseSize } from '../src/config/units.js';
import { generateKeyPair } from '../src/signing/secrets.js';

const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../config/sluice.yaml');
// The Standard Webhooks test secret (24 bytes).
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** A valid config in the YAML shape; tests change one thing at a time. */
function base(): any {
  return {
    sources: [{ name: 'app', tables: ['orders', 'public.items'], schemas: ['audit'] }],
    consumers: [
      { name: 'puller', source: 'app', kind: 'pull', tables: ['orders'] },
      { name: 'hook', source: 'app', kind: 'webhook', tables: ['orders'], webhook: { url: 'https://example.com/h' } },
    ],
  };
}

const load = (doc: unknown, env: Record<string, string> = {}) => loadConfig({ text: stringify(doc) }, env);

function issuesOf(fn: () => unknown): ConfigIssue[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

/** Expects exactly one issue, at `path`, whose reason matches. */
function expectIssue(fn: () => unknown, path: string, reason: RegExp | string): void {
  const issues = issuesOf(fn);
  expect(issues.map((i) => i.path)).toEqual([path]);
  expect(issues[0].reason).toMatch(reason);
}

describe('loadConfig: valid input', () => {
  it('http.console: on unless false; false survives an export; a non-boolean names the path', () => {
    expect(load(base()).http.console).toBeUndefined();
    const off = load({ ...base(), http: { console: false } });
    expect(off.http.console).toBe(false);
    expect(toYamlShape(off).http).toMatchObject({ console: false });
    expect(load({ ...base(), http: { console: true } }).http.console).toBeUndefined();
    expectIssue(() => load({ ...base(), http: { console: 'no' } }), 'http.console', 'must be true or false');
  });

  it('applies defaults and normalises durations, sizes and table names', () => {
    const c = load(base());
    expect(c.http).toEqual({ host: '127.0.0.1', port: 7376, body_limit_bytes: 1024 * 1024 });
    expect(c.buffer).toEqual({});
    expect(c.sources[0]).toEqual({
      name: 'app',
      tables: ['public.orders', 'public.items'],
      schemas: ['audit'],
      publication: 'sluice_app',
      slot: 'sluice_app',
      create_if_missing: true,
      heartbeat_interval_ms: 30_000,
      lag_warning_bytes: 1024 ** 3,
      max_batch_changes: 10_000,
      retention: { max_age_ms: 7 * 86_400_000, max_size_bytes: 20 * 1024 ** 3 },
    });
    const [pull, hook] = c.consumers;
    // Read once, when a consumer is created: not stored unless given ("now").
    expect(pull.start).toBeUndefined();
    expect(pull.pull).toEqual({ ack_wait_ms: 30_000, max_ack_pending: 10_000, max_waiting: 20 });
    expect(pull.webhook).toBeUndefined();
    expect(pull).toMatchObject({ tables: ['public.orders'], group_by: true, dead_letter_blocks_group: false, annotations: {} });
    expect(hook.pull).toBeUndefined();
    expect(hook.webhook).toEqual({
      url: 'https://example.com/h',
      headers: {},
      secrets: [],
      batch_size: 100,
      batch_timeout_ms: 50,
      max_in_flight: 4,
      timeout_ms: 30_000,
      max_response_bytes: 64 * 1024,
      retry: { initial_ms: 1000, factor: 2, cap_ms: 3_600_000, max_age_ms: 86_400_000 },
      allow_private_ranges: [],
    });
  });

  it('reads explicit values in every accepted spelling', () => {
    const doc = base();
    Object.assign(doc.sources[0], { name: 'my-db', heartbeat_interval: '1h30m', lag_warning: 512 * 1024 * 1024 + 1, url: '' });
    doc.consumers = [
      {
        name: 'hook',
        source: 'my-db',
        kind: 'webhook',
        tables: ['orders', 'audit.log'],
        group_by: { orders: ['customer_id'] },
        webhook: {
          url: 'http://127.0.0.1:9/x',
          headers: { 'X-Api-Key': 'k' },
          secrets: [SECRET],
          batch_timeout: 0,
          timeout: '1.5s',
          max_response_bytes: '512KB',
          retry: { initial: 250, factor: 1.5, cap: '5m', max_attempts: 7, max_age: '2d' },
          allow_private_ranges: ['127.0.0.0/8', '::1/128'],
        },
      },
    ];
    const c = load(doc);
    expect(c.sources[0]).toMatchObject({
      publication: 'sluice_my_db',
      slot: 'sluice_my_db',
      heartbeat_interval_ms: 5_400_000,
      lag_warning_bytes: 512 * 1024 * 1024 + 1,
    });
    expect(c.sources[0].url).toBeUndefined();
    expect(c.consumers[0].tables).toEqual(['public.orders', 'audit.log']);
    expect(c.consumers[0].group_by).toEqual({ 'public.orders': ['customer_id'] });
    expect(c.consumers[0].webhook).toMatchObject({
      batch_timeout_ms: 0,
      timeout_ms: 1500,
      max_response_bytes: 512 * 1024,
      retry: { initial_ms: 250, factor: 1.5, cap_ms: 300_000, max_attempts: 7, max_age_ms: 172_800_000 },
    });
  });

  it('loads the example config/sluice.yaml', () => {
    const c = loadConfig(EXAMPLE, {});
    expect(c.sources.map((s) => s.name)).toEqual(['app']);
    expect(c.sources[0].url).toBeUndefined(); // ${SOURCE_DATABASE_URL:-} → empty → the buffer database
    expect(c.consumers.map((x) => [x.name, x.kind])).toEqual([
      ['demo-pull', 'pull'],
      ['demo-webhook', 'webhook'],
    ]);
    expect(c.consumers[1].webhook?.url).toBe('http://127.0.0.1:7377/webhook');
    expect(c.consumers[1].webhook?.allow_private_ranges).toEqual(['127.0.0.0/8']);
    const withEnv = loadConfig(EXAMPLE, { DEMO_WEBHOOK_URL: 'https://hooks.example.com/in', SOURCE_DATABASE_URL: 'postgres://u@h/db' });
    expect(withEnv.consumers[1].webhook?.url).toBe('https://hooks.example.com/in');
    expect(withEnv.sources[0].url).toBe('postgres://u@h/db');
  });

  it('treats an empty file as an empty config', () => {
    expect(loadConfig({ text: '' }, {})).toMatchObject({ sources: [], consumers: [] });
  });
});

describe('loadConfig: every problem has a path', () => {
  it('unknown key, with a suggestion', () => {
    const doc = base();
    doc.sources[0].tabels = ['x'];
    expectIssue(() => load(doc), 'sources[0].tabels', 'unknown key (did you mean "tables"?)');
    expectIssue(() => load({ ...base(), sourcse: [] }), 'sourcse', /did you mean "sources"/);
    expectIssue(() => load({ ...base(), zzz: 1 }), 'zzz', /^unknown key$/);
  });

  it('wrong type', () => {
    expectIssue(() => load({ ...base(), http: { port: 'eighty' } }), 'http.port', 'must be an integer');
    const doc = base();
    doc.consumers[0].tables = 'orders';
    expectIssue(() => load(doc), 'consumers[0].tables', 'must be a list');
  });

  it('bad enum', () => {
    const doc = base();
    doc.consumers[0].kind = 'webhok';
    expectIssue(() => load(doc), 'consumers[0].kind', 'must be one of: pull, webhook');
  });

  it('bad duration and bad size', () => {
    for (const bad of ['30x', '30', '-1s', -5, 1.5, '0s', 0]) {
      const doc = base();
      doc.consumers[0].pull = { ack_wait: bad };
      expectIssue(() => load(doc), 'consumers[0].pull.ack_wait', /^must be a duration such as "30s"/);
    }
    const doc = base();
    doc.sources[0].lag_warning = '1XB';
    expectIssue(() => load(doc), 'sources[0].lag_warning', /^must be a size such as "64KB"/);
  });

  it('retention: durations and sizes within their bounds, a path on each problem', () => {
    const doc = base();
    doc.sources[0].retention = { max_age: '36h', max_size: '512MB' };
    doc.consumers[0].start = 'earliest';
    doc.consumers[1].start = '2026-12-01T09:30:00.123456+01:00';
    const c = load(doc);
    expect(c.sources[0].retention).toEqual({ max_age_ms: 36 * 3_600_000, max_size_bytes: 512 * 1024 ** 2 });
    expect(c.consumers.map((x) => x.start)).toEqual(['earliest', '2026-12-01T09:30:00.123456+01:00']);
    expect(load({ ...base(), sources: [{ ...base().sources[0], retention: { max_age: 1000 } }] }).sources[0].retention.max_age_ms).toBe(1000);
    const cases: Array<[unknown, string, RegExp]> = [
      [{ max_age: '500ms' }, 'sources[0].retention.max_age', /^must be at least 1s$/],
      [{ max_age: '3651d' }, 'sources[0].retention.max_age', /^must be at most 3650d$/],
      [{ max_age: 'a week' }, 'sources[0].retention.max_age', /^must be a duration such as "30s".*from 1s, at most 3650d$/],
      [{ max_size: '512KB' }, 'sources[0].retention.max_size', /^must be at least 1MB$/],
      [{ max_size: '101TB' }, 'sources[0].retention.max_size', /^must be at most 100TB$/],
      [{ max_size: 0 }, 'sources[0].retention.max_size', /^must be a size such as "64KB".*from 1MB, at most 100TB$/],
      [{ max_rows: 5 }, 'sources[0].retention.max_rows', /^unknown key/],
      ['7d', 'sources[0].retention', /^must be a map$/],
    ];
    for (const [retention, path, reason] of cases) {
      const d = base();
      d.sources[0].retention = retention;
      expectIssue(() => load(d), path, reason);
    }
  });

  it('start: now, earliest, an RFC 3339 timestamp or an LSN', () => {
    for (const good of ['now', 'earliest', '2026-12-01T09:30:00Z', '2026-12-01 09:30:00.5-05:00', '16/B374D848', '0/0']) {
      const d = base();
      d.consumers[0].start = good;
      expect(load(d).consumers[0].start).toBe(good);
    }
    for (const bad of ['latest', 'Now', '2026-02-30T00:00:00Z', '2026-12-01', '2026-12-01T09:30:00', '16/B374D848/1', '123456789/0', 'FFFFFFFF/0', 5]) {
      const d = base();
      d.consumers[0].start = bad;
      expectIssue(() => load(d), 'consumers[0].start', typeof bad === 'number' ? /^must be now, earliest/ : /^must be now, earliest, an RFC 3339 timestamp .*or an LSN such as "16\/B374D848"$/);
    }
  });

  it('bad URL', () => {
    for (const url of ['ftp://example.com/x', 'not a url', '']) {
      const doc = base();
      doc.consumers[1].webhook.url = url;
      expectIssue(() => load(doc), 'consumers[1].webhook.url', 'must be an http or https URL');
    }
    const doc = base();
    doc.sources[0].url = 'mysql://h/db';
    expectIssue(() => load(doc), 'sources[0].url', /postgres:\/\/ URL/);
  });

  it('bad secret: prefix, alphabet, decoded length', () => {
    const short = 'whsec_' + Buffer.alloc(8, 1).toString('base64');
    const long = 'whsec_' + Buffer.alloc(65, 1).toString('base64');
    for (const bad of ['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_not-base64!', short, long]) {
      const doc = base();
      doc.consumers[1].webhook.secrets = [SECRET, bad];
      expectIssue(() => load(doc), 'consumers[1].webhook.secrets[1]', /whsec_.*24–64 bytes/);
    }
    const doc = base();
    doc.consumers[1].webhook.secrets = [SECRET, 'whsec_' + Buffer.alloc(64, 7).toString('base64')];
    expect(load(doc).consumers[1].webhook?.secrets).toHaveLength(2);
  });

  it('an ed25519 whsk_ key signs (v1a); its whpk_ public key or a malformed whsk_ is refused, with what to give', () => {
    const { privateKey, publicKey } = generateKeyPair();
    const doc = base();
    doc.consumers[1].webhook.secrets = [privateKey, SECRET];
    expect(load(doc).consumers[1].webhook?.secrets).toEqual([privateKey, SECRET]);
    for (const bad of [publicKey, 'whsk_' + Buffer.alloc(31, 1).toString('base64'), 'whsk_not-base64!']) {
      const d = base();
      d.consumers[1].webhook.secrets = [bad];
      expectIssue(() => load(d), 'consumers[1].webhook.secrets[0]', /ed25519 signing key "whsk_"/);
    }
  });

  it('bad header name, reserved header, header value with a line break', () => {
    const doc = base();
    doc.consumers[1].webhook.headers = { 'bad name': 'x', 'Content-Type': 'text/plain', 'X-Ok': 'a\r\nInjected: 1' };
    const issues = issuesOf(() => load(doc));
    expect(issues.map((i) => [i.path, i.reason])).toEqual([
      ['consumers[1].webhook.headers["bad name"]', 'must be an HTTP header name (RFC 7230 token)'],
      ['consumers[1].webhook.headers["X-Ok"]', 'must be a string without line breaks'],
    ]);
    delete doc.consumers[1].webhook.headers['bad name'];
    delete doc.consumers[1].webhook.headers['X-Ok'];
    expectIssue(() => load(doc), 'consumers[1].webhook.headers["Content-Type"]', /set by Sluice/);
  });

  it('consumer on an unknown source', () => {
    const doc = base();
    doc.consumers[0].source = 'ap';
    expectIssue(() => load(doc), 'consumers[0].source', 'no source named "ap" (did you mean "app"?)');
  });

  it('table not captured by the source (a captured schema counts)', () => {
    const doc = base();
    doc.consumers[0].tables = ['orders', 'audit.anything', 'customers'];
    expectIssue(() => load(doc), 'consumers[0].tables[2]', /"public.customers" is not captured by source "app"/);
  });

  it('duplicate names, and names that collide once qualified', () => {
    const doc = base();
    doc.consumers[1].name = 'puller';
    doc.sources.push({ name: 'app', tables: ['x'] });
    const issues = issuesOf(() => load(doc));
    expect(issues.map((i) => i.path).sort()).toEqual(['consumers[1].name', 'sources[1].name']);
    expect(issues.find((i) => i.path === 'consumers[1].name')?.reason).toBe('"puller" is already used by consumers[0]');
    const slots = base();
    slots.sources.push({ name: 'app2', tables: ['x'], slot: 'sluice_app' });
    expectIssue(() => load(slots), 'sources[1].slot', '"sluice_app" is already used by sources[0] on the same database');
    slots.sources[1].url = 'postgres://elsewhere/db';
    expect(load(slots).sources[1].slot).toBe('sluice_app');
    const dup = base();
    dup.consumers[0].tables = ['orders', 'public.orders'];
    expectIssue(() => load(dup), 'consumers[0].tables[1]', 'lists "public.orders" twice');
  });

  it('kind and settings block must match', () => {
    const doc = base();
    delete doc.consumers[1].webhook;
    expectIssue(() => load(doc), 'consumers[1].webhook', 'is required for a webhook consumer');
    const pullOnHook = base();
    pullOnHook.consumers[1].pull = { ack_wait: '5s' };
    expectIssue(() => load(pullOnHook), 'consumers[1].pull', 'is only allowed when kind is pull');
  });

  it('required keys, names, group_by tables, CIDR ranges', () => {
    const doc = base();
    delete doc.consumers[0].name;
    expectIssue(() => load(doc), 'consumers[0].name', 'is required');
    const badName = base();
    badName.sources[0].name = 'App DB';
    badName.consumers = [];
    expectIssue(() => load(badName), 'sources[0].name', /lowercase letters/);
    const group = base();
    group.consumers[0].group_by = { items: ['id'] };
    expectIssue(() => load(group), 'consumers[0].group_by.items', /"public.items" is not one of this consumer's tables/);
    const cidr = base();
    cidr.consumers[1].webhook.allow_private_ranges = ['10.0.0.0/33'];
    expectIssue(() => load(cidr), 'consumers[1].webhook.allow_private_ranges[0]', /CIDR/);
  });

  it('lists every problem in the message, with lines', () => {
    const text = ['sources:', '  - name: app', '    tabels: [a]', 'consumers:', '  - {name: c, source: nope, kind: pull, tables: [a]}', 'http: {port: 99999}'].join('\n');
    try {
      loadConfig({ text, origin: 'sluice.yaml' }, {});
      expect.unreachable();
    } catch (err) {
      const e = err as ConfigError;
      expect(e.issues).toEqual([
        { path: 'sources[0].tabels', reason: 'unknown key (did you mean "tables"?)', line: 3 },
        { path: 'consumers[0].source', reason: 'no source named "nope" (sources: app)', line: 5 },
        { path: 'http.port', reason: 'must be at most 65535', line: 6 },
      ]);
      expect(e.message).toContain('invalid configuration in sluice.yaml (3 problems)');
      expect(e.message).toContain('sources[0].tabels: unknown key (did you mean "tables"?) (line 3)');
    }
  });

  it('a NUL character anywhere is refused before anything else, as Postgres could not store it (config apply)', () => {
    const text = [
      'sources:',
      '  - {name: app, tables: [orders]}',
      'consumers:',
      '  - name: hook',
      '    source: app',
      '    kind: webhook',
      '    tables: [orders]',
      '    webhook: {url: "https://example.com/h", headers: {X-Key: "Bearer k\\0"}}',
      '    annotations: {"team\\0": a}',
    ].join('\n');
    expect(issuesOf(() => loadConfig({ text }, {}))).toEqual([
      { path: 'consumers[0].webhook.headers["X-Key"]', reason: 'must not contain a NUL character (\\u0000)', line: 8 },
      { path: 'consumers[0].annotations["team\\u0000"]', reason: 'is a key with a NUL character (\\u0000), which cannot be stored', line: 9 },
    ]);
  });

  it('YAML syntax errors and repeated keys', () => {
    expectIssue(() => loadConfig({ text: 'sources: [\n' }, {}), '(yaml)', /./);
    expectIssue(() => loadConfig({ text: 'http: {}\nhttp: {}\n' }, {}), '(yaml)', /unique/);
  });
});

describe('${VAR} substitution', () => {
  const text = (url: string) => `consumers: []\nsources:\n  - name: app\n    tables: [t]\n    url: ${url}\n`;

  it('replaces variables, with and without defaults', () => {
    expect(loadConfig({ text: text('${DB}') }, { DB: 'postgres://a@h/x' }).sources[0].url).toBe('postgres://a@h/x');
    expect(loadConfig({ text: text('${DB:-postgres://d@h/y}') }, {}).sources[0].url).toBe('postgres://d@h/y');
    // ":-" also replaces an empty value, as in the shell.
    expect(loadConfig({ text: text('${DB:-postgres://d@h/y}') }, { DB: '' }).sources[0].url).toBe('postgres://d@h/y');
    expect(loadConfig({ text: text('"postgres://${USER}@${HOST:-localhost}/db"') }, { USER: 'me' }).sources[0].url).toBe(
      'postgres://me@localhost/db',
    );
  });

  it('an unset variable is an error naming the path and the variable', () => {
    expectIssue(() => loadConfig({ text: text('${SOURCE_URL}') }, {}), 'sources[0].url', /variable SOURCE_URL is not set/);
  });

  it('$${ is a literal, malformed references are errors', () => {
    expect(expand('a$${B}c', {})).toEqual({ value: 'a${B}c', problems: [] });
    expect(expand('$HOME and $$', {})).toEqual({ value: '$HOME and $$', problems: [] });
    expect(expand('${1X}', {}).problems[0]).toMatch(/malformed reference "\$\{1X\}"/);
    expect(expand('x${A', { A: '1' }).problems[0]).toMatch(/without a closing/);
  });

  it('unquoted values are re-typed, quoted ones stay strings, values never change the structure', () => {
    expect(loadConfig({ text: 'http:\n  port: ${PORT}' }, { PORT: '8080' }).http.port).toBe(8080);
    expectIssue(() => loadConfig({ text: 'http: {port: "${PORT}"}' }, { PORT: '8080' }), 'http.port', 'must be an integer');
    const c = loadConfig({ text: 'http:\n  host: ${H}' }, { H: 'a: b\nport: 1' });
    expect(c.http).toMatchObject({ host: 'a: b\nport: 1', port: 7376 });
  });
});

describe('single resources (the management API shape)', () => {
  it('validateConsumer reports paths relative to the consumer', () => {
    expect(validateConsumer({ name: 'c', source: 'app', kind: 'pull', tables: ['t'], pull: { ack_wait: '5s' } }).pull?.ack_wait_ms).toBe(5000);
    expectIssue(
      () => validateConsumer({ name: 'c', source: 'app', kind: 'webhook', tables: ['t'], webhook: { url: 'x' } }),
      'webhook.url',
      'must be an http or https URL',
    );
    const sources = [validateSource({ name: 'app', tables: ['t'] })];
    expectIssue(() => validateConsumer({ name: 'c', source: 'app', kind: 'pull', tables: ['u'] }, { sources }), 'tables[0]', /not captured/);
  });

  it('validateSource requires something to capture', () => {
    expectIssue(() => validateSource({ name: 'app' }), 'tables', /must capture some tables/);
    expectIssue(() => validateSource({ name: 'app', tables: ['t'], slot: 'Bad-Slot' }), 'slot', /replication slot name/);
  });
});

describe('back to the YAML shape', () => {
  it('toYamlShape writes durations and sizes as people do, and loadConfig reads it back', () => {
    const doc = base();
    doc.consumers[1].webhook.secrets = [SECRET];
    doc.consumers[1].annotations = { team: 'orders', note: 'costs $${5}' };
    const config = load(doc);
    expect(config.consumers[1].annotations.note).toBe('costs ${5}');
    const shape = toYamlShape(config);
    expect(shape.consumers?.[1].webhook).toMatchObject({ timeout: '30s', batch_timeout: '50ms', max_response_bytes: '64KB' });
    expect(shape.consumers?.[1].webhook?.retry).toEqual({ initial: '1s', factor: 2, cap: '1h', max_age: '24h' });
    expect(loadConfig({ text: stringifyConfig(config) }, {})).toEqual(config);
  });

  it('units round-trip', () => {
    for (const ms of [1, 50, 1500, 30_000, 90_000, 3_600_000, 86_400_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
    for (const b of [1, 1000, 1024, 65_536, 1024 ** 3]) expect(parseSize(formatSize(b))).toBe(b);
    expect(formatDuration(86_400_000)).toBe('24h');
    expect(parseSize('1.5 MiB')).toBe(1.5 * 1024 * 1024);
  });
});
