// Catalog reads done before capture starts (SQL with $n parameters only).
import type pg from 'pg';

type Q = Pick<pg.Pool, 'query'>;

/** The server's version: its number (140011) and as it names itself ("14.11"). */
export async function serverVersion(db: Q): Promise<{ num: number; text: string }> {
  const { rows } = await db.query<{ num: number; text: string }>(
    "SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS text",
  );
  return rows[0];
}

export async function walLevel(db: Q): Promise<string> {
  return (await db.query<{ wal_level: string }>('SHOW wal_level')).rows[0].wal_level;
}

export async function roleCanReplicate(db: Q): Promise<{ role: string; ok: boolean }> {
  const { rows } = await db.query<{ role: string; ok: boolean }>(
    `SELECT rolname AS role, (rolreplication OR rolsuper) AS ok FROM pg_roles WHERE rolname = current_user`,
  );
  return rows[0];
}

export interface TableInfo {
  qualified: string;
  exists: boolean;
  replident: 'd' | 'n' | 'f' | 'i' | null;
  has_pk: boolean;
  /** A partitioned table (its changes happen in its partitions). */
  partitioned: boolean;
  /** The primary key's columns, in key order (empty without one). */
  primary_key: string[];
}

/** One row per requested table, plus every table of the requested schemas. */
export async function tableInfo(db: Q, tables: string[], schemas: string[]): Promise<TableInfo[]> {
  const { rows } = await db.query<TableInfo>(
    `WITH wanted AS (
       SELECT t AS qualified FROM unnest($1::text[]) t
       UNION
       SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY($2::text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     )
     SELECT w.qualified, c.oid IS NOT NULL AS exists, c.relreplident::text AS replident, coalesce(c.relkind = 'p', false) AS partitioned,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
            coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                        FROM pg_index i
                        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                       WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS primary_key
       FROM wanted w
       LEFT JOIN pg_namespace n ON n.nspname = split_part(w.qualified, '.', 1)
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = substr(w.qualified, length(split_part(w.qualified, '.', 1)) + 2)
      ORDER BY 1`,
    [tables, schemas],
  );
  return rows;
}

export async function publicationInfo(
  db: Q,
  name: string,
): Promise<{ exists: boolean; allTables: boolean; viaRoot: boolean; tables: string[] }> {
  const pub = await db.query<{ puballtables: boolean; pubviaroot: boolean }>(
    'SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1',
    [name],
  );
  if (pub.rowCount === 0) return { exists: false, allTables: false, viaRoot: false, tables: [] };
  const t = await db.query<{ t: string }>(
    `SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`,
    [name],
  );
  return { exists: true, allTables: pub.rows[0].puballtables, viaRoot: pub.rows[0].pubviaroot, tables: t.rows.map((r) => r.t) };
}

export async function slotInfo(
  db: Q,
  name: string,
): Promise<{ exists: boolean; plugin?: string; database?: string; confirmed_flush_lsn?: string | null; active?: boolean }> {
  const { rows } = await db.query(
    `SELECT plugin, database, confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  return rows.length ? { exists: true, ...rows[0] } : { exists: false };
}

export async function currentDatabase(db: Q): Promise<string> {
  return (await db.query<{ d: string }>('SELECT current_database() AS d')).rows[0].d;
}

export async function createSlot(db: Q, name: string): Promise<void> {
  await db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [name]);
}

export async function slotLagBytes(db: Q, name: string): Promise<number | null> {
  const { rows } = await db.query<{ lag: string | null }>(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag
       FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  return rows.length && rows[0].lag !== null ? Number(rows[0].lag) : null;
}

/** A transactional logical message: a tiny transaction that lets a quiet slot advance. */
export async function emitHeartbeat(db: Q): Promise<void> {
  await db.query(`SELECT pg_logical_emit_message(true, 'sluice_heartbeat', now()::text)`);
}

/** Primary-key column names of a relation, in key order (empty when it has none). */
export async function primaryKeyColumns(db: Q, relationOid: number): Promise<string[]> {
  const { rows } = await db.query<{ attname: string }>(
    `SELECT a.attname FROM pg_index i
       JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indisprimary
      ORDER BY k.ord`,
    [relationOid],
  );
  return rows.map((r) => r.attname);
}

// The outbox's publish function (src/capture/outbox.ts): checks what it can
// where the application sees the error (a bad stream name or subject fails
// the application's own statement), then writes the message into the WAL
// with the transaction. Whether the stream exists is known only to the
// buffer: capture stores a message to a missing stream nowhere, and says so.
const OUTBOX_FUNCTION_SIGNATURE = 'sluice.publish(text,text,jsonb,text,text)';
export const OUTBOX_FUNCTION_SQL = `CREATE SCHEMA IF NOT EXISTS sluice;
CREATE OR REPLACE FUNCTION sluice.publish(stream text, subject text, data jsonb, key text DEFAULT NULL, idempotency_key text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
  IF stream IS NULL OR stream !~ '^[a-z0-9][a-z0-9_-]{0,62}$' OR stream = 'backfill' THEN
    RAISE EXCEPTION 'sluice.publish: % is not a stream name', quote_nullable(stream)
      USING ERRCODE = '22023', HINT = 'Stream names are 1 to 63 lowercase letters, digits, "_" and "-".';
  END IF;
  IF subject IS NULL OR length(subject) > 255 OR subject !~ '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$' THEN
    RAISE EXCEPTION 'sluice.publish: % is not a subject', quote_nullable(subject)
      USING ERRCODE = '22023', HINT = 'A subject is dot-separated tokens of A-Z, a-z, 0-9, "_" and "-", such as orders.created (at most 255 characters).';
  END IF;
  IF length(key) NOT BETWEEN 1 AND 255 OR length(idempotency_key) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION 'sluice.publish: key and idempotency_key must be NULL or 1 to 255 characters' USING ERRCODE = '22023';
  END IF;
  PERFORM pg_logical_emit_message(true, 'sluice:' || stream,
    (jsonb_build_object('subject', subject, 'data', data)
      || CASE WHEN key IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('key', key) END
      || CASE WHEN idempotency_key IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('idempotency_key', idempotency_key) END)::text);
END
$fn$;
COMMENT ON FUNCTION sluice.publish(text,text,jsonb,text,text) IS
  'Sluice outbox: publishes a message to a Sluice stream if and only if the calling transaction commits.';`;

export async function hasOutboxFunction(db: Q): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('SELECT to_regprocedure($1) IS NOT NULL AS ok', [OUTBOX_FUNCTION_SIGNATURE]);
  return rows[0].ok;
}

export async function createOutboxFunction(db: Q): Promise<void> {
  await db.query(OUTBOX_FUNCTION_SQL);
}
