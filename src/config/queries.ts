// The SQL of config apply/export, and nowhere else. Configs are written as jsonb
// text parameters (JSON.stringify), never interpolated. Secrets are sealed
// (encrypted under SLUICE_SECRETS_KEY) as they are written and opened as they
// are read, here, so plans compare plain values and callers never see ciphertext.
import type { Pool, PoolClient } from '../db/pool.js';
import { openConsumer, openSource, sealConsumer, sealSource } from '../secrets/fields.js';
import type { ConsumerConfig, ConsumerKind, SourceConfig, StreamConfig } from './types.js';

export type Db = Pool | PoolClient;

// Arbitrary constant: "sluice config apply" as an advisory-lock key, so two
// applies at once plan and write one after the other.
const APPLY_LOCK_KEY = 7_346_221_002;

export interface SourceRow {
  name: string;
  config: SourceConfig;
}

export interface ConsumerRow {
  id: string;
  name: string;
  source_name: string;
  kind: ConsumerKind;
  config: ConsumerConfig;
  annotations: Record<string, unknown>;
}

/** Held until the transaction ends. */
export async function lockConfigApply(db: PoolClient): Promise<void> {
  await db.query('SELECT pg_advisory_xact_lock($1)', [APPLY_LOCK_KEY]);
}

export async function selectSources(db: Db): Promise<SourceRow[]> {
  const { rows } = await db.query<SourceRow>('SELECT name, config FROM sluice.sources ORDER BY name');
  return rows.map((row) => ({ ...row, config: openSource(row.name, row.config) }));
}

export async function selectConsumers(db: Db): Promise<ConsumerRow[]> {
  const { rows } = await db.query<ConsumerRow>(
    'SELECT id, name, source_name, kind, config, annotations FROM sluice.consumers ORDER BY name',
  );
  return rows.map((row) => ({ ...row, config: openConsumer(row.name, row.config) }));
}

export async function insertSource(db: Db, source: SourceConfig): Promise<void> {
  await db.query('INSERT INTO sluice.sources (name, config) VALUES ($1, $2::jsonb)', [source.name, JSON.stringify(sealSource(source))]);
}

export async function updateSource(db: Db, source: SourceConfig): Promise<void> {
  await db.query('UPDATE sluice.sources SET config = $2::jsonb, updated_at = now() WHERE name = $1', [
    source.name,
    JSON.stringify(sealSource(source)),
  ]);
}

/**
 * Its horizon goes with it. Its log partitions stay attached (dropping one
 * here would lock the whole log until this transaction ends) but are read by
 * nothing, since its log number is never reused; the retention job detaches
 * and drops them with their catalogue rows (src/log/retention.ts).
 */
export async function deleteSource(db: Db, name: string): Promise<void> {
  await db.query('DELETE FROM sluice.log_horizons WHERE source_no = (SELECT log_no FROM sluice.sources WHERE name = $1)', [name]);
  await db.query('DELETE FROM sluice.sources WHERE name = $1', [name]);
}

export async function selectStreams(db: Db): Promise<Array<{ name: string; config: StreamConfig }>> {
  return (await db.query('SELECT name, config FROM sluice.streams ORDER BY name')).rows;
}

export async function insertStream(db: Db, stream: StreamConfig): Promise<void> {
  await db.query('INSERT INTO sluice.streams (name, config) VALUES ($1, $2::jsonb)', [stream.name, JSON.stringify(stream)]);
}

export async function updateStream(db: Db, stream: StreamConfig): Promise<void> {
  await db.query('UPDATE sluice.streams SET config = $2::jsonb, updated_at = now() WHERE name = $1', [stream.name, JSON.stringify(stream)]);
}

/** As deleteSource: its horizon now, its partitions by the retention job. */
export async function deleteStream(db: Db, name: string): Promise<void> {
  await db.query('DELETE FROM sluice.log_horizons WHERE source_no = (SELECT log_no FROM sluice.streams WHERE name = $1)', [name]);
  await db.query('DELETE FROM sluice.stream_keys WHERE stream_no = (SELECT log_no FROM sluice.streams WHERE name = $1)', [name]);
  await db.query('DELETE FROM sluice.source_positions WHERE source_name = $1', [name]);
  await db.query('DELETE FROM sluice.streams WHERE name = $1', [name]);
}

/** Returns the new consumer's id. */
export async function insertConsumer(db: Db, c: ConsumerConfig): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO sluice.consumers (name, source_name, kind, config, annotations)
     VALUES ($1, $2, $3, $4::jsonb, $5::jsonb) RETURNING id`,
    [c.name, c.source, c.kind, JSON.stringify(sealConsumer(c)), JSON.stringify(c.annotations)],
  );
  return rows[0].id;
}

/** Keeps the consumer's id (and so its buffered messages); state is the runtime's, not config's. */
export async function updateConsumer(db: Db, c: ConsumerConfig): Promise<void> {
  await db.query(
    `UPDATE sluice.consumers
     SET source_name = $2, kind = $3, config = $4::jsonb, annotations = $5::jsonb, updated_at = now()
     WHERE name = $1`,
    [c.name, c.source, c.kind, JSON.stringify(sealConsumer(c)), JSON.stringify(c.annotations)],
  );
}

/** The column types its where filters were checked against (src/pipeline/filter/save-check.ts); null: none. */
export async function setFilterColumns(db: Db, name: string, columns: Record<string, Record<string, string>> | null): Promise<void> {
  await db.query('UPDATE sluice.consumers SET filter_columns = $2::jsonb WHERE name = $1', [name, columns && JSON.stringify(columns)]);
}

/**
 * Its buffered messages, batches out and attempt log first: nothing else would
 * ever ack or delete them (the attempt log has no foreign key, on purpose: see
 * migrations/0004_push.sql).
 */
export async function deleteConsumer(db: Db, name: string): Promise<void> {
  await db.query('DELETE FROM sluice.messages WHERE consumer_id = (SELECT id FROM sluice.consumers WHERE name = $1)', [name]);
  await db.query('DELETE FROM sluice.webhook_batches WHERE consumer_id = (SELECT id FROM sluice.consumers WHERE name = $1)', [name]);
  await db.query('DELETE FROM sluice.webhook_attempts WHERE consumer_id = (SELECT id FROM sluice.consumers WHERE name = $1)', [name]);
  await db.query('DELETE FROM sluice.consumers WHERE name = $1', [name]);
}

export async function configVersion(db: Db): Promise<number> {
  const { rows } = await db.query<{ version: string }>('SELECT version FROM sluice.config_version');
  return Number(rows[0]?.version ?? 0);
}

/** Counts the change (see migrations/0009) and wakes every gateway at commit; returns the new version. */
export async function notifyConfigChanged(db: Db): Promise<number> {
  const { rows } = await db.query<{ version: string }>(
    "UPDATE sluice.config_version SET version = version + 1 RETURNING version, pg_notify('sluice_config', '')",
  );
  return Number(rows[0].version);
}
