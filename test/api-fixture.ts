// Shared setup for the API tests: a real embedded Postgres (test/helpers/pg.ts),
// migrated, a consumer registry, and the app built on them. Capture is a
// stand-in whose status the test sets (the app only reads status()).
import type { FastifyInstance, InjectOptions } from 'fastify';
import { expect } from 'vitest';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { buildApp } from '../src/http/app.js';
import type { AppDeps, SourceStatus } from '../src/http/deps.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface ApiFixture {
  pg: TestPg;
  url: string;
  pool: Pool;
  deps: AppDeps;
  app: FastifyInstance;
  /** What capture reports; tests change it. */
  statuses: SourceStatus[];
  /** app.inject with the admin token (or `token`) and JSON in/out. */
  call(method: InjectOptions['method'], url: string, body?: unknown, token?: string | null): Promise<{ status: number; body: any; raw: string; headers: Record<string, unknown> }>;
  stop(): Promise<void>;
}

/** `extra`: more of the app's deps (e.g. metrics) for the tests that need them. */
export async function startApi(dbName: string, extra: Partial<AppDeps> = {}): Promise<ApiFixture> {
  const pg = await startTestPg();
  const url = await pg.createDatabase(dbName);
  const pool = createPool(url);
  await migrate(pool);
  // A source's tables must exist: creating or changing a source sets up its
  // publication and slot before the call returns.
  await pool.query(`CREATE TABLE public.orders (id bigint PRIMARY KEY, status text);
    CREATE TABLE public.users (id bigint PRIMARY KEY, name text);
    CREATE TABLE public.items (id bigint PRIMARY KEY, order_id bigint)`);
  const consumers = new ConsumerRegistry(pool);
  await consumers.reload();
  const statuses: SourceStatus[] = [];
  const deps: AppDeps = {
    pool,
    consumers,
    capture: { status: () => statuses },
    adminToken: ADMIN_TOKEN,
    instanceId: 'test:1',
    logger: false,
    ...extra,
  };
  const app = await buildApp(deps);
  await app.ready();
  return {
    pg,
    url,
    pool,
    deps,
    app,
    statuses,
    async call(method, path, body, token = ADMIN_TOKEN) {
      const res = await app.inject({
        method,
        url: path,
        headers: token === null ? {} : { authorization: `Bearer ${token}` },
        ...(body !== undefined && { payload: body as object }),
      });
      let parsed: unknown;
      try {
        parsed = res.body ? JSON.parse(res.body) : undefined;
      } catch {
        parsed = undefined;
      }
      return { status: res.statusCode, body: parsed, raw: res.body, headers: res.headers };
    },
    async stop() {
      await app.close();
      await pool.end();
      await pg.stop();
    },
  };
}

/**
 * [method, url, body (a string is sent as is), status, expected]: each request
 * must get that status, the error shape, and `expected` must match the summary
 * and field errors (a RegExp) or be contained in the field errors (an object).
 */
export type Rejection = [string, string, unknown, number, RegExp | Record<string, unknown>];

export async function expectRejections(f: ApiFixture, cases: Rejection[]): Promise<void> {
  for (const [method, url, body, status, expected] of cases) {
    const res = await f.app.inject({
      method: method as InjectOptions['method'],
      url,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(body !== undefined && { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const label = `${method} ${url} ${JSON.stringify(body)}`;
    expect(res.statusCode, label).toBe(status);
    const parsed = res.json();
    expect(typeof parsed.summary, label).toBe('string');
    if (expected instanceof RegExp) {
      expect(`${parsed.summary} ${JSON.stringify(parsed.validation_errors ?? {})}`, label).toMatch(expected);
    } else {
      expect(parsed.validation_errors, label).toMatchObject(expected);
    }
  }
}

/** A source and a table for it, as the consumer tests need. */
export const SOURCE = { name: 'main', tables: ['public.orders', 'public.users'] };
export const PULL_CONSUMER = { name: 'orders-pull', source: 'main', kind: 'pull', tables: ['public.orders'] };
export const WEBHOOK_CONSUMER = {
  name: 'orders-hook',
  source: 'main',
  kind: 'webhook',
  tables: ['public.orders'],
  webhook: { url: 'https://example.com/hook', headers: { 'X-Api-Key': 'super-secret-header-value' } },
};
