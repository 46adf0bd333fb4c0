// The web console in a real headless Chromium (Debian's package, driven by
// playwright-core through its executablePath: no browser is downloaded),
// against a real gateway process (`sluice start`), a real embedded Postgres
// and a real webhook receiver on 127.0.0.1. It signs in, creates a webhook
// consumer through the form, sees a row inserted in the source delivered in
// the attempt log, fails the receiver and retries the dead letter from the
// console, rotates the secret, shows validation errors beside their fields,
// creates a scoped token that then sees only its own consumer, shows the
// lost-connection banner, and returns to sign-in when a token is revoked.
// Screenshots of each view are written to test-results/console/ (git-ignored).
//
// Without Chromium (SLUICE_CHROMIUM or /usr/bin/chromium) the tests are
// skipped with a message when CI is unset, and fail when it is set (.ci/run
// installs the package).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, sql } from './helpers/capture.js';
import { type Child } from './helpers/child.js';
import { startGateway, type Gateway } from './helpers/gateway-process.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';

const CHROMIUM = process.env.SLUICE_CHROMIUM ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM && process.env.CI) {
  throw new Error(`Chromium is not at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium), or set SLUICE_CHROMIUM. CI does not skip the browser tests.`);
}
if (!HAVE_CHROMIUM) console.warn(`console-browser: skipped, Chromium is not at ${CHROMIUM} (apt-get install chromium, or set SLUICE_CHROMIUM)`);

const TOKEN = 'console-browser-admin-token';
const SHOTS = path.resolve('test-results/console');

let db: TestPg;
let url: string;
let receiver: Receiver;
let failing = false;
let dir: string;
let gateway: Gateway;
let browser: Browser;
let page: Page;
const children = new Set<Child>();

