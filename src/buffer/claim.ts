// Claim, ack, nack and visibility changes on sluice.messages, for any consumer
// (pull receives, and the webhook dispatcher). The claim itself is the plpgsql
// function sluice.claim_messages (migrations/0002_pull.sql, with admission from
// the log since 0010_log.sql): one round trip that
// locks the consumer, dead-letters exhausted messages, respects max_ack_pending
// and per-group order, and stamps each delivery with a fresh token.
import type { Pool } from '../db/pool.js';
import { plainArray } from '../db/arrays.js';
import { walkedParams, walkedPayloads, type Walked } from '../pipeline/filter/walk.js';
import { ackKeyArrays, encodeAckId } from './ack-id.js';

export interface ClaimOptions {
  consumerId: string;
  /** Most messages to hand out (≥ 1). */
  limit: number;
  /** How long the claimed messages stay invisible to other claims. */
  visibilityMs: number;
  /** In-flight messages (including these) never exceed this; undefined = unlimited. */
  maxAckPending?: number;
  /** Deliveries after which an unacked message becomes a dead letter when its visibility ends. */
  maxDeliver?: number;
  /** Dead letters keep blocking later messages of their group. */
  deadLetterBlocksGroup: boolean;
  /** A consumer with a where filter: the keys its walk of the log selected (src/pipeline/filter/walk.ts). */
  walked?: Walked | null;
}

export interface ClaimedMessage {
  ackId: string;
  /** int64 as decimal text. */
  commitLsn: string;
  commitIdx: number;
  deliveryToken: number;
  /** Deliveries so far, this one included. */
  deliverCount: number;
  groupKey: string | null;
  /** Stored JSON text, without metadata.consumer (see withConsumer). */
  payload: string;
}

export interface ClaimResult {
  /** In (commit_lsn, commit_idx) order. */
  messages: ClaimedMessage[];
  /** Messages this claim made dead letters: delivered max_deliver times without an ack. */
  deadLettered?: SpentMessage[];
  /**
   * When nothing was claimed: the earliest moment an in-flight message becomes
   * visible again (a re-check before then can only succeed through new work,
   * an ack or a nack). Null when messages were claimed or nothing is in flight.
   */
  nextVisibleAt: Date | null;
}

/** A message dead-lettered for max_deliver by a claim. */
export interface SpentMessage {
  commitLsn: string;
  commitIdx: number;
  groupKey: string | null;
  deliverCount: number;
}

interface ClaimRow {
  commit_lsn: string | null;
  commit_idx: number;
  /** Null, with no payload, on the rows of messages the claim dead-lettered (migrations/0025). */
  delivery_token: number | null;
  deliver_count: number;
  group_key: string | null;
  /** Null also on a filtered claim's rows of changes its walk read (migrations/0027). */
  payload: string | null;
  retry_at: Date | null;
}

const COLUMNS = 'commit_lsn, commit_idx, delivery_token, deliver_count, group_key, payload, retry_at';
const CLAIM = `SELECT ${COLUMNS} FROM sluice.claim_messages($1, $2, $3, $4, $5, $6)`;
const CLAIM_WALKED = `SELECT ${COLUMNS}
  FROM sluice.claim_messages_walked($1, $2, $3, $4, $5, $6, $7::bigint, $8, $9::bigint, $10, $11::bigint[], $12::int[], $13::text[], $14::text[])`;
// With max_deliver: the same claims, reporting what they dead-letter (migrations/0025). Only then:
// the wrapper copies every claimed row once more.
const CLAIM_REPORTING = `SELECT ${COLUMNS} FROM sluice.claim_messages_reporting($1, $2, $3, $4, $5, $6)`;
const CLAIM_WALKED_REPORTING = `SELECT ${COLUMNS}
  FROM sluice.claim_messages_walked_reporting($1, $2, $3, $4, $5, $6, $7::bigint, $8, $9::bigint, $10, $11::bigint[], $12::int[], $13::text[], $14::text[])`;

