// A table's columns and their types, read from the source database's catalog:
// what a where filter is checked against when it is saved (unknown columns,
// type mismatches), so that it is refused then rather than failing later.
import type pg from 'pg';
import { quoteTable } from '../../capture/sql-ident.js';

// Domains are compared as their base type; an enum is "enum:<name>" (a
// filter tests it for equality with its labels); arrays keep pg_type's "_" name
// (filters only test them for NULL). Quoting: the name is a regclass input,
// so "Public"."Orders" style names work as Postgres reads them.
const COLUMNS = `SELECT a.attname AS name,
    CASE WHEN coalesce(bt.typtype, t.typtype) = 'e' THEN 'enum:' ELSE '' END
      || CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END AS type
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
  ORDER BY a.attnum`;

type Queryable = Pick<pg.ClientBase, 'query'>;

/** Column name → type name (pg_type.typname), in column order; null when the table does not exist. */
export async function tableColumns(db: Queryable, qualifiedTable: string): Promise<Record<string, string> | null> {
  const { rows } = await db.query<{ name: string; type: string }>(COLUMNS, [quoteTable(qualifiedTable)]);
  if (rows.length === 0) return null;
  return Object.fromEntries(rows.map((r) => [r.name, r.type]));
}
