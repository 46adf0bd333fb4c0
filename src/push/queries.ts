// The webhook dispatcher's SQL on sluice.webhook_batches (one row per batch
// out, migrations/0005_webhook_batches.sql) and sluice.messages: claim batches,
// then record an attempt's outcome in the same statement that acks,
// reschedules, dead-letters or holds the batch (one round trip each). Outcome
// statements touch a batch only while it still carries the token of this
// delivery, so a process whose lease ran out (and whose batch another process
// took over) changes nothing; except acks, which go by batch id: a 2xx for the
// batch means the endpoint has it, whoever sent it.
import pg from 'pg';
import { plainArray } from '../db/arrays.js';
import { types, type Pool } from '../db/pool.js';
import { walkedParams, walkedPayloadMap, type Walked } from '../pipeline/filter/walk.js';

export interface ClaimedBatch {
  batchId: string;
  /** 1 for the first attempt; counts every claim of the batch. */
  attempt: number;
  firstAttemptAt: Date;
  token: number;
  /** Parallel arrays, in commit order. int8 positions as decimal text. */
  lsns: string[];
  idxs: number[];
  groups: Array<string | null>;
  payloads: string[];
}

export interface ClaimOptions {
  consumerId: string;
  batches: number;
  batchSize: number;
  leaseMs: number;
  deadLetterBlocksGroup: boolean;
  /** Form new batches (false: only batches due again). */
  fresh: boolean;
  /** A consumer with a where filter: the keys its walk of the log selected (src/pipeline/filter/walk.ts). */
  walked?: Walked | null;
  /**
   * Return before new batches' payloads are read (see `loaded`), so the
   * next claim need not wait for them. Otherwise claimBatches reads them first.
   */
  deferPayloads?: boolean;
}

export interface Claimed {
  batches: ClaimedBatch[];
  /** When a lease or backoff ends next; only when nothing was claimed. */
  nextDueAt: Date | null;
  /**
   * Settles once every batch's payloads are in place. Until then a new
   * batch holds its keys only; a change no longer in the log (not expected:
   * retention keeps what is unacked) leaves its batch, as a claim left it
   * out before. Rejects when they could not be read.
   */
  loaded: Promise<void>;
}

interface ClaimRow {
  batch_id: string | null;
  attempt: number;
  /** timestamptz as Postgres writes it: see CLAIM_TYPES. */
  first_attempt_at: string;
  delivery_token: number;
  commit_lsn: string;
  commit_idx: number;
  group_key: string | null;
  /** Null on a filtered claim's rows of changes its walk read (migrations/0027, 0031). */
  payload: string | null;
  next_due_at: string | null;
}

// Every row of a claimed batch repeats its first_attempt_at, which
// node-postgres would parse into a Date row by row: ~1 µs a message, 4.5% of
// the gateway's CPU in a batch-100 drain (--cpu-prof). The claim's
// timestamps come back as text and are parsed once a batch.
const TIMESTAMPTZ = 1184;
const parseTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ, 'text') as (text: string) => Date;
const CLAIM_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    return oid === TIMESTAMPTZ ? (v: string) => v : types.getTypeParser(oid, format);
  },
};

const CLAIM = `SELECT batch_id, attempt, first_attempt_at, delivery_token, commit_lsn, commit_idx, group_key, payload, next_due_at
  FROM sluice.claim_webhook_batches($1, $2, $3, $4, $5, $6)`;
const CLAIM_WALKED = `SELECT batch_id, attempt, first_attempt_at, delivery_token, commit_lsn, commit_idx, group_key, payload, next_due_at
  FROM sluice.claim_webhook_batches_walked($1, $2, $3, $4, $5, $6, $7::bigint, $8, $9::bigint, $10, $11::bigint[], $12::int[], $13::text[], $14::text[])`;

