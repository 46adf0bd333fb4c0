// API tokens (sluice.api_tokens, migrations/0003_api.sql). Tokens are looked
// up by the SHA-256 digest of the secret; the secret itself is never stored.
import type { Pool } from '../db/pool.js';

export interface TokenRow {
  id: string;
  name: string;
  hint: string;
  /** null: admin. */
  consumers: string[] | null;
  created_at: Date;
}

const COLUMNS = 'id, name, hint, consumers, created_at';

export async function insertToken(
  pool: Pool,
  t: { name: string; hash: Buffer; hint: string; consumers: string[] | null },
): Promise<TokenRow> {
  const { rows } = await pool.query<TokenRow>(
    `INSERT INTO sluice.api_tokens (name, token_hash, hint, consumers) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
    [t.name, t.hash, t.hint, t.consumers],
  );
  return rows[0];
}

export async function findTokenByHash(pool: Pool, hash: Buffer): Promise<TokenRow | undefined> {
  const { rows } = await pool.query<TokenRow>(`SELECT ${COLUMNS} FROM sluice.api_tokens WHERE token_hash = $1`, [hash]);
  return rows[0];
}

export async function listTokens(pool: Pool): Promise<TokenRow[]> {
  const { rows } = await pool.query<TokenRow>(`SELECT ${COLUMNS} FROM sluice.api_tokens ORDER BY created_at, id`);
  return rows;
}

/** Returns false when there was no such token. */
export async function deleteToken(pool: Pool, id: string): Promise<boolean> {
  const { rowCount } = await pool.query('DELETE FROM sluice.api_tokens WHERE id = $1', [id]);
  return (rowCount ?? 0) > 0;
}
