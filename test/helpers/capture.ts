// Builds what a capture test needs on a real embedded Postgres: a migrated
// buffer, consumers inserted as rows, and a running SourceCapture.
import pg from 'pg';
import { ConsumerRegistry } from '../../src/buffer/consumers.js';
import { DEFAULT_RETENTION } from '../../src/config/normalise.js';
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
    retention: DEFAULT_RETENTION,
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

/** Stores the source (captures write into its log, numbered by sluice.sources); kept if already there. */
export async function storeSource(pool: Pool, source: SourceConfig): Promise<void> {
  await pool.query(`INSERT INTO sluice.sources (name, config) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, [
    source.name,
    JSON.stringify(source),
  ]);
}

export async function startCapture(url: string, source: SourceConfig, consumers: ConsumerConfig[]): Promise<CaptureFixture> {
  const pool = createPool(url);
  await migrate(pool);
  await storeSource(pool, source);
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

/**
 * A relation of every consumer's changes, as it will be handed them: the rows
 * of its tables in its source's log after its position (capture tests claim
 * nothing, so that is everything captured since the consumer was created),
 * with the group key it computes (sluice.admit). Columns: consumer (name),
 * consumer_id, commit_lsn, commit_idx, group_key, payload.
 */
export const CONSUMER_CHANGES = `(SELECT c.name AS consumer, c.id AS consumer_id, l.commit_lsn, l.commit_idx, l.payload,
    CASE WHEN r.group_by IS NULL THEN l.group_key
         WHEN jsonb_typeof(r.group_by) <> 'object' THEN NULL
         WHEN r.group_by ? (l.schema_name || '.' || l.table_name) THEN
           sluice.custom_group_key(l.schema_name || '.' || l.table_name, l.payload, r.group_by -> (l.schema_name || '.' || l.table_name), l.group_key)
         ELSE l.group_key END AS group_key
  FROM sluice.consumers c
  CROSS JOIN LATERAL sluice.consumer_route(c.id) r
  JOIN sluice.consumer_positions p ON p.consumer_id = c.id
  JOIN sluice.log l ON l.source_no = r.source_no AND (l.schema_name || '.' || l.table_name) = ANY (r.tables)
   AND (r.actions IS NULL OR l.action = ANY (r.actions))
   AND (l.commit_lsn, l.commit_idx) > (p.commit_lsn, p.commit_idx))`;

/** The changes of the consumer's tables stored in its source's log, in commit order (admitted or not). */
export async function payloads(pool: Pool, consumerName: string): Promise<Record<string, any>[]> {
  const { rows } = await pool.query<{ payload: string }>(
    `SELECT l.payload FROM sluice.consumers c
       JOIN sluice.sources s ON s.name = c.source_name
       JOIN sluice.log l ON l.source_no = s.log_no
      WHERE c.name = $1 AND (l.schema_name || '.' || l.table_name) IN (SELECT jsonb_array_elements_text(c.config -> 'tables'))
        AND (l.commit_lsn, l.commit_idx) > (SELECT p.commit_lsn, p.commit_idx FROM sluice.consumer_positions p WHERE p.consumer_id = c.id)
      ORDER BY l.commit_lsn, l.commit_idx`,
    [consumerName],
  );
  return rows.map((r) => JSON.parse(r.payload));
}