// A new batch's payloads, read after its claim (migrations/0035): the claim
// holds the consumer's lock, this does not. One index probe of the log a key;
// a row per key, in the keys' order (null: not in the log), as arrays, not
// objects: one more row per message for the gateway to parse.
const BATCH_PAYLOADS = `SELECT l.payload
  FROM unnest($2::bigint[], $3::int[]) WITH ORDINALITY AS k(lsn, idx, i)
  LEFT JOIN LATERAL (
    SELECT l.payload FROM sluice.log l
    WHERE l.source_no = (SELECT r.source_no FROM sluice.consumer_route($1) r)
      AND l.commit_lsn = k.lsn AND l.commit_idx = k.idx
    OFFSET 0) l ON true
  ORDER BY k.i`;

const LOADED = Promise.resolve();

/** Batches in claim order. */
export async function claimBatches(pool: Pool, o: ClaimOptions): Promise<Claimed> {
  // Named: parsed and planned once per connection (claim and ack are the hot path).
  const values = [o.consumerId, o.batches, o.batchSize, Math.round(o.leaseMs), o.deadLetterBlocksGroup, o.fresh];
  const { rows } = await pool.query<ClaimRow>(
    o.walked
      ? { name: 'sluice_webhook_claim_walked', text: CLAIM_WALKED, values: [...values, ...walkedParams(o.walked)], types: CLAIM_TYPES }
      : { name: 'sluice_webhook_claim', text: CLAIM, values, types: CLAIM_TYPES },
  );
  if (rows.length === 0 || rows[0].batch_id === null) {
    const due = rows[0]?.next_due_at;
    return { batches: [], nextDueAt: due ? parseTimestamptz(due) : null, loaded: LOADED };
  }
  const batches: ClaimedBatch[] = [];
  let current: ClaimedBatch | undefined;
  const walked = o.walked ? walkedPayloadMap(o.walked) : null;
  const missing: Array<{ batch: ClaimedBatch; at: number }> = [];
  for (const r of rows) {
    if (current?.batchId !== r.batch_id) {
      current = { batchId: r.batch_id!, attempt: r.attempt, firstAttemptAt: parseTimestamptz(r.first_attempt_at), token: r.delivery_token, lsns: [], idxs: [], groups: [], payloads: [] };
      batches.push(current);
    }
    current.lsns.push(r.commit_lsn);
    current.idxs.push(r.commit_idx);
    current.groups.push(r.group_key);
    const payload = r.payload ?? walked?.get(r.commit_lsn + ':' + r.commit_idx);
    if (payload === undefined) missing.push({ batch: current, at: current.payloads.length });
    current.payloads.push(payload ?? '');
  }
  if (missing.length === 0) return { batches, nextDueAt: null, loaded: LOADED };
  const loaded = loadPayloads(pool, o.consumerId, missing);
  if (!o.deferPayloads) await loaded;
  // Awaited by each batch's delivery; a failure is theirs to report.
  else loaded.catch(() => {});
  return { batches, nextDueAt: null, loaded };
}

async function loadPayloads(pool: Pool, consumerId: string, missing: Array<{ batch: ClaimedBatch; at: number }>): Promise<void> {
  const { rows } = await pool.query<[string | null]>({
    name: 'sluice_webhook_batch_payloads',
    text: BATCH_PAYLOADS,
    values: [consumerId, plainArray(missing.map((m) => m.batch.lsns[m.at])), plainArray(missing.map((m) => m.batch.idxs[m.at]))],
    rowMode: 'array',
  });
  if (rows.length !== missing.length) throw new Error(`${rows.length} payloads came back for ${missing.length} keys`);
  const gone = new Map<ClaimedBatch, Set<number>>();
  missing.forEach((m, j) => {
    const payload = rows[j][0];
    if (payload !== null) {
      m.batch.payloads[m.at] = payload;
      return;
    }
    let at = gone.get(m.batch);
    if (!at) gone.set(m.batch, (at = new Set()));
    at.add(m.at);
  });
  for (const [b, at] of gone) {
    const keep = <T>(xs: T[]) => xs.filter((_, i) => !at.has(i));
    b.lsns = keep(b.lsns);
    b.idxs = keep(b.idxs);
    b.groups = keep(b.groups);
    b.payloads = keep(b.payloads);
  }
}

/** The part of an attempt record that is not the batch itself. */
export interface AttemptFacts {
  attempt: number;
  startedAt: Date;
  durationMs: number;
  status: number | null;
  error: string | null;
  excerpt: string | null;
}

