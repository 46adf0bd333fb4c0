// `sluice start`'s demo receiver serves the demo consumer alone. A user's own
// webhook consumer on 127.0.0.1 (named to sort before demo-webhook, as in the
// report) used to have its port taken by the demo receiver, which then acked
// its deliveries: its changes were marked delivered and never reached the app.
import { readFileSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.js';
import { eventually, sql } from './helpers/capture.js';
import { runFixture, type Child } from './helpers/child.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-demo-'));
chmodSync(dir, 0o755); // as root, Postgres runs as 'postgres' and must reach the folder
let gateway: Child;
let userPort: number;
let demoPort: number;
let pgUrl: string;

beforeAll(async () => {
  userPort = await freePort();
  demoPort = await freePort();
  // The shipped config, plus the user's own consumer (its receiver is not running).
  const config =
    readFileSync('config/sluice.yaml', 'utf8') +
    `
  - name: a-user-hook
    source: app
    kind: webhook
    tables: [public.demo_orders]
    webhook:
      url: http://127.0.0.1:${userPort}/hook
      allow_private_ranges: ["127.0.0.0/8"]
      retry: { initial: 200ms }
`;
  const file = path.join(dir, 'sluice.yaml');
  writeFileSync(file, config);
  gateway = runFixture('src/cli/main.ts', {
    DATABASE_URL: undefined,
    SLUICE_CONFIG: file,
    SLUICE_DATA_DIR: path.join(dir, 'data'),
    SLUICE_EMBEDDED_PORT: String(await freePort()),
    SLUICE_HTTP_PORT: String(await freePort()),
    SLUICE_DEMO_PORT: String(demoPort),
    DEMO_WEBHOOK_URL: `http://127.0.0.1:${demoPort}/webhook`,
  }, { args: ['start'] });
  await gateway.waitFor(/Sluice is running/, 90_000);
  pgUrl = (await gateway.waitFor(/Connect: +psql /)).replace(/^.*psql /, '').trim();
});

afterAll(async () => {
  await gateway?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });

describe('the demo receiver', () => {
  it("serves demo-webhook on its own port and never answers another consumer's deliveries", async () => {
    await gateway.waitFor(new RegExp(`Webhooks: +demo-webhook POSTs .* http://127\\.0\\.0\\.1:${demoPort}/webhook`));
    await sql(pgUrl, 'INSERT INTO demo_orders (customer_id, amount) VALUES (7, 19.90)');
    await gateway.waitFor(/demo-webhook +public\.demo_orders +insert +1/);
    // The user's port is left alone, and their change is still waiting for their app.
    expect(await refused(userPort)).toBe(true);
    await eventually(async () => {
      const { rows } = await sql(
        pgUrl,
        `SELECT count(*)::int AS attempts FROM sluice.webhook_attempts a JOIN sluice.consumers c ON c.id = a.consumer_id WHERE c.name = 'a-user-hook'`,
      );
      return rows[0].attempts >= 2;
    });
    const { rows } = await sql(
      pgUrl,
      `SELECT count(*)::int AS pending FROM sluice.messages m JOIN sluice.consumers c ON c.id = m.consumer_id WHERE c.name = 'a-user-hook'`,
    );
    expect(rows[0].pending).toBe(1);
  });

  it('a gateway on an external DATABASE_URL with no admin token says so at startup', async () => {
    const file = path.join(dir, 'external.yaml');
    writeFileSync(file, `http: { host: 127.0.0.1, port: ${await freePort()} }\n`);
    const second = runFixture('src/cli/main.ts', { DATABASE_URL: pgUrl, SLUICE_CONFIG: file, SLUICE_ADMIN_TOKEN: undefined }, { args: ['start'] });
    try {
      await second.waitFor(/sluice started/, 60_000);
      const warning = await second.waitFor(/no admin token/);
      expect(JSON.parse(warning)).toMatchObject({ level: 40, fix: expect.stringMatching(/SLUICE_ADMIN_TOKEN/) });
    } finally {
      await second.stop();
    }
  });
});
