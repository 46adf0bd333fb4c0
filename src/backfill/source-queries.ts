// What a backfill asks of the source database: a table's columns and key, a
// low watermark, a keyset chunk of rows, and the high watermark written
// through the slot. Every value is read as its text output, exactly what
// pgoutput sends for a change, so a read row encodes like a captured one.
import { quoteIdent } from '../capture/sql-ident.js';
import type { Pool } from '../db/pool.js';
import { BACKFILL_MARK_PREFIX, backfillMarkContent } from '../capture/backfill-mark.js';

type Q = { query: (sql: string, params?: unknown[]) => Promise<{ rows: any[] }> };

export interface TableShape {
  oid: number;
  /** Published columns in attribute order (as pgoutput lists them). */
  columns: { name: string; typeOid: number; type: string }[];
  primaryKey: string[];
  /** Estimated rows (pg_class.reltuples; null before the first ANALYZE). */
  estimate: number | null;
}

const SHAPE = `
SELECT c.oid::int8 AS oid, c.reltuples::float8 AS reltuples,
       coalesce((SELECT json_agg(json_build_object('name', a.attname, 'typeOid', a.atttypid::int8, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
                 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '[]') AS columns,
       coalesce((SELECT json_agg(a.attname ORDER BY k.ord)
                 FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '[]') AS pk
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`;

/** The table's shape, or null when it does not exist. */
export async function tableShape(db: Q, schema: string, table: string): Promise<TableShape | null> {
  const { rows } = await db.query(SHAPE, [schema, table]);
  if (rows.length === 0) return null;
  const r = rows[0];
  // Sluice's pools leave json as text (src/db/pool.ts); a plain client parses it.
  const json = (v: unknown) => (typeof v === 'string' ? JSON.parse(v) : v);
  r.columns = json(r.columns);
  r.pk = json(r.pk);
  return {
    oid: Number(r.oid),
    columns: (r.columns as { name: string; typeOid: number | string; type: string }[]).map((c) => ({ ...c, typeOid: Number(c.typeOid) })),
    primaryKey: r.pk as string[],
    estimate: Number(r.reltuples) >= 0 ? Math.round(Number(r.reltuples)) : null,
  };
}

/** A btree index whose first column is this one (keyset reads by it need one). */
export async function hasBtreeLeading(db: Q, tableOid: number, column: string): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_am am ON am.oid = x.relam
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = $1 AND am.amname = 'btree' AND a.attname = $2 AND i.indpred IS NULL LIMIT 1`,
    [tableOid, column],
  );
  return rows.length > 0;
}

/** Whether a value casts to the column's type, or the reason it does not (Postgres' own message). */
export async function castText(db: Q, value: string, type: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    // The type name comes from format_type (the catalog), never from the user.
    await db.query(`SELECT $1::${type}`, [value]);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

export interface LowMark {
  lsn: bigint;
  /** An xid taken just after the position: every transaction with a WAL record before it has a lower one. */
  xid: string;
  /** A snapshot taken after that xid's transaction ended. */
  snapshot: string;
}

/**
 * The low watermark: the WAL insert position, then what was running there.
 * Three statements, in this order. A transaction whose commit record lies
 * before the position had its xid before it, so below `xid`. Ending a
 * transaction that has an xid makes the next snapshot fresh (Postgres reuses
 * the last one while no such transaction ends; its xmax would hide xids given
 * out since), so the snapshot lists every such transaction still running.
 */
export async function lowMark(db: Q): Promise<LowMark> {
  const { rows } = await db.query(`SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint::text AS lsn`);
  const { rows: x } = await db.query(`SELECT pg_current_xact_id()::text AS xid`);
  const { rows: snap } = await db.query(`SELECT pg_current_snapshot()::text AS snap`);
  return { lsn: BigInt(rows[0].lsn), xid: x[0].xid, snapshot: snap[0].snap };
}

/**
 * The transactions that may hide a change of the table from a read now: older
 * than the mark's xid, running at its snapshot, still not visible to a new
 * one, and holding a lock on the table (a transaction that changed it keeps its
 * lock until after it has become visible). xids as text.
 */
export async function stillRunning(db: Q, mark: LowMark, tableOid: number): Promise<string[]> {
  const { rows } = await db.query(
    // Not pg_xact_status: the commit log says "committed" a moment before the
    // transaction leaves the running list, and until it leaves, a new snapshot
    // (the chunk's read) does not see its changes.
    `SELECT x::text AS xid FROM pg_snapshot_xip($1::pg_snapshot) x
     WHERE x < $2::xid8 AND NOT pg_visible_in_snapshot(x, pg_current_snapshot())
       AND EXISTS (SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                   WHERE a.backend_xid = xid(x) AND l.locktype = 'relation'
                     AND l.relation IN (SELECT relid FROM pg_partition_tree($3::regclass)))`,
    [mark.snapshot, mark.xid, tableOid],
  );
  return rows.map((r) => r.xid as string);
}

export interface ChunkQuery {
  schema: string;
  table: string;
  columns: { name: string; type: string }[];
  /** Keyset columns, with their types (start column first, then the primary key). */
  key: { name: string; type: string }[];
  /** Rows with key > this (text of each key column); null: from the start. */
  after: string[] | null;
  /** Only rows with startColumn >= startFrom. */
  start: { column: string; type: string; from: string } | null;
  limit: number;
}

/**
 * The next chunk: every column as text (null stays null), in keyset order.
 * Key values that are null sort last in Postgres' row comparison and would
 * never be passed; key columns of a primary key are never null, and a start
 * column's nulls are left out (documented).
 */
export async function readChunk(db: Pool, c: ChunkQuery): Promise<(string | null)[][]> {
  // Qualified by the alias: a bare name in ORDER BY would be the text output column.
  const cols = c.columns.map((col) => `t.${quoteIdent(col.name)}::text`).join(', ');
  const key = c.key.map((k) => `t.${quoteIdent(k.name)}`).join(', ');
  const where: string[] = [];
  const params: unknown[] = [];
  if (c.after) {
    const ps = c.key.map((k, i) => {
      params.push(c.after![i]);
      return `$${params.length}::${k.type}`;
    });
    where.push(`(${key}) > (${ps.join(', ')})`);
  }
  if (c.start) {
    params.push(c.start.from);
    where.push(`t.${quoteIdent(c.start.column)} >= $${params.length}::${c.start.type}`);
  }
  params.push(c.limit);
  const sql =
    `SELECT ${cols} FROM ${quoteIdent(c.schema)}.${quoteIdent(c.table)} t` +
    (where.length ? ` WHERE ${where.join(' AND ')}` : '') +
    ` ORDER BY ${key} LIMIT $${params.length}`;
  // Rows as arrays: column names of a user's table could repeat once cast.
  const res = await db.query<(string | null)[]>({ text: sql, values: params, rowMode: 'array' });
  return res.rows;
}

/** The high watermark: a transaction of its own, so it has a commit position of its own. */
export async function highMark(db: Q, backfillId: string, chunk: number): Promise<void> {
  await db.query(`SELECT pg_logical_emit_message(true, $1, $2)`, [BACKFILL_MARK_PREFIX, backfillMarkContent(backfillId, chunk)]);
}
