// Forward-only migrations: migrations/NNNN_name.sql, applied in order, one
// transaction each, recorded in sluice.migrations. Concurrent instances are
// serialised by an advisory lock, so two gateways starting together apply each
// file once.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from './pool.js';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');

// Arbitrary constant: "sluice migrate" as an advisory-lock key.
const MIGRATION_LOCK_KEY = 7_346_221_001;

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

export function readMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({ id: Number(f.split('_')[0]), name: f, sql: readFileSync(path.join(dir, f), 'utf8') }));
}

/** Applies pending migrations; returns the names applied by this call. */
export async function migrate(pool: Pool, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = readMigrations(dir);
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    // The buffer's SQL uses what Postgres 14 brought (string_to_table in
    // the publish statement, src/streams/queries.ts): refuse an older server
    // before anything is created, naming it.
    const { rows: version } = await client.query<{ num: number; text: string }>(
      "SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS text",
    );
    if (version[0].num < 140000) {
      throw new Error(`the buffer database runs Postgres ${version[0].text}; Sluice needs Postgres 14 or later for its buffer (upgrade it, or point DATABASE_URL at a newer server)`);
    }
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query('CREATE SCHEMA IF NOT EXISTS sluice');
    await client.query(`CREATE TABLE IF NOT EXISTS sluice.migrations (
      id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await client.query<{ id: number }>('SELECT id FROM sluice.migrations')).rows.map((r) => r.id),
    );
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO sluice.migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`);
      }
      applied.push(m.name);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    client.release();
  }
  return applied;
}
