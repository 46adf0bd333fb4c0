// POST /api/sources/:name/test: can capture start against this database?
// One short-lived connection (never a pool: the URL may be wrong, and a test
// must not leave connections behind), four catalog reads.
import pg from 'pg';

export interface SourceCheck {
  connected: boolean;
  /** The connection error, when not connected. */
  error?: string;
  server_version?: string;
  wal_level?: string;
  /** The role can start replication: REPLICATION attribute or superuser. */
  replication_role?: boolean;
  publication_exists?: boolean;
  slot_exists?: boolean;
}

const TIMEOUT_MS = 5_000;

export async function checkSource(url: string, names: { publication: string; slot: string }): Promise<SourceCheck> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: TIMEOUT_MS, query_timeout: TIMEOUT_MS });
  // A server that drops the connection later must not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return { connected: false, error: (err as Error).message };
  }
  try {
    const { rows } = await client.query<{
      server_version: string;
      wal_level: string;
      replication_role: boolean;
      publication_exists: boolean;
      slot_exists: boolean;
    }>(
      `SELECT current_setting('server_version') AS server_version,
              current_setting('wal_level') AS wal_level,
              (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS replication_role,
              EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS publication_exists,
              EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $2 AND database = current_database()) AS slot_exists`,
      [names.publication, names.slot],
    );
    return { connected: true, ...rows[0] };
  } catch (err) {
    return { connected: true, error: (err as Error).message };
  } finally {
    await client.end().catch(() => {});
  }
}
