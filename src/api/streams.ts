// Reading sluice.streams for the management API (with timestamps). Writes go
// through src/config/queries.ts, the statements `sluice config apply` uses.
import type { StreamConfig } from '../config/types.js';
import type { Pool, PoolClient } from '../db/pool.js';

type Db = Pool | PoolClient;

export interface StreamRow {
  id: string;
  name: string;
  config: StreamConfig;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, name, config, created_at, updated_at';

export async function listStreams(db: Db): Promise<StreamRow[]> {
  return (await db.query<StreamRow>(`SELECT ${COLUMNS} FROM sluice.streams ORDER BY name`)).rows;
}

/** One stream; `forUpdate` holds it until the transaction ends. */
export async function getStream(db: Db, name: string, forUpdate = false): Promise<StreamRow | undefined> {
  const sql = `SELECT ${COLUMNS} FROM sluice.streams WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`;
  return (await db.query<StreamRow>(sql, [name])).rows[0];
}

/** Whether a source or a stream already has this name (the two share one namespace). */
export async function logNameTaken(db: Db, name: string): Promise<'source' | 'stream' | null> {
  const { rows } = await db.query<{ kind: 'source' | 'stream' }>(
    `SELECT 'source' AS kind FROM sluice.sources WHERE name = $1 UNION ALL SELECT 'stream' FROM sluice.streams WHERE name = $1`,
    [name],
  );
  return rows[0]?.kind ?? null;
}
