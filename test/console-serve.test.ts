// The console's files as the gateway serves them (src/console/serve.ts): the
// page at / and /console with a strict Content-Security-Policy and no caching,
// hashed assets cached for a year, gzip when accepted, a 404 for an unknown
// file, and a 503 naming the fix when the console was never built. No
// database is touched: the files need no token and no query.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { createPool } from '../src/db/pool.js';
import { buildApp } from '../src/http/app.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-console-'));
const empty = mkdtempSync(path.join(os.tmpdir(), 'sluice-console-none-'));
// Never connected: nothing here queries.
const pool = createPool('postgres://nobody@127.0.0.1:1/none');

async function appWith(consoleDir: string | false) {
  const app = await buildApp({ pool, consumers: new ConsumerRegistry(pool), instanceId: 'test:1', logger: false, console: consoleDir });
  await app.ready();
  return app;
}

beforeAll(() => {
  mkdirSync(path.join(dir, 'assets'));
  writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>Sluice console</title>');
  writeFileSync(path.join(dir, 'index.html.gz'), gzipSync('<!doctype html><title>Sluice console</title>'));
  writeFileSync(path.join(dir, 'assets', 'app-ABC123.js'), 'console.log(1)');
  writeFileSync(path.join(dir, 'assets', 'app-ABC123.js.gz'), gzipSync('console.log(1)'));
  writeFileSync(path.join(dir, 'assets', 'app-ABC123.css'), 'body{}');
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(empty, { recursive: true, force: true });
  await pool.end();
});

describe('the console files', () => {
  it('the page at / and /console: no token, no cache, a strict CSP, no framing', async () => {
    const app = await appWith(dir);
    for (const url of ['/', '/console', '/console/']) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(r.body).toContain('Sluice console');
      expect(r.headers['cache-control']).toBe('no-cache');
      expect(r.headers['content-security-policy']).toContain("script-src 'self'");
      expect(r.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(r.headers['content-security-policy']).not.toContain('unsafe');
      expect(r.headers['x-frame-options']).toBe('DENY');
    }
    await app.close();
  });

  it('assets: cached for a year, gzipped when the browser accepts it, 404 otherwise', async () => {
    const app = await appWith(dir);
    const plain = await app.inject({ method: 'GET', url: '/console/assets/app-ABC123.js' });
    expect(plain.statusCode).toBe(200);
    expect(plain.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body).toBe('console.log(1)');
    const gz = await app.inject({ method: 'GET', url: '/console/assets/app-ABC123.js', headers: { 'accept-encoding': 'gzip, br' } });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.rawPayload).toString()).toBe('console.log(1)');
    // No .gz beside it: sent as it is.
    const css = await app.inject({ method: 'GET', url: '/console/assets/app-ABC123.css', headers: { 'accept-encoding': 'gzip' } });
    expect(css.headers['content-encoding']).toBeUndefined();
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    for (const url of ['/console/assets/nope.js', '/console/assets/..%2Findex.html', '/console/elsewhere']) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode, url).toBe(404);
      expect(JSON.parse(r.body).summary).toBeTruthy();
    }
    await app.close();
  });

  it('never built: a 503 that says how to build it; console: false serves nothing', async () => {
    const app = await appWith(empty);
    const r = await app.inject({ method: 'GET', url: '/' });
    expect(r.statusCode).toBe(503);
    expect(JSON.parse(r.body).summary).toMatch(/npm run build:console/);
    await app.close();
    const none = await appWith(false);
    expect((await none.inject({ method: 'GET', url: '/' })).statusCode).toBe(404);
    await none.close();
  });
});
