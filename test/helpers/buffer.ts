// Test (and bench) helper: consumers and messages written straight into the
// buffer, without capture, so pull and push can be tested on their own.
import { idempotencyKey } from '../../src/buffer/message.js';
import type { PullSettings } from '../../src/config/types.js';
import type { Pool } from '../../src/db/pool.js';

export interface TestConsumer {
  name: string;
  kind?: 'pull' | 'webhook';
  state?: 'active' | 'paused' | 'disabled';
  pull?: Partial<PullSettings>;
  deadLetterBlocksGroup?: boolean;
  groupBy?: boolean;
  annotations?: Record<string, unknown>;
}

const INSERT_CONSUMER = `INSERT INTO sluice.consumers (name, source_name, kind, config, state, annotations)
  VALUES ($1, 'test', $2, $3, $4, $5) RETURNING id`;

/** Creates a consumer row; returns its id. (Reload the registry afterwards.) */
export async function createConsumer(pool: Pool, c: TestConsumer): Promise<string> {
  const config = {
    name: c.name,
    source: 'test',
    kind: c.kind ?? 'pull',
    tables: ['public.orders'],
    group_by: c.groupBy ?? true,
    dead_letter_blocks_group: c.deadLetterBlocksGroup ?? false,
    annotations: c.annotations ?? {},
    ...(c.kind === 'webhook' ? {} : { pull: c.pull ?? {} }),
  };
  const { rows } = await pool.query<{ id: string }>(INSERT_CONSUMER, [
    c.name,
    c.kind ?? 'pull',
    JSON.stringify(config),
    c.state ?? 'active',
    JSON.stringify(c.annotations ?? {}),
  ]);
  return rows[0].id;
}

/** A stored payload as capture writes it: metadata last, transaction_annotations last in it, no consumer. */
export function messagePayload(lsn: number | bigint | string, idx: number, record: Record<string, unknown>): string {
  return JSON.stringify({
    record,
    changes: null,
    action: 'insert',
    metadata: {
      table_schema: 'public',
      table_name: 'orders',
      commit_timestamp: '2026-11-23T20:15:01.123456Z',
      commit_lsn: Number(lsn),
      commit_idx: idx,
      idempotency_key: idempotencyKey(String(lsn), idx),
      record_pks: [String(record.id ?? '')],
      database_name: 'app',
      transaction_annotations: null,
    },
  });
}

export interface TestMessage {
  lsn: number;
  idx?: number;
  /** Group key; null = ungrouped. Default: "g" + lsn (every message its own group). */
  group?: string | null;
  record?: Record<string, unknown>;
}

const INSERT_MESSAGES = `INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, payload)
  SELECT $1::uuid, * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[])`;
const INSERT_AND_NOTIFY = `WITH ins AS (${INSERT_MESSAGES} RETURNING 1)
  SELECT count(*)::int AS n, (SELECT count(pg_notify('sluice_messages', $1::uuid::text))) AS notified FROM ins`;

/** Inserts messages (and, like capture, notifies in the same statement unless told not to). */
export async function insertMessages(
  pool: Pool,
  consumerId: string,
  messages: TestMessage[],
  opts: { notify?: boolean } = {},
): Promise<void> {
  const lsns = messages.map((m) => String(m.lsn));
  const idxs = messages.map((m) => m.idx ?? 0);
  const groups = messages.map((m) => (m.group === undefined ? `g${m.lsn}` : m.group));
  const payloads = messages.map((m) => messagePayload(m.lsn, m.idx ?? 0, m.record ?? { id: m.lsn }));
  const sql = opts.notify === false ? INSERT_MESSAGES : INSERT_AND_NOTIFY;
  await pool.query(sql, [consumerId, lsns, idxs, groups, payloads]);
}

// Bulk setup at COPY-like speed: the payload text is built by Postgres.
const INSERT_SERIES = `INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key, payload)
  SELECT $1::uuid, $2::bigint + g, 0,
    CASE WHEN $4::int > 0 THEN 'public.orders:' || (g % $4::int) END,
    '{"record":{"id":' || g || ',"status":"paid","amount":"19.90","customer":"customer-' || (g % 977)
      || '","note":"bench payload of a typical size"},"changes":null,"action":"insert","metadata":{'
      || '"table_schema":"public","table_name":"orders","commit_timestamp":"2026-11-23T20:15:01.123456Z",'
      || '"commit_lsn":' || ($2::bigint + g) || ',"commit_idx":0,"idempotency_key":"'
      || encode(convert_to(($2::bigint + g) || ':0', 'UTF8'), 'base64') || '","record_pks":["' || g
      || '"],"database_name":"app","transaction_annotations":null}}'
  FROM generate_series(0, $3::int - 1) AS g`;

/** Inserts `count` messages at lsn startLsn…; `groups` > 0 spreads them over that many groups, 0 = ungrouped. */
export async function insertSeries(pool: Pool, consumerId: string, startLsn: number, count: number, groups: number): Promise<void> {
  await pool.query(INSERT_SERIES, [consumerId, startLsn, count, groups]);
}

export async function countMessages(pool: Pool, consumerId: string): Promise<{ total: number; dead: number; inFlight: number }> {
  const { rows } = await pool.query(
    `SELECT count(*)::int AS total, count(*) FILTER (WHERE state = 1)::int AS dead,
       count(*) FILTER (WHERE delivery_token IS NOT NULL AND visible_at > clock_timestamp())::int AS in_flight
     FROM sluice.messages WHERE consumer_id = $1`,
    [consumerId],
  );
  return { total: rows[0].total, dead: rows[0].dead, inFlight: rows[0].in_flight };
}

/** The table's content for a consumer, to assert "nothing changed". */
export async function snapshotMessages(pool: Pool, consumerId: string): Promise<unknown[]> {
  const { rows } = await pool.query(
    `SELECT commit_lsn, commit_idx, state, visible_at, deliver_count, delivery_token
     FROM sluice.messages WHERE consumer_id = $1 ORDER BY commit_lsn, commit_idx`,
    [consumerId],
  );
  return rows;
}

/** Deletes consumers whose name starts with `prefix` (bench cleanup on a caller's server). */
export async function deleteConsumers(pool: Pool, prefix: string): Promise<void> {
  await pool.query(`DELETE FROM sluice.consumers WHERE starts_with(name, $1)`, [prefix]);
}
