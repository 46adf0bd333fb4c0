// GET /api/sources/:name/tables and the table part of POST /api/sources/test:
// the tables a source captures (its `tables`, and every table of its
// `schemas`), each with its replica identity and primary key, read from the
// source database's catalog over one short-lived connection (never a pool: the
// URL may be wrong). The console offers these when a consumer's tables are picked.
import pg from 'pg';
import { tableProblems } from '../capture/setup.js';
import { tableInfo, type TableInfo } from '../capture/setup-queries.js';
import type { SourceConfig } from '../config/types.js';

export interface SourceTable {
  table: string;
  exists: boolean;
  /** default (by the primary key), full, index, nothing; null when the table does not exist. */
  replica_identity: 'default' | 'full' | 'index' | 'nothing' | null;
  primary_key: string[];
}

const TIMEOUT_MS = 5_000;
const IDENTITY = { d: 'default', f: 'full', i: 'index', n: 'nothing' } as const;

export async function readSourceTables(url: string, config: Pick<SourceConfig, 'tables' | 'schemas'>): Promise<{ tables: SourceTable[]; problems: string[] }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: TIMEOUT_MS, query_timeout: TIMEOUT_MS });
  // A server that drops the connection later must not crash the process.
  client.on('error', () => {});
  await client.connect();
  let info: TableInfo[];
  try {
    info = await tableInfo(client, config.tables, config.schemas);
  } finally {
    await client.end().catch(() => {});
  }
  return {
    tables: info.map((t) => ({
      table: t.qualified,
      exists: t.exists,
      replica_identity: t.replident ? IDENTITY[t.replident] : null,
      primary_key: t.primary_key,
    })),
    problems: tableProblems(info),
  };
}
