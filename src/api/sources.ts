// Reading sluice.sources for the management API (with timestamps, which config
// export does not need). Writes go through src/config/queries.ts, the same
// statements `sluice config apply` uses, so both store the same shape.
import type { SourceConfig } from '../config/types.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { openSource } from '../secrets/fields.js';

type Db = Pool | PoolClient;

export interface SourceRow {
  id: string;
  name: string;
  config: SourceConfig;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, name, config, created_at, updated_at';

// Secrets are opened here (see src/config/queries.ts).
const opened = (row: SourceRow): SourceRow => ({ ...row, config: openSource(row.name, row.config) });

export async function listSources(db: Db): Promise<SourceRow[]> {
  return (await db.query<SourceRow>(`SELECT ${COLUMNS} FROM sluice.sources ORDER BY name`)).rows.map(opened);
}

/** One source; `forUpdate` holds it (no consumer attaches to it) until the transaction ends. */
export async function getSource(db: Db, name: string, forUpdate = false): Promise<SourceRow | undefined> {
  const sql = `SELECT ${COLUMNS} FROM sluice.sources WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`;
  const row = (await db.query<SourceRow>(sql, [name])).rows[0];
  return row && opened(row);
}