async function api(method: string, p: string, body?: unknown, token = TOKEN) {
  const res = await fetch(`${gateway.api}/api${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 204 ? undefined : await res.json() };
}

const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

/** Form controls on the page that no label names (a <label>, aria-label or aria-labelledby). */
const unlabelled = () =>
  page.evaluate(() =>
    Array.from(document.querySelectorAll<HTMLInputElement>('input, select, textarea'))
      .filter((el) => el.type !== 'hidden' && !el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      .map((el) => el.outerHTML),
  );

async function signIn(token: string) {
  await page.goto(`${gateway.api}/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
}

describe.skipIf(!HAVE_CHROMIUM)('the web console in Chromium', () => {
  beforeAll(async () => {
    // The console as the current sources build it (npm ci did too, maybe from older ones).
    execFileSync(process.execPath, ['scripts/build-console.mjs'], { stdio: 'pipe' });
    mkdirSync(SHOTS, { recursive: true });
    db = await startTestPg();
    url = await db.createDatabase('console_browser');
    await sql(url, 'CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL)');
    receiver = await startReceiver(() => (failing ? { status: 500, body: 'receiver is down for maintenance' } : { status: 200, body: 'thanks' }));
    dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-console-browser-'));
    writeFileSync(
      path.join(dir, 'sluice.yaml'),
      `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
sources:
  - name: shop
    tables: [public.orders]
consumers:
  - name: other
    source: shop
    kind: pull
    tables: [public.orders]
`,
    );
    gateway = await startGateway(url, dir, receiver, children);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // The machine's network is closed: no background fetches, no updates.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(15_000);
    // Confirmations (rotate, discard…) are accepted, as a user would.
    page.on('dialog', (d) => void d.accept());
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all([...children].map((c) => c.kill9()));
    await receiver?.close();
    await db?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a wrong token is refused at sign-in with the API summary', async () => {
    await page.goto(`${gateway.api}/console`);
    // By keyboard alone: Tab to the field, type, Enter.
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('field-token');
    await page.keyboard.type('slk_not-a-real-token');
    await page.keyboard.press('Enter');
    await page.getByText('Unknown or revoked token.').waitFor();
    expect(await page.getByLabel('API token').getAttribute('aria-invalid')).toBe('true');
    await shot('sign-in');
    // The token is never in the URL.
    expect(page.url()).not.toContain('slk_');
  });

  it('signs in and shows the overview with sources and consumers', async () => {
    await signIn(TOKEN);
    await page.getByRole('link', { name: 'shop' }).waitFor();
    await page.getByRole('link', { name: 'other' }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('sluice.token'))).toBe(TOKEN);
    await shot('overview');
  });

  it('creates a webhook consumer; a bad URL is shown beside its field first', async () => {
    await page.getByRole('link', { name: 'New consumer' }).click();
    await page.getByLabel('Name', { exact: true }).fill('orders-hook');
    await page.getByLabel('public.orders').check();
    await page.getByLabel('URL', { exact: true }).fill('not a url');
    await page.getByRole('button', { name: 'Create consumer' }).click();
    const urlError = page.locator('#field-webhook-url-error');
    await urlError.waitFor();
    expect(await urlError.textContent()).toMatch(/URL/i);
    expect(await page.getByLabel('URL', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    await shot('consumer-form-error');
    expect(await unlabelled()).toEqual([]);
    expect((await api('GET', '/consumers/orders-hook')).status).toBe(404);

    await page.getByLabel('URL', { exact: true }).fill(receiver.url);
    await page.getByLabel('Attempts before dead-lettering').fill('1');
    await page.getByLabel('Private address ranges allowed').fill('127.0.0.0/8');
    await page.getByRole('button', { name: 'Create consumer' }).click();
    // The generated secret, shown this once.
    const secret = page.getByRole('textbox', { name: /Its signing secret/ });
    await secret.waitFor();
    expect(await secret.inputValue()).toMatch(/^whsec_/);
    await page.getByRole('button', { name: 'I have copied it' }).click();
    await page.getByRole('heading', { name: /orders-hook/ }).waitFor();
    expect((await api('GET', '/consumers/orders-hook')).body).toMatchObject({ kind: 'webhook', tables: ['public.orders'] });
  });

  it('a row inserted in the source shows up delivered in the attempt log', async () => {
    await sql(url, "INSERT INTO public.orders VALUES (1, 'new')");
    await page.getByRole('tab', { name: 'Attempt log' }).click();
    await page.locator('table.attempts tbody tr', { hasText: 'delivered' }).first().waitFor();
    const row = page.locator('table.attempts tbody tr').first();
    expect(await row.textContent()).toContain('200');
    expect(receiver.accepted().map((m) => m.record.id)).toEqual([1]);
    await shot('consumer-attempts');
    await page.getByRole('tab', { name: 'Recent messages' }).click();
    await page.locator('ol.messages li', { hasText: 'insert public.orders' }).first().waitFor();
    await shot('consumer-messages');
  });

  it('a failing receiver makes a dead letter, retried from the console', async () => {
    failing = true;
    await sql(url, "INSERT INTO public.orders VALUES (2, 'failing')");
    await page.getByRole('tab', { name: 'Attempt log' }).click();
    await page.locator('table.attempts tbody tr', { hasText: '500' }).first().waitFor();
    await page.getByRole('tab', { name: 'Dead letters' }).click();
    await page.locator('ul.dead-letters li').first().waitFor();
    await shot('consumer-dead-letters');
    expect(await unlabelled()).toEqual([]);
    failing = false;
    await page.locator('ul.dead-letters input[type=checkbox]').first().check();
    await page.getByRole('button', { name: /Retry selected/ }).click();
    await page.getByText('1 retried: pending again.').waitFor();
    await eventually(async () => receiver.accepted().some((m) => m.record.id === 2));
    await page.getByText('No dead letters.').waitFor();
  });

  it('the attempt log pages: the newest 50 live, older ones on demand', async () => {
    const created = await api('POST', '/consumers', {
      name: 'one-by-one', source: 'shop', kind: 'webhook', tables: ['public.orders'], start: 'now',
      webhook: { url: receiver.url, batch_size: 1, allow_private_ranges: ['127.0.0.0/8'] },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await sql(url, "INSERT INTO public.orders SELECT g, 'paged' FROM generate_series(1000, 1059) g");
    await eventually(async () => (await api('GET', '/consumers/one-by-one/attempts?limit=100')).body.data.length >= 60, 30_000);
    const view = page.url();
    await page.goto(`${gateway.api}/#/consumers/one-by-one`);
    await page.getByRole('tab', { name: 'Attempt log' }).click();
    const rows = page.locator('table.attempts tbody tr');
    await rows.nth(49).waitFor();
    expect(await rows.count()).toBe(50);
    await page.getByRole('button', { name: 'Load older attempts' }).click();
    await rows.nth(59).waitFor();
    expect(await rows.count()).toBe(60);
    await page.getByRole('button', { name: 'Load older attempts' }).waitFor({ state: 'detached' });
    await page.goto(view);
    await page.getByRole('heading', { name: /orders-hook/ }).waitFor();
  });

  it('rotates the secret: the new one is shown once, the API masks it after', async () => {
    await page.getByRole('button', { name: 'Rotate secret' }).click();
    const secret = page.getByRole('textbox', { name: 'New signing secret.' });
    await secret.waitFor();
    const value = await secret.inputValue();
    expect(value).toMatch(/^whsec_/);
    await shot('consumer-rotated');
    await page.getByRole('button', { name: 'I have copied it' }).click();
    const stored = (await api('GET', '/consumers/orders-hook')).body;
    expect(stored.webhook.secrets).toHaveLength(2);
    expect(JSON.stringify(stored)).not.toContain(value);
    // The overview with both consumers (the one README shows).
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('link', { name: 'orders-hook' }).waitFor();
    await shot('overview-consumers');
  });

  it('sources: a new one is tested first and the problems are shown; a source lists its tables', async () => {
    await page.getByRole('link', { name: 'Sources' }).click();
    await page.getByRole('heading', { name: 'Add a source' }).waitFor();
    await page.getByLabel('Name', { exact: true }).fill('trial');
    await page.getByLabel('Tables', { exact: true }).fill('orders, missing_table');
    await page.getByRole('button', { name: 'Test connection' }).click();
    await page.getByText('table public.missing_table does not exist').waitFor();
    await shot('sources');
    expect(await unlabelled()).toEqual([]);
    await page.getByRole('link', { name: 'shop' }).click();
    await page.getByRole('cell', { name: 'default' }).waitFor();
    await shot('source');
    expect((await api('GET', '/sources/trial')).status).toBe(404);
  });

  let scoped = '';
  it('tokens: a scoped token is created, its secret shown once', async () => {
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.getByLabel('Name', { exact: true }).fill('orders-reader');
    await page.getByLabel(/only these consumers/).check();
    await page.getByLabel('orders-hook').check();
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = page.getByRole('textbox', { name: 'New token.' });
    await secret.waitFor();
    scoped = await secret.inputValue();
    expect(scoped).toMatch(/^slk_/);
    await page.getByRole('button', { name: 'I have copied it' }).click();
    await page.getByRole('cell', { name: 'orders-reader' }).waitFor();
    await shot('tokens');
    expect(await unlabelled()).toEqual([]);
  });

  it('a scoped token sees only its consumer', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(scoped);
    await page.getByRole('link', { name: 'orders-hook' }).waitFor();
    expect(await page.getByRole('link', { name: 'other', exact: true }).count()).toBe(0);
    expect(await page.getByRole('link', { name: 'Sources' }).count()).toBe(0);
    await shot('overview-scoped');
    await page.goto(`${gateway.api}/#/consumers/other`);
    await page.locator('.problem').waitFor();
    expect(await page.locator('.problem').textContent()).toMatch(/other/);
    // The API says the same to the token itself.
    expect((await api('GET', '/consumers/other', undefined, scoped)).status).toBe(403);
  });

  it('a lost connection shows a banner, which goes once the gateway answers again', async () => {
    await page.goto(`${gateway.api}/#/consumers/orders-hook`);
    await page.getByRole('heading', { name: /orders-hook/ }).waitFor();
    await page.route('**/api/**', (route) => route.abort('connectionrefused'));
    await page.getByText('Lost the connection to the gateway').waitFor();
    await shot('connection-lost');
    await page.unroute('**/api/**');
    await page.getByText('Lost the connection to the gateway').waitFor({ state: 'detached' });
  });

  it('a revoked token returns to sign-in', async () => {
    const tokens = (await api('GET', '/tokens')).body.data as { id: string; name: string }[];
    const id = tokens.find((t) => t.name === 'orders-reader')!.id;
    expect((await api('DELETE', `/tokens/${id}`)).status).toBe(204);
    await page.getByLabel('API token').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('sluice.token'))).toBeNull();
  });
});
