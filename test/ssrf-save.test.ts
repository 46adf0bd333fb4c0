// Webhook URLs whose host is a literal address the SSRF guard refuses are
// refused when the consumer is saved, through the API and the YAML config
// alike, unless allow_private_ranges covers them. Hostnames are left to the
// delivery-time check (test/ssrf.test.ts): what they resolve to can change.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, loadConfig, type ConfigIssue } from '../src/config/load.js';
import { SOURCE, WEBHOOK_CONSUMER, startApi, type ApiFixture } from './api-fixture.js';

// [url, what its host is refused as]. The WHATWG URL parser reads the loose
// IPv4 forms as IPv4 addresses and undici dials what it read, so they count.
const REFUSED: Array<[string, RegExp]> = [
  ['http://10.0.0.1/hook', /host 10\.0\.0\.1 is a private address/],
  ['http://169.254.169.254/latest/meta-data/', /host 169\.254\.169\.254 is a cloud metadata address/],
  ['http://[fd00:ec2::254]/', /host fd00:ec2::254 is a cloud metadata address/],
  ['http://127.0.0.1:8080/hook', /host 127\.0\.0\.1 is a loopback address/],
  ['http://[::1]:8080/hook', /host ::1 is a loopback address/],
  ['http://2130706433/', /host 127\.0\.0\.1 is a loopback address/],
  ['http://0x7f.1/', /host 127\.0\.0\.1 is a loopback address/],
  ['http://0177.0.0.1/', /host 127\.0\.0\.1 is a loopback address/],
  ['http://127.0.0.1./', /host 127\.0\.0\.1 is a loopback address/],
  ['http://0/', /host 0\.0\.0\.0 is a "this network" address/],
  ['https://[::ffff:169.254.169.254]/', /host ::ffff:a9fe:a9fe is a cloud metadata address/],
  ['http://[::ffff:10.0.0.1]/', /host ::ffff:a00:1 is a private address/],
  ['http://[2002:7f00:1::]/', /host 2002:7f00:1:: is a loopback address \(in a 6to4 address\)/],
  ['http://192.0.2.10/', /host 192\.0\.2\.10 is a documentation address/],
];

// Names, and public literals: accepted (names are judged at each delivery).
const ACCEPTED = ['https://example.com/hook', 'http://localhost:9/hook', 'http://8.8.8.8/hook', 'http://[2606:4700::1111]/', 'http://10.0.0.1.example.com/'];

const HINT = /refused unless webhook\.allow_private_ranges covers it/;

describe('the YAML config (startup, sluice config apply)', () => {
  const doc = (webhook: Record<string, unknown>) => ({
    sources: [{ name: 'app', tables: ['orders'] }],
    consumers: [
      { name: 'puller', source: 'app', kind: 'pull', tables: ['orders'] },
      { name: 'hook', source: 'app', kind: 'webhook', tables: ['orders'], webhook },
    ],
  });
  const issues = (webhook: Record<string, unknown>): ConfigIssue[] => {
    try {
      loadConfig({ text: stringify(doc(webhook)) }, {});
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.issues;
    }
  };

  it.each(REFUSED)('refuses %s, naming the path, the reason and the fix', (url, reason) => {
    const found = issues({ url });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ path: 'consumers[1].webhook.url', line: expect.any(Number) });
    expect(found[0].reason).toMatch(reason);
    expect(found[0].reason).toMatch(HINT);
  });

  it.each(ACCEPTED)('accepts %s', (url) => {
    expect(issues({ url })).toEqual([]);
  });

  it('accepts a literal that allow_private_ranges covers, and only that', () => {
    expect(issues({ url: 'http://127.0.0.1:7377/webhook', allow_private_ranges: ['127.0.0.0/8'] })).toEqual([]);
    expect(issues({ url: 'http://[2002:7f00:1::]/', allow_private_ranges: ['127.0.0.0/8'] })).toEqual([]);
    expect(issues({ url: 'http://[fd00:ec2::254]/', allow_private_ranges: ['fd00:ec2::254/128'] })).toEqual([]);
    const wrong = issues({ url: 'http://10.0.0.1/', allow_private_ranges: ['127.0.0.0/8'] });
    expect(wrong.map((i) => i.path)).toEqual(['consumers[1].webhook.url']);
    expect(wrong[0].reason).toMatch(/e\.g\. "10\.0\.0\.1\/32"/);
  });

  it('the default config/sluice.yaml still loads (its demo consumer allows 127.0.0.0/8)', () => {
    expect(() => loadConfig('config/sluice.yaml', {})).not.toThrow();
    const pointed = loadConfig('config/sluice.yaml', { DEMO_WEBHOOK_URL: 'http://127.0.0.1:9/x' });
    expect(pointed.consumers.find((c) => c.kind === 'webhook')?.webhook?.allow_private_ranges).toEqual(['127.0.0.0/8']);
  });
});

describe('the management API', () => {
  let f: ApiFixture;
  beforeAll(async () => {
    f = await startApi('api_ssrf_save');
    expect((await f.call('POST', '/api/sources', SOURCE)).status).toBe(201);
  });
  afterAll(async () => {
    await f?.stop();
  });

  const stored = async () => JSON.stringify((await f.pool.query('SELECT name, config FROM sluice.consumers ORDER BY name')).rows);
  const hook = (name: string, webhook: Record<string, unknown>) => ({ ...WEBHOOK_CONSUMER, name, webhook });

  it.each(REFUSED)('POST refuses %s with a 422 naming webhook.allow_private_ranges, and stores nothing', async (url, reason) => {
    const before = await stored();
    const r = await f.call('POST', '/api/consumers', hook('private-hook', { url }));
    expect(r.status).toBe(422);
    expect(r.body.summary).toMatch(/^Invalid request: webhook\.url: host /);
    expect(r.body.summary).toMatch(reason);
    expect(r.body.summary).toMatch(HINT);
    expect(Object.keys(r.body.validation_errors)).toEqual(['webhook.url']);
    expect(await stored()).toBe(before);
  });

  it('POST accepts names and covered literals', async () => {
    expect((await f.call('POST', '/api/consumers', hook('named', { url: 'http://localhost:9/hook' }))).status).toBe(201);
    const covered = await f.call('POST', '/api/consumers', hook('covered', { url: 'http://127.0.0.1:9/hook', allow_private_ranges: ['127.0.0.0/8'] }));
    expect(covered.status).toBe(201);
  });

  it('PATCH refuses a private literal, or dropping the range that covered one, and changes nothing', async () => {
    const before = await stored();
    const toMetadata = await f.call('PATCH', '/api/consumers/named', { webhook: { url: 'http://169.254.169.254/' } });
    expect(toMetadata.status).toBe(422);
    expect(toMetadata.body.summary).toMatch(/webhook\.url: host 169\.254\.169\.254 is a cloud metadata address.*webhook\.allow_private_ranges/);
    const uncovered = await f.call('PATCH', '/api/consumers/covered', { webhook: { allow_private_ranges: [] } });
    expect(uncovered.status).toBe(422);
    expect(uncovered.body.validation_errors['webhook.url'][0]).toMatch(/host 127\.0\.0\.1 is a loopback address/);
    expect(await stored()).toBe(before);

    const allowed = await f.call('PATCH', '/api/consumers/named', { webhook: { url: 'http://10.1.2.3/', allow_private_ranges: ['10.0.0.0/8'] } });
    expect(allowed.status).toBe(200);
    expect(allowed.body.webhook).toMatchObject({ url: 'http://10.1.2.3/', allow_private_ranges: ['10.0.0.0/8'] });
  });
});
