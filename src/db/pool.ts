// Connection pools. Every pool Sluice opens comes from here, so type parsing and
// session settings are the same everywhere.
import pg from 'pg';

// int8 (20) and numeric (1700) stay strings: never rounded through a JS double.
// json (114) stays raw text: payloads are spliced, not re-serialised.
export const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700 || oid === 114) return (v: string) => v;
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export function createPool(url: string, opts: { max?: number; name?: string } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    application_name: opts.name ?? 'sluice',
    types,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client's error (server restart) must not crash the process; the
  // next checkout gets a fresh connection.
  pool.on('error', () => {});
  return pool;
}

/** Run fn in a transaction on one client. */
export async function withTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
