// A backfill request checked against the source's catalog before anything
// starts: the tables must be the consumer's and have a primary key; a start
// column must exist and lead a btree index (keyset reads walk it), and `from`
// must cast to its type. Any issue: nothing starts (the route answers 422).
import pg from 'pg';
import { splitTable } from '../capture/sql-ident.js';
import type { ConsumerConfig } from '../config/types.js';
import type { NewBackfill } from './queries.js';
import * as src from './source-queries.js';

export const DEFAULT_CHUNK_SIZE = 5000;
/** Changes the consumer has not taken in, above which a backfill waits. */
export const DEFAULT_MAX_BACKLOG = 50_000;
const CONNECT_TIMEOUT_MS = 10_000;

export interface BackfillRequest {
  table?: string;
  start?: { column: string; from: string };
  chunk_size?: number;
  max_rows_per_second?: number;
  max_backlog?: number;
}

export type Planned = { ok: true; backfills: NewBackfill[] } | { ok: false; issues: Record<string, string[]> };

export async function planBackfills(
  consumer: { id: string; config: Pick<ConsumerConfig, 'tables' | 'filter' | 'stream'> },
  req: BackfillRequest,
  sourceUrl: string,
): Promise<Planned> {
  const { config } = consumer;
  if (config.filter?.actions && !config.filter.actions.includes('read')) {
    return {
      ok: false,
      issues: { 'filter.actions': ['leaves out "read", so the consumer would take in no backfilled row: add "read" to filter.actions first'] },
    };
  }
  if (config.stream !== undefined) return { ok: false, issues: { table: ['the consumer reads a stream: there is no table to backfill'] } };
  const tables = req.table === undefined ? config.tables : [req.table];
  if (req.table !== undefined && !config.tables.includes(req.table)) {
    return { ok: false, issues: { table: [`"${req.table}" is not one of this consumer's tables (${config.tables.join(', ')})`] } };
  }
  const client = new pg.Client({ connectionString: sourceUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, query_timeout: CONNECT_TIMEOUT_MS, application_name: 'sluice-backfill-check' });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return { ok: false, issues: { table: [`cannot be checked: the source database cannot be reached (${(err as Error).message})`] } };
  }
  try {
    const out: NewBackfill[] = [];
    const issues: Record<string, string[]> = {};
    const add = (path: string, reason: string) => (issues[path] ??= []).push(reason);
    for (const qualified of tables) {
      const { schema, table } = splitTable(qualified);
      const shape = await src.tableShape(client, schema, table);
      if (!shape) {
        add('table', `table ${qualified} does not exist in the source database`);
        continue;
      }
      if (shape.primaryKey.length === 0) {
        add('table', `table ${qualified} has no primary key: a backfill reads in key order and names each row by its key; add one`);
        continue;
      }
      let keyColumns = shape.primaryKey;
      if (req.start) {
        const col = shape.columns.find((c) => c.name === req.start!.column);
        if (!col) {
          add('start.column', `column "${req.start.column}" does not exist in ${qualified}`);
          continue;
        }
        if (!(await src.hasBtreeLeading(client, shape.oid, col.name))) {
          add('start.column', `column "${col.name}" of ${qualified} leads no btree index: CREATE INDEX ON ${qualified} ("${col.name}") first, so the backfill reads it in order without scanning the table`);
          continue;
        }
        const cast = await src.castText(client, req.start.from, col.type);
        if (!cast.ok) {
          add('start.from', `"${req.start.from}" is not a value of column "${col.name}" (${col.type}): ${cast.reason}`);
          continue;
        }
        keyColumns = [col.name, ...shape.primaryKey.filter((k) => k !== col.name)];
      }
      out.push({
        consumerId: consumer.id,
        schema,
        table,
        keyColumns,
        startColumn: req.start?.column ?? null,
        startFrom: req.start?.from ?? null,
        chunkSize: req.chunk_size ?? DEFAULT_CHUNK_SIZE,
        maxRowsPerSecond: req.max_rows_per_second ?? null,
        maxBacklog: req.max_backlog ?? DEFAULT_MAX_BACKLOG,
        estimate: shape.estimate,
      });
    }
    return Object.keys(issues).length ? { ok: false, issues } : { ok: true, backfills: out };
  } finally {
    await client.end().catch(() => {});
  }
}