export interface Delivered {
  batch: ClaimedBatch;
  facts: AttemptFacts;
}

// Health's last_success_at is refreshed at most once a second: under load every
// ack would otherwise rewrite (and lock) the same row.
const ACK_MANY = `WITH batches AS (
    DELETE FROM sluice.webhook_batches b WHERE b.consumer_id = $1 AND b.batch_id = ANY($5::uuid[])
    RETURNING b.batch_id
  ), keys AS (
    SELECT coalesce(array_agg(k.lsn ORDER BY k.ord), '{}') AS lsns, coalesce(array_agg(k.idx ORDER BY k.ord), '{}') AS idxs
    FROM unnest($2::bigint[], $3::int[], $4::uuid[]) WITH ORDINALITY AS k(lsn, idx, batch, ord)
    WHERE k.batch IN (SELECT batch_id FROM batches)
  ), acked AS (
    -- By primary key whatever the statistics (migrations/0013_claim_plans.sql):
    -- as a join, this was measured at 375 ms per ack when they were off.
    SELECT sluice.delete_messages($1, keys.lsns, keys.idxs, NULL) AS n FROM keys
  ), logged AS (
    INSERT INTO sluice.webhook_attempts
      (consumer_id, batch_id, attempt, started_at, duration_ms, status, outcome, response_excerpt, message_count, instance_id)
    SELECT $1, a.batch, a.attempt, a.started, a.duration, a.status, 'delivered', a.excerpt, a.n, $12
    FROM unnest($5::uuid[], $6::int[], $7::timestamptz[], $8::int[], $9::int[], $10::text[], $11::int[])
      AS a(batch, attempt, started, duration, status, excerpt, n)
  ), healthy AS (
    UPDATE sluice.webhook_health h SET last_success_at = now(), consecutive_failures = 0, first_failure_at = NULL
    WHERE h.consumer_id = $1
      AND (h.consecutive_failures > 0 OR h.last_success_at IS NULL OR h.last_success_at < now() - interval '1 second')
  )
  -- An ack lost to a server crash is a redelivery (same webhook-id), which
  -- at-least-once allows: the commit need not wait for the WAL flush.
  SELECT (SELECT n FROM acked) AS n,
    set_config('synchronous_commit', 'off', true) AS async_commit`;

// Rows of the batches the ack did not delete are marked replay (a rewind
// landed while the batch was out, possibly while this ack ran): their
// delivery ended with the batch, and sluice.end_replays (migrations/
// 0010_log.sql) decides, under the claim lock and with a fresh snapshot,
// whether each is taken in again from the log or waits at its place.
const END_REPLAYS = `SELECT sluice.end_replays($1, $2::bigint[], $3::int[], NULL) AS n`;

/** Deletes the batches' rows and logs their attempts; returns how many rows went. */
export async function ackBatches(pool: Pool, consumerId: string, instanceId: string, done: readonly Delivered[]): Promise<number> {
  const lsns: string[] = [];
  const idxs: number[] = [];
  const keyBatch: string[] = [];
  for (const { batch } of done) {
    for (let i = 0; i < batch.lsns.length; i++) {
      lsns.push(batch.lsns[i]);
      idxs.push(batch.idxs[i]);
      keyBatch.push(batch.batchId);
    }
  }
  const { rows } = await pool.query<{ n: number }>({ name: 'sluice_webhook_ack', text: ACK_MANY, values: [
    consumerId,
    plainArray(lsns),
    plainArray(idxs),
    plainArray(keyBatch),
    done.map((d) => d.batch.batchId),
    done.map((d) => d.facts.attempt),
    done.map((d) => d.facts.startedAt),
    done.map((d) => d.facts.durationMs),
    done.map((d) => d.facts.status),
    done.map((d) => d.facts.excerpt),
    done.map((d) => d.batch.lsns.length),
    instanceId,
  ] });
  if (rows[0].n < lsns.length) {
    const { rows: r } = await pool.query<{ n: number }>(END_REPLAYS, [consumerId, lsns, idxs]);
    return rows[0].n + r[0].n;
  }
  return rows[0].n;
}

export type FailureOutcome = 'retry' | 'dead_letter' | 'paused';

