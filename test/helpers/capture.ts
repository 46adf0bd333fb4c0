// Builds what a capture test needs on a real embedded Postgres: a migrated
// buffer, consumers inserted as rows, and a running SourceCapture.
import pg from 'pg';
import { ConsumerRegistry } from '../../src/buffer/consumers.js';
import type { ConsumerConfig, SourceConfig } from '../../src/config/types.js';
import { SourceCapture } from '../../src/capture/source-capture.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { migrate } from '../../src/db/migrate.js';

const say = (level: string) => (o: unknown, m?: string) => {
  if (process.env.SLUICE_TEST_LOG) console.log(level, m ?? '', JSON.stringify(o));
};
export const quietLog = { info: say('info'), warn: say('warn'), error: say('error') };

export function sourceConfig(name: string, tables: string[], extra: Partial<SourceConfig> = {}): SourceConfig {
  return {
    name,
    tables,
    schemas: [],
    publication: `sluice_${name}`,
    slot: `sluice_${name}`,
    create_if_missing: true,
    heartbeat_interval_ms: 60_000,
    lag_warning_bytes: 1 << 30,
    max_batch_changes: 2500,
    ...extra,
  };
}

export function consumerConfig(name: string, source: string, tables: string[], extra: Partial<ConsumerConfig> = {}): ConsumerConfig {
  return {
    name,
    source,
    kind: 'pull',
    tables,
    group_by: true,
    dead_letter_blocks_group: false,
    annotations: {},
    pull: { ack_wait_ms: 30_000, max_ack_pending: 10_000, max_waiting: 20 },
    ...extra,
  };
}

export async function insertConsumer(pool: Pool, c: ConsumerConfig): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO sluice.consumers (name, source_name, kind, config) VALUES ($1, $2, $3, $4) RETURNING id`,
    [c.name, c.source, c.kind, JSON.stringify(c)],
  );
  return rows[0].id;
}

export interface CaptureFixture {
  pool: Pool;
  consumers: ConsumerRegistry;
  capture: SourceCapture;
  stop(): Promise<void>;
}

export async function startCapture(url: string, source: SourceConfig, consumers: ConsumerConfig[]): Promise<CaptureFixture> {
  const pool = createPool(url);
  await migrate(pool);
  for (const c of consumers) await insertConsumer(pool, c);
  const registry = new ConsumerRegistry(pool);
  await registry.reload();
  const capture = new SourceCapture(source, { bufferPool: pool, sourceUrl: url, consumers: registry, log: quietLog });
  capture.start();
  // Changes committed before the slot exists are not captured: wait for streaming.
  await eventually(async () => capture.status().running);
  return {
    pool,
    consumers: registry,
    capture,
    stop: async () => {
      await capture.stop();
      await pool.end();
    },
  };
}

/** Polls (bounded) until fn returns a truthy value. */
export async function eventually<T>(fn: () => Promise<T>, timeoutMs = 20_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
}

export async function sql(url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text, params);
  } finally {
    await c.end();
  }
}

export async function payloads(pool: Pool, consumerName: string): Promise<Record<string, any>[]> {
  const { rows } = await pool.query<{ payload: string }>(
    `SELECT m.payload FROM sluice.messages m JOIN sluice.consumers c ON c.id = m.consumer_id
      WHERE c.name = $1 ORDER BY m.commit_lsn, m.commit_idx`,
    [consumerName],
  );
  return rows.map((r) => JSON.parse(r.payload));
}
