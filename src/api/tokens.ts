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
  /** Recorded to the minute (see touchToken); null: never used. */
  last_used_at: Date | null;
}

const COLUMNS = 'id, name, hint, consumers, created_at, last_used_at';

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

/**
 * Records a use of the token. Skips the write when the stored time is under a
 * minute old: several gateway processes may touch the same token.
 */
export async function touchToken(pool: Pool, id: string): Promise<void> {
  await pool.query(
    `UPDATE sluice.api_tokens SET last_used_at = now()
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
    [id],
  );
}

/** Returns false when there was no such token. */
export async function deleteToken(pool: Pool, id: string): Promise<boolean> {
  const { rowCount } = await pool.query('DELETE FROM sluice.api_tokens WHERE id = $1', [id]);
  return (rowCount ?? 0) > 0;
}