// One statement for every failed attempt: the batch rescheduled (retry, whole
// or split by group), its messages made dead letters, or held for when the
// consumer is resumed (paused, 410); the
// attempt logged; health updated; the consumer paused (410) or disabled (failing
// for disable_after with no success) with a notification so every gateway
// reloads its registry.
const FAIL = `WITH gone AS (
    DELETE FROM sluice.webhook_batches b
    WHERE b.consumer_id = $1 AND b.batch_id = $4 AND b.delivery_token = $5
    RETURNING b.attempt, b.first_attempt_at, b.last_attempt_at
  ), parts AS (
    -- k.part: the row's batch from now on (its own, or a part of a split;
    -- src/push/split.ts). Retried: due after the delay; paused: due at once,
    -- claimed when the consumer is resumed. $21, parts sent again at once to
    -- isolate a refused group: they repeat this attempt (the claim counts it
    -- again), so the refused group's backoff and max_attempts count only its
    -- own attempts on the schedule.
    INSERT INTO sluice.webhook_batches
      (batch_id, consumer_id, delivery_token, attempt, first_attempt_at, last_attempt_at, due_at, lsns, idxs, group_keys, last_error)
    SELECT k.part, $1, $5, g.attempt - CASE WHEN $21::boolean THEN 1 ELSE 0 END, g.first_attempt_at, g.last_attempt_at,
      CASE WHEN $6::text = 'retry' THEN now() + $7::float8 * interval '1 millisecond' ELSE now() END,
      array_agg(k.lsn ORDER BY k.ord), array_agg(k.idx ORDER BY k.ord), array_agg(k.grp ORDER BY k.ord), $8
    FROM gone g, unnest($2::bigint[], $3::int[], $19::uuid[], $20::text[]) WITH ORDINALITY AS k(lsn, idx, part, grp, ord)
    WHERE $6::text <> 'dead_letter'
    GROUP BY k.part, g.attempt, g.first_attempt_at, g.last_attempt_at
    RETURNING cardinality(lsns) AS n
  ), dead AS (
    -- Dead letters are messages in state 1; a later retry through the API
    -- makes them new deliveries (a new batch, a new webhook-id).
    -- (Rows a rewind marked for replay are left to sluice.end_replays, after.)
    -- (Found by primary key, updated by ctid, as sluice.delete_messages does.)
    UPDATE sluice.messages m
    SET state = 1, deliver_count = g.attempt, last_delivered_at = g.last_attempt_at, last_error = $8
    FROM gone g
    WHERE $6::text = 'dead_letter' AND m.state = 0 AND NOT m.replay
      AND m.ctid = ANY (ARRAY(
        SELECT t.ctid FROM unnest($2::bigint[], $3::int[]) AS k(lsn, idx)
        CROSS JOIN LATERAL (
          SELECT r.ctid FROM sluice.messages r
          WHERE r.consumer_id = $1 AND r.commit_lsn = k.lsn AND r.commit_idx = k.idx AND r.state = 0 AND NOT r.replay
          OFFSET 0) t))
    RETURNING 1
  ), logged AS (
    INSERT INTO sluice.webhook_attempts
      (consumer_id, batch_id, attempt, started_at, duration_ms, status, outcome, error, response_excerpt, message_count, instance_id)
    VALUES ($1, $4, $9, $10, $11, $12, $6, $13, $14, $15, $16)
  ), health AS (
    INSERT INTO sluice.webhook_health AS h (consumer_id, last_failure_at, first_failure_at, consecutive_failures, last_error)
    VALUES ($1, now(), now(), 1, $8)
    ON CONFLICT (consumer_id) DO UPDATE SET last_failure_at = now(), first_failure_at = coalesce(h.first_failure_at, now()),
      consecutive_failures = h.consecutive_failures + 1, last_error = $8
    RETURNING h.first_failure_at
  ), paused AS (
    UPDATE sluice.consumers c SET state = 'paused', state_reason = $17, updated_at = now()
    WHERE c.id = $1 AND $6::text = 'paused' AND c.state = 'active'
    RETURNING 1
  ), disabled AS (
    UPDATE sluice.consumers c SET state = 'disabled', updated_at = now(),
      state_reason = format('every delivery failed since %s (last: %s); fix the endpoint, then resume the consumer', h.first_failure_at, $8)
    FROM health h
    WHERE c.id = $1 AND $6::text <> 'paused' AND c.state = 'active' AND h.first_failure_at <= now() - $18::float8 * interval '1 millisecond'
    RETURNING 1
  )
  SELECT ((SELECT coalesce(sum(n), 0) FROM parts) + (SELECT count(*) FROM dead))::int AS moved,
    EXISTS (SELECT 1 FROM paused) AS paused, EXISTS (SELECT 1 FROM disabled) AS disabled,
    CASE WHEN EXISTS (SELECT 1 FROM paused UNION ALL SELECT 1 FROM disabled) THEN pg_notify('sluice_config', '') END AS notified`;

