// Test (and bench) helper: consumers and messages written straight into the
// buffer, without capture, so pull and push can be tested on their own.
//
// Every test consumer reads a stored source of its own, "test-<consumer name>"
// (never captured: no gateway a test starts with these helpers captures), so
// the messages a test writes for one consumer are the log rows of that source:
// no other consumer sees them, and tests may reuse positions freely. Its
// position starts before everything, so rows written at any LSN reach it.
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

const INSERT_SOURCE = `INSERT INTO sluice.sources (name, config)
  VALUES ($1, jsonb_build_object('name', $1::text, 'tables', '["public.orders"]'::jsonb))
  ON CONFLICT (name) DO NOTHING`;
const INSERT_CONSUMER = `INSERT INTO sluice.consumers (name, source_name, kind, config, state, annotations)
  VALUES ($1, $6, $2, $3, $4, $5) RETURNING id`;
const START_AT_EARLIEST = `UPDATE sluice.consumer_positions SET commit_lsn = -9223372036854775808, commit_idx = -1
  WHERE consumer_id = $1`;

/** Creates a consumer row; returns its id. (Reload the registry afterwards.) */
export async function createConsumer(pool: Pool, c: TestConsumer): Promise<string> {
  await pool.query(INSERT_SOURCE, [testSource(c.name)]);
  const config = {
    name: c.name,
    source: testSource(c.name),
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
    testSource(c.name),
  ]);
  await pool.query(START_AT_EARLIEST, [rows[0].id]);
  return rows[0].id;
}

/** The source a test consumer reads (see above). */
export function testSource(consumerName: string): string {
  return `test-${consumerName}`;
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

// The consumer's own source's log (see above).
const TARGET = `SELECT s.log_no, c.name FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name WHERE c.id = $1`;
const COVER = `SELECT sluice.log_cover($1, $2::bigint, $3::bigint, 3600)`;
const INSERT_LOG = `INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
  SELECT $1::int, k.lsn, k.idx, 'public', 'orders', 'insert', k.grp, now(), k.payload
  FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[]) AS k(lsn, idx, grp, payload)
  -- Consumers sharing a source may write the same change twice.
  ON CONFLICT DO NOTHING`;
const INSERT_AND_NOTIFY = `WITH ins AS (${INSERT_LOG} RETURNING 1)
  SELECT count(*)::int AS n, (SELECT count(pg_notify('sluice_messages', $6::uuid::text))) AS notified FROM ins`;

async function target(pool: Pool, consumerId: string): Promise<{ log_no: number; name: string }> {
  const { rows } = await pool.query<{ log_no: number; name: string }>(TARGET, [consumerId]);
  if (!rows.length) throw new Error(`no consumer ${consumerId} on a stored source`);
  return rows[0];
}

/** Inserts messages (and, like capture, notifies in the same statement unless told not to). */
export async function insertMessages(
  pool: Pool,
  consumerId: string,
  messages: TestMessage[],
  opts: { notify?: boolean } = {},
): Promise<void> {
  await insertLogRows(
    pool,
    consumerId,
    messages.map((m) => ({
      lsn: m.lsn,
      idx: m.idx ?? 0,
      group: m.group === undefined ? `g${m.lsn}` : m.group,
      payload: messagePayload(m.lsn, m.idx ?? 0, m.record ?? { id: m.lsn }),
    })),
    opts,
  );
}

/** Log rows of the consumer's source (its group key as the default group), as capture would store them. */
export async function insertLogRows(
  pool: Pool,
  consumerId: string,
  rows: { lsn: number | string; idx: number; group: string | null; payload: string }[],
  opts: { notify?: boolean } = {},
): Promise<void> {
  if (rows.length === 0) return;
  const t = await target(pool, consumerId);
  const sorted = rows.map((m) => BigInt(m.lsn)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  await pool.query(COVER, [t.log_no, sorted[0].toString(), sorted[sorted.length - 1].toString()]);
  const args = [t.log_no, rows.map((m) => String(m.lsn)), rows.map((m) => m.idx), rows.map((m) => m.group), rows.map((m) => m.payload)];
  if (opts.notify === false) await pool.query(INSERT_LOG, args);
  else await pool.query(INSERT_AND_NOTIFY, [...args, consumerId]);
}

/** A stored source for tests (no capture runs it unless a test starts one). */
export async function ensureSource(pool: Pool, name: string): Promise<void> {
  await pool.query(INSERT_SOURCE, [name]);
}

/** The consumer takes in every change its source's log holds, whatever their positions. */
export async function startAtEarliest(pool: Pool, consumerId: string): Promise<void> {
  await pool.query(START_AT_EARLIEST, [consumerId]);
}

// Bulk setup at COPY-like speed: the payload text is built by Postgres.
const INSERT_SERIES = `INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
  SELECT $1::int, $3::bigint + g, 0, 'public', 'orders', 'insert',
    CASE WHEN $5::int > 0 AND $2::text IS NOT NULL THEN 'public.orders:' || (g % $5::int) END, now(),
    '{"record":{"id":' || g || ',"status":"paid","amount":"19.90","customer":"customer-' || (g % 977)
      || '","note":"bench payload of a typical size"},"changes":null,"action":"insert","metadata":{'
      || '"table_schema":"public","table_name":"orders","commit_timestamp":"2026-11-23T20:15:01.123456Z",'
      || '"commit_lsn":' || ($3::bigint + g) || ',"commit_idx":0,"idempotency_key":"'
      || encode(convert_to(($3::bigint + g) || ':0', 'UTF8'), 'base64') || '","record_pks":["' || g
      || '"],"database_name":"app","transaction_annotations":null}}'
  FROM generate_series(0, $4::int - 1) AS g`;

/** Inserts `count` messages at lsn startLsn…; `groups` > 0 spreads them over that many groups, 0 = ungrouped. */
export async function insertSeries(pool: Pool, consumerId: string, startLsn: number, count: number, groups: number): Promise<void> {
  const t = await target(pool, consumerId);
  await pool.query(COVER, [t.log_no, String(startLsn), String(startLsn + count)]);
  await pool.query(INSERT_SERIES, [t.log_no, t.name, startLsn, count, groups]);
}

// Changes of the consumer's tables in its source's log that it has not taken in yet.
const AHEAD = `SELECT count(*)::int AS n
  FROM sluice.consumer_route($1) r
  JOIN sluice.consumer_positions p ON p.consumer_id = $1
  JOIN sluice.log l ON l.source_no = r.source_no AND (l.commit_lsn, l.commit_idx) > (p.commit_lsn, p.commit_idx)
   AND (l.schema_name || '.' || l.table_name) = ANY (r.tables)
   AND (r.actions IS NULL OR l.action = ANY (r.actions))`;

// One statement (one snapshot) each: counted apart, a claim taking rows in
// between would move them from "ahead" to sluice.messages unseen by both.
/** What the consumer still has to do: its rows (any state, or this one), plus changes not yet taken in (pending). */
export async function remainingFor(pool: Pool, consumerId: string, state?: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT (SELECT count(*)::int FROM sluice.messages WHERE consumer_id = $1 AND ($2::int IS NULL OR state = $2))
      + CASE WHEN $2::int IS NULL OR $2::int = 0 THEN (${AHEAD}) ELSE 0 END AS n`,
    [consumerId, state ?? null],
  );
  return rows[0].n;
}

export async function countMessages(pool: Pool, consumerId: string): Promise<{ total: number; dead: number; inFlight: number }> {
  const { rows } = await pool.query(
    `SELECT count(*)::int + (${AHEAD}) AS total, count(*) FILTER (WHERE state = 1)::int AS dead,
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
