// When a consumer with a where filter is saved (API or config apply): each
// expression is compiled against its table's columns as the source's catalog
// has them, so an unknown column, an unsupported function or a type mismatch
// is refused then, with its position, and nothing is saved. The column types
// are stored with the consumer (sluice.consumers.filter_columns) and every
// gateway process compiles the filter with them, without reaching the source.
import pg from 'pg';
import type { ConsumerConfig } from '../../config/types.js';
import { tableColumns } from './columns.js';
import { compileWhere, FilterError } from './compile.js';

const CONNECT_TIMEOUT_MS = 5_000;

/** Per table: column name → type name. */
export type FilterColumns = Record<string, Record<string, string>>;

/** A refusal, by table: `filter.where."<table>"`. */
export interface FilterIssue {
  table: string;
  reason: string;
}

export type FilterCheck = { ok: true; columns: FilterColumns | null } | { ok: false; issues: FilterIssue[] };

/**
 * Checks the consumer's where filters against the source database at `url`
 * (one short-lived connection). No where filter: nothing to check, columns null.
 */
export async function checkWhereFilters(consumer: Pick<ConsumerConfig, 'filter'>, url: string): Promise<FilterCheck> {
  const where = consumer.filter?.where;
  if (!where || Object.keys(where).length === 0) return { ok: true, columns: null };
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: CONNECT_TIMEOUT_MS,
    application_name: 'sluice-filter-check',
  });
  // A server that drops the connection later must not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    const reason = `cannot be checked: the source database cannot be reached (${(err as Error).message}); a where filter is checked against the table's columns when it is saved`;
    return { ok: false, issues: Object.keys(where).map((table) => ({ table, reason })) };
  }
  try {
    const columns: FilterColumns = {};
    const issues: FilterIssue[] = [];
    for (const [table, expression] of Object.entries(where)) {
      const cols = await tableColumns(client, table);
      if (!cols) {
        issues.push({ table, reason: `table ${table} does not exist in the source database` });
        continue;
      }
      const issue = whereIssue(expression, cols);
      if (issue) issues.push({ table, reason: issue });
      columns[table] = cols;
    }
    return issues.length > 0 ? { ok: false, issues } : { ok: true, columns };
  } finally {
    await client.end().catch(() => {});
  }
}

/** Why `expression` is refused over these columns, or null when it compiles. */
export function whereIssue(expression: string, columns: Record<string, string>): string | null {
  try {
    compileWhere(expression, columns);
    return null;
  } catch (e) {
    if (e instanceof FilterError) return `at character ${e.position}: ${e.message}`;
    throw e;
  }
}