export interface FailureRecord {
  outcome: FailureOutcome;
  /** For 'retry': how long until the next attempt. */
  delayMs: number;
  /** Per row (claim order), its batch id from now on: the batch's own, or a split part's. */
  parts: string[];
  /** The parts are sent again at once as the same attempt (isolating a refused group); delayMs is 0. */
  sameAttempt?: boolean;
  /** Kept on the batch, and on its messages if they become dead letters (listings show it). */
  lastError: string;
  facts: AttemptFacts;
  /** For 'paused': the consumer's state_reason. */
  pauseReason: string | null;
  disableAfterMs: number;
}

export async function recordFailure(
  pool: Pool,
  consumerId: string,
  instanceId: string,
  batch: ClaimedBatch,
  f: FailureRecord,
): Promise<{ moved: number; paused: boolean; disabled: boolean }> {
  const { rows } = await pool.query<{ moved: number; paused: boolean; disabled: boolean }>(FAIL, [
    consumerId,
    batch.lsns,
    batch.idxs,
    batch.batchId,
    batch.token,
    f.outcome,
    Math.round(f.delayMs),
    f.lastError,
    f.facts.attempt,
    f.facts.startedAt,
    f.facts.durationMs,
    f.facts.status,
    f.facts.error,
    f.facts.excerpt,
    batch.lsns.length,
    instanceId,
    f.pauseReason,
    f.disableAfterMs,
    f.parts,
    batch.groups,
    f.sameAttempt ?? false,
  ]);
  // A rewind may have marked rows of this batch: dead-lettered (no batch
  // names them now), their delivery ended; retried, they are still in a part.
  if (f.outcome === 'dead_letter') await pool.query(END_REPLAYS, [consumerId, batch.lsns, batch.idxs]);
  return rows[0];
}

const DEAD_LETTER_KEYS = `SELECT sluice.dead_letter_batch_keys($1, $2, $3, $4::bigint[], $5::int[], $6::text[]) AS left`;

/**
 * Messages of a claimed batch that its transform refused leave the batch as
 * dead letters, each with its reason (migrations/0017_transform_dead_letters.sql).
 * Returns how many the batch keeps, or -1 if this delivery no longer owns it.
 */
export async function deadLetterBatchKeys(
  pool: Pool,
  consumerId: string,
  batch: ClaimedBatch,
  refused: ReadonlyArray<{ index: number; error: string }>,
): Promise<number> {
  const lsns = refused.map((r) => batch.lsns[r.index]);
  const idxs = refused.map((r) => batch.idxs[r.index]);
  const { rows } = await pool.query<{ left: number }>(DEAD_LETTER_KEYS, [consumerId, batch.batchId, batch.token, lsns, idxs, refused.map((r) => r.error)]);
  // Rows a rewind marked for replay were skipped: no batch names them now, so their delivery ends here.
  if (rows[0].left >= 0) await pool.query(END_REPLAYS, [consumerId, lsns, idxs]);
  return rows[0].left;
}

/** Health starts as a row, so the ack statement can keep it current with a plain UPDATE. */
export async function ensureHealthRow(pool: Pool, consumerId: string): Promise<void> {
  await pool.query('INSERT INTO sluice.webhook_health (consumer_id) VALUES ($1) ON CONFLICT DO NOTHING', [consumerId]);
}
