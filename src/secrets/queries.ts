// The SQL of `sluice secrets` and the startup check: configs read and written
// as stored (sealed values left sealed). Everything else reads configs through
// src/config/queries.ts, src/api/*.ts and src/buffer/consumers.ts, which open them.
import type { Pool, PoolClient } from '../db/pool.js';
import type { SecretField } from './sealed.js';

type Db = Pool | PoolClient;

export interface StoredConfigRow {
  resource: SecretField['resource'];
  name: string;
  config: unknown;
}

export async function selectStoredConfigs(db: Db): Promise<StoredConfigRow[]> {
  const { rows } = await db.query<StoredConfigRow>(
    `SELECT 'source' AS resource, name, config FROM sluice.sources
     UNION ALL
     SELECT 'consumer', name, config FROM sluice.consumers
     ORDER BY 1 DESC, 2`,
  );
  return rows;
}

/** Re-encrypted, not changed: updated_at (the config's last change) stays. */
export async function updateStoredConfig(db: Db, row: StoredConfigRow, config: unknown): Promise<void> {
  const table = row.resource === 'source' ? 'sluice.sources' : 'sluice.consumers';
  await db.query(`UPDATE ${table} SET config = $2::jsonb WHERE name = $1`, [row.name, JSON.stringify(config)]);
}
