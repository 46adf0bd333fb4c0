// Type information for the column OIDs capture meets. Builtins come from the
// table in values.ts; anything else (enums, domains, composites, extension
// types, arrays of those) is read from pg_type once and cached for the life of
// the catalog, so encoding a change never waits on the database.
import { builtinType, type TypeInfo } from './values.js';

export type QueryFn = (sql: string, params: unknown[]) => Promise<{ rows: any[] }>;

// From the requested OIDs, follow domains to their base type and arrays to their
// element type (the encoder needs both), in one round trip. Only real arrays
// (category 'A') are followed: fixed-length types such as point or name also set
// typelem, but their values are not array literals.
const TYPES_SQL = `
WITH RECURSIVE walk(oid) AS (
  SELECT unnest($1::pg_catalog.oid[])
  UNION
  SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
  FROM walk w JOIN pg_catalog.pg_type t ON t.oid = w.oid
  WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0)
)
SELECT t.oid::int8 AS oid, t.typname AS name, t.typcategory AS category, t.typtype AS kind,
       t.typbasetype::int8 AS base, t.typelem::int8 AS elem, t.typdelim AS delim
FROM pg_catalog.pg_type t JOIN walk w ON t.oid = w.oid`;

interface Row {
  oid: string | number;
  name: string;
  category: string;
  kind: string;
  base: string | number;
  elem: string | number;
  delim: string;
}

export class TypeCatalog {
  private readonly cache = new Map<number, TypeInfo>();

  constructor(private readonly query: QueryFn) {}

  /**
   * The type to encode a column of this OID with, or undefined if not resolved
   * yet (call ensure first). A domain resolves to its base type's TypeInfo, since
   * values of a domain are printed exactly like those of its base type.
   */
  get(oid: number): TypeInfo | undefined {
    return builtinType(oid) ?? this.cache.get(oid);
  }

  /** Resolves every OID not known yet with a single query; builtins never query. */
  async ensure(oids: number[]): Promise<void> {
    const missing = [...new Set(oids)].filter((o) => this.get(o) === undefined);
    if (missing.length === 0) return;
    const { rows } = await this.query(TYPES_SQL, [missing]);
    const byOid = new Map<number, Row>();
    for (const r of rows as Row[]) byOid.set(Number(r.oid), r);
    for (const oid of byOid.keys()) this.resolve(oid, byOid, 0);
  }

  private resolve(oid: number, rows: Map<number, Row>, depth: number): TypeInfo | undefined {
    const known = this.get(oid);
    if (known !== undefined) return known;
    const r = rows.get(oid);
    // A domain chain is finite in Postgres; the depth bound only guards against bad rows.
    if (r === undefined || depth > 32) return undefined;
    let info: TypeInfo | undefined;
    if (r.kind === 'd') {
      info = this.resolve(Number(r.base), rows, depth + 1);
    } else {
      const isArray = r.category === 'A' && Number(r.elem) !== 0;
      if (isArray) this.resolve(Number(r.elem), rows, depth + 1);
      info = {
        oid,
        name: r.name,
        category: r.category,
        elemOid: isArray ? Number(r.elem) : 0,
        delim: r.delim || ',',
      };
    }
    if (info !== undefined) this.cache.set(oid, info);
    return info;
  }
}