// Ack needs no lock: it only takes messages out of flight, which can't break
// max_ack_pending or group order. A concurrent claim that re-stamps the row
// first makes the token comparison fail, as it should. The change stays in
// the log; only the consumer's row goes. sluice.delete_messages (migrations/
// 0013_claim_plans.sql) finds the rows by primary key whatever the table's
// statistics say.
// With each acked change's age (commit to now, seconds), for /metrics (migrations/0024_ack_ages.sql).
const ACK = `SELECT sluice.ack_messages($1, $2::bigint[], $3::int[], $4::int[]) AS ages`;
// Rows the ack did not delete may be marked replay: their delivery ended, and
// sluice.end_replays (migrations/0010_log.sql) decides, under the claim lock,
// whether they are taken in again from the log or wait at their place.
const END_REPLAYS = `SELECT sluice.end_replays($1, $2::bigint[], $3::int[], $4::int[]) AS n`;

// Under the claim lock (see migrations/0002_pull.sql); wakes long-pollers everywhere.
const NACK = `SELECT sluice.nack_messages($1, $2::bigint[], $3::int[], $4::int[]) AS n`;

const MODIFY_VISIBILITY = `SELECT sluice.modify_visibility($1, $2::bigint[], $3::int[], $4::int[], $5) AS n`;

export async function claim(pool: Pool, opts: ClaimOptions): Promise<ClaimResult> {
  // Named: parsed once per connection (claim and ack are the hot path).
  const values = [
    opts.consumerId,
    opts.limit,
    Math.round(opts.visibilityMs),
    opts.maxAckPending ?? null,
    opts.maxDeliver ?? null,
    opts.deadLetterBlocksGroup,
  ];
  const reporting = opts.maxDeliver !== undefined && opts.maxDeliver !== null;
  const { rows } = await pool.query<ClaimRow>(
    opts.walked
      ? reporting
        ? { name: 'sluice_claim_walked_reporting', text: CLAIM_WALKED_REPORTING, values: [...values, ...walkedParams(opts.walked)] }
        : { name: 'sluice_claim_walked', text: CLAIM_WALKED, values: [...values, ...walkedParams(opts.walked)] }
      : reporting
        ? { name: 'sluice_claim_reporting', text: CLAIM_REPORTING, values }
        : { name: 'sluice_claim', text: CLAIM, values },
  );
  // Dead-lettered rows come first, then the claimed ones, or the one row
  // (no commit_lsn) that says nothing was claimed.
  let deadLettered: SpentMessage[] | undefined;
  let first = 0;
  // (A claimed row always has its delivery token; one of a filtered claim may
  // come without its payload, which the walk has: filled in below.)
  while (first < rows.length && rows[first].commit_lsn !== null && rows[first].delivery_token === null) {
    const r = rows[first++];
    (deadLettered ??= []).push({ commitLsn: r.commit_lsn!, commitIdx: r.commit_idx, groupKey: r.group_key, deliverCount: r.deliver_count });
  }
  if (rows.length === first + 1 && rows[first].commit_lsn === null) {
    return { messages: [], nextVisibleAt: rows[first].retry_at, ...(deadLettered && { deadLettered }) };
  }
  const messages = new Array<ClaimedMessage>(rows.length - first);
  const walked = opts.walked ? walkedPayloads(opts.walked) : null;
  for (let i = first; i < rows.length; i++) {
    const r = rows[i];
    const lsn = r.commit_lsn as string;
    messages[i - first] = {
      ackId: encodeAckId(lsn, r.commit_idx, r.delivery_token!),
      commitLsn: lsn,
      commitIdx: r.commit_idx,
      deliveryToken: r.delivery_token!,
      deliverCount: r.deliver_count,
      groupKey: r.group_key,
      payload: r.payload ?? walked!(lsn, r.commit_idx),
    };
  }
  return { messages, nextVisibleAt: null, ...(deadLettered && { deadLettered }) };
}

