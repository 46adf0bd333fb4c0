// Reading sluice.consumers for the management API, and the runtime state
// (pause/resume) that config apply leaves alone. Config writes go through
// src/config/queries.ts, the same statements `sluice config apply` uses.
import type { ConsumerState } from '../buffer/consumers.js';
import type { ConsumerConfig, ConsumerKind } from '../config/types.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { openConsumer } from '../secrets/fields.js';

type Db = Pool | PoolClient;

export interface ConsumerRow {
  id: string;
  name: string;
  config: ConsumerConfig;
  state: ConsumerState;
  state_reason: string | null;
  /** Why its messages cannot be claimed, when they cannot (sluice.consumer_faults). */
  fault_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

type Raw = ConsumerRow & { source_name: string; kind: ConsumerKind; annotations: Record<string, unknown> };

// The fault as a subquery, not a join: these reads may lock the consumer row (FOR UPDATE).
const COLUMNS = `id, name, source_name, kind, config, annotations, state, state_reason, created_at, updated_at,
  (SELECT f.reason FROM sluice.consumer_faults f WHERE f.consumer_id = sluice.consumers.id) AS fault_reason`;

// The columns win over the copy inside `config`, as config export reads them.
// Secrets are opened here (see src/config/queries.ts).
function toRow({ source_name, kind, annotations, ...row }: Raw): ConsumerRow {
  return { ...row, config: { ...openConsumer(row.name, row.config), name: row.name, source: source_name, kind, annotations } };
}

export async function listConsumers(db: Db): Promise<ConsumerRow[]> {
  return (await db.query<Raw>(`SELECT ${COLUMNS} FROM sluice.consumers ORDER BY name`)).rows.map(toRow);
}

/** One consumer; `forUpdate` holds it until the transaction ends. */
export async function getConsumer(db: Db, name: string, forUpdate = false): Promise<ConsumerRow | undefined> {
  const sql = `SELECT ${COLUMNS} FROM sluice.consumers WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`;
  const row = (await db.query<Raw>(sql, [name])).rows[0];
  return row && toRow(row);
}

/** Consumers reading from a source. */
export async function consumersOfSource(db: Db, sourceName: string): Promise<ConsumerRow[]> {
  const sql = `SELECT ${COLUMNS} FROM sluice.consumers WHERE source_name = $1 ORDER BY name`;
  return (await db.query<Raw>(sql, [sourceName])).rows.map(toRow);
}

const OUTBOX_READERS = `SELECT name FROM sluice.consumers WHERE config -> 'outbox' ? $1 ORDER BY name`;

/**
 * The refusal of deleting a source or stream that consumers still read (their
 * source_name names either), or null when none does.
 */
export async function usedBy(db: Db, what: 'Source' | 'Stream', name: string): Promise<string | null> {
  const users = (await consumersOfSource(db, name)).map((c) => c.name);
  // A source's consumer reading the stream's outbox messages (config.outbox).
  if (what === 'Stream') users.push(...(await db.query<{ name: string }>(OUTBOX_READERS, [name])).rows.map((r) => r.name));
  if (users.length === 0) return null;
  const them = users.length > 1 ? 'them' : 'it';
  return `${what} "${name}" is used by consumer${users.length > 1 ? 's' : ''} ${users.join(', ')}; delete ${them} first.`;
}

/** The names among `names` that are consumers. */
export async function listConsumerNames(db: Db, names: string[]): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM sluice.consumers WHERE name = ANY($1::text[])', [names]);
  return rows.map((r) => r.name);
}

export async function setConsumerState(db: Db, name: string, state: ConsumerState, reason: string | null): Promise<boolean> {
  const { rowCount } = await db.query(
    'UPDATE sluice.consumers SET state = $2, state_reason = $3, updated_at = now() WHERE name = $1',
    [name, state, reason],
  );
  return (rowCount ?? 0) > 0;
}