/** How many of the ack ids applied, and how many were ignored (unknown, stale, malformed, duplicate). */
export interface AckOutcome {
  applied: number;
  ignored: number;
}

/** Done with these deliveries: the consumer's rows of them are deleted (the changes stay in the log). */
export async function ack(pool: Pool, consumerId: string, ackIds: readonly string[]): Promise<AckOutcome> {
  const { applied, ignored } = await ackWithAges(pool, consumerId, ackIds);
  return { applied, ignored };
}

/** ack(), with each acked change's age (its commit to the ack, seconds; replays' rows left out), for /metrics. */
export async function ackWithAges(pool: Pool, consumerId: string, ackIds: readonly string[]): Promise<AckOutcome & { ages: number[] }> {
  const k = ackKeyArrays(ackIds);
  if (k.lsns.length === 0) return { applied: 0, ignored: ackIds.length, ages: [] };
  const keys = [plainArray(k.lsns), plainArray(k.idxs), plainArray(k.tokens)];
  const res = await pool.query<{ ages: number[] }>({ name: 'sluice_ack', text: ACK, values: [consumerId, ...keys] });
  const ages = res.rows[0].ages;
  let applied = ages.length;
  if (applied < k.lsns.length) {
    const { rows } = await pool.query<{ n: number }>(END_REPLAYS, [consumerId, ...keys]);
    applied += rows[0].n;
  }
  return { applied, ignored: ackIds.length - applied, ages };
}

/** Give these deliveries back: visible to the next claim at once. */
export async function nack(pool: Pool, consumerId: string, ackIds: readonly string[]): Promise<AckOutcome> {
  const k = ackKeyArrays(ackIds);
  if (k.lsns.length === 0) return { applied: 0, ignored: ackIds.length };
  const { rows } = await pool.query<{ n: number }>(NACK, [consumerId, k.lsns, k.idxs, k.tokens]);
  const applied = rows[0].n;
  return { applied, ignored: ackIds.length - applied };
}

/** Visibility of in-flight deliveries set to now + ms (0 behaves as a nack, without the wake-up). */
export async function modifyVisibility(
  pool: Pool,
  consumerId: string,
  ackIds: readonly string[],
  ms: number,
): Promise<AckOutcome> {
  const k = ackKeyArrays(ackIds);
  if (k.lsns.length === 0) return { applied: 0, ignored: ackIds.length };
  const { rows } = await pool.query<{ n: number }>(MODIFY_VISIBILITY, [
    consumerId,
    k.lsns,
    k.idxs,
    k.tokens,
    Math.round(ms),
  ]);
  const applied = rows[0].n;
  return { applied, ignored: ackIds.length - applied };
}

// Refused by the consumer's transform (migrations/0017_transform_dead_letters.sql).
const DEAD_LETTER = `SELECT sluice.dead_letter_deliveries($1, $2::bigint[], $3::int[], $4::int[], $5::text[]) AS n`;
const END_REPLAYS_OF = `SELECT sluice.end_replays($1, $2::bigint[], $3::int[], $4::int[]) AS n`;

/** These just-claimed deliveries become dead letters, each with its reason (their transform refused them). */
export async function deadLetterDeliveries(
  pool: Pool,
  consumerId: string,
  refused: ReadonlyArray<{ message: ClaimedMessage; error: string }>,
): Promise<void> {
  if (refused.length === 0) return;
  const lsns = refused.map((r) => r.message.commitLsn);
  const idxs = refused.map((r) => r.message.commitIdx);
  const tokens = refused.map((r) => r.message.deliveryToken);
  const { rows } = await pool.query<{ n: number }>(DEAD_LETTER, [consumerId, lsns, idxs, tokens, refused.map((r) => r.error)]);
  // Rows a rewind marked for replay were skipped: their delivery ends here.
  if (rows[0].n < refused.length) await pool.query(END_REPLAYS_OF, [consumerId, lsns, idxs, tokens]);
}
