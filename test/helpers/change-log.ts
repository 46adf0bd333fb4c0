// What crash tests compare Sluice's output with: a producer that commits
// transactions of inserts and updates to `items (id, v, tx, note)` and keeps,
// for each transaction, its xid and number of changes and, for each row, how
// many versions it has had (v counts a row's changes from 0: the insert is 0,
// each update adds one, so a row's messages in order carry v = 0, 1, 2, …).
// A second replication slot, read at the end, gives each transaction's true
// commit position.
import type pg from 'pg';
import { idempotencyKey } from '../../src/buffer/message.js';
import type { Pool } from '../../src/db/pool.js';
import { CONSUMER_CHANGES, sql } from './capture.js';

export const ITEMS_TABLE = `CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, tx int NOT NULL, note text NOT NULL)`;

/** One message as a consumer saw it: its position and what it says about its row. */
export interface SeenMessage {
  lsn: bigint;
  idx: number;
  key: string;
  id: number;
  v: number;
  tx: number;
}

/** A message's JSON (as stored or as delivered) reduced to what the checks compare. */
export function seen(message: any): SeenMessage {
  const m = message.metadata;
  return { lsn: BigInt(m.commit_lsn), idx: m.commit_idx, key: m.idempotency_key, id: Number(message.record.id), v: Number(message.record.v), tx: Number(message.record.tx) };
}

export class ChangeLog {
  /** Changes committed so far. */
  expected = 0;
  /** Per row id (from 1), its last version. */
  readonly versions: number[] = [0];
  /** Per transaction number (from 1): its xid and how many changes it made. */
  private readonly txs: Array<{ xid: number; changes: number }> = [{ xid: 0, changes: 0 }];

  constructor(private readonly opts: { rows: number; maxChanges: number }) {}

  get rows(): number {
    return this.versions.length - 1;
  }

  get transactions(): number {
    return this.txs.length - 1;
  }

  changesOf(tx: number): number {
    return this.txs[tx].changes;
  }

  /** The commit position of transaction `tx`, from commitPositions(); undefined for an unknown one. */
  commitLsnOf(tx: number, commitLsnOfXid: Map<number, bigint>): bigint | undefined {
    const t = this.txs[tx];
    return t && tx > 0 ? commitLsnOfXid.get(t.xid) : undefined;
  }

  /**
   * Commits one transaction of 1..maxChanges changes: new rows while there are
   * fewer than `rows` (about half the time), else an update of a range of
   * rows, a quarter of those updating the range's first half a second time (a
   * row changed twice in one transaction). Returns its number.
   */
  async transaction(client: pg.Client): Promise<number> {
    const tx = this.txs.length;
    const n = 1 + Math.floor(Math.random() * this.opts.maxChanges);
    const next = this.versions.length;
    let changes = 0;
    await client.query('BEGIN');
    if (next - 1 < n || (next - 1 < this.opts.rows && Math.random() < 0.5)) {
      const last = next + n - 1;
      await client.query(`INSERT INTO items SELECT g, 0, $3, repeat('n', 50) FROM generate_series($1::bigint, $2::bigint) g`, [next, last, tx]);
      for (let id = next; id <= last; id++) this.versions.push(0);
      changes = n;
    } else {
      const from = 1 + Math.floor(Math.random() * (next - n));
      const ranges = [[from, from + n - 1]];
      if (n > 1 && Math.random() < 0.25) ranges.push([from, from + Math.floor(n / 2) - 1]);
      for (const [a, b] of ranges) {
        await client.query(`UPDATE items SET v = v + 1, tx = $3 WHERE id BETWEEN $1 AND $2`, [a, b, tx]);
        for (let id = a; id <= b; id++) this.versions[id]++;
        changes += b - a + 1;
      }
    }
    const { rows } = await client.query<{ xid: string }>(`SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text AS xid`);
    await client.query('COMMIT');
    this.txs.push({ xid: Number(rows[0].xid), changes });
    this.expected += changes;
    return tx;
  }

  /**
   * What is wrong with one consumer's copy of the changes, each message once,
   * in commit order (empty when nothing is): a change missing or twice, a
   * message not at its transaction's commit position or with another
   * idempotency key, a transaction's commit_idx not 0..n-1, a row's versions
   * not 0, 1, 2, … in position order.
   */
  check(messages: SeenMessage[], commitLsnOfXid: Map<number, bigint>): string[] {
    const problems: string[] = [];
    if (messages.length !== this.expected) problems.push(`${messages.length} messages for ${this.expected} changes`);
    const idxsOfTx = new Map<number, number[]>();
    const byRow = new Map<number, SeenMessage[]>();
    for (const m of messages) {
      const truth = this.commitLsnOf(m.tx, commitLsnOfXid);
      if (truth === undefined) problems.push(`row ${m.id} v${m.v}: transaction ${m.tx} unknown`);
      else if (m.lsn !== truth) problems.push(`row ${m.id} v${m.v}: commit_lsn ${m.lsn}, its transaction committed at ${truth}`);
      if (m.key !== idempotencyKey(m.lsn, m.idx)) problems.push(`row ${m.id} v${m.v}: idempotency_key ${m.key} for ${m.lsn}:${m.idx}`);
      if (!idxsOfTx.has(m.tx)) idxsOfTx.set(m.tx, []);
      idxsOfTx.get(m.tx)!.push(m.idx);
      if (!byRow.has(m.id)) byRow.set(m.id, []);
      byRow.get(m.id)!.push(m);
    }
    for (const [tx, idxs] of idxsOfTx) {
      const want = Array.from({ length: this.txs[tx]?.changes ?? 0 }, (_, i) => i).join(',');
      const got = idxs.sort((a, b) => a - b).join(',');
      if (got !== want) problems.push(`transaction ${tx}: commit_idx ${got}, expected ${want}`);
    }
    for (let id = 1; id <= this.rows; id++) {
      const ordered = (byRow.get(id) ?? []).sort((a, b) => (a.lsn === b.lsn ? a.idx - b.idx : a.lsn < b.lsn ? -1 : 1));
      const got = ordered.map((m) => m.v).join(',');
      const want = Array.from({ length: this.versions[id] + 1 }, (_, v) => v).join(',');
      if (got !== want) problems.push(`row ${id}: versions in commit order ${got}, expected ${want}`);
    }
    return problems;
  }
}

/**
 * Each transaction's commit position (the LSN of its commit record, what
 * metadata.commit_lsn holds), by xid, from a pgoutput slot created before the
 * transactions: its begin messages ('B', final LSN at byte 1, xid at byte 17).
 * Consumes and drops the slot.
 */
export async function commitPositions(sourceUrl: string, slot: string, publication: string): Promise<Map<number, bigint>> {
  const { rows } = await sql(
    sourceUrl,
    `SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)
      WHERE get_byte(data, 0) = 66`,
    [slot, publication],
  );
  await sql(sourceUrl, `SELECT pg_drop_replication_slot($1)`, [slot]);
  return new Map(rows.map((r: { data: Buffer }) => [r.data.readUInt32BE(17), r.data.readBigUInt64BE(1)]));
}

/** Every message the buffer holds for each consumer (see CONSUMER_CHANGES), by consumer name, in commit order; the payload's position checked against the row's. */
export async function storedMessages(pool: Pool): Promise<Map<string, SeenMessage[]>> {
  const { rows } = await pool.query<{ name: string; lsn: string; idx: number; payload: string }>(
    `SELECT m.consumer AS name, m.commit_lsn::text AS lsn, m.commit_idx AS idx, m.payload
       FROM ${CONSUMER_CHANGES} m ORDER BY m.consumer, m.commit_lsn, m.commit_idx`,
  );
  const out = new Map<string, SeenMessage[]>();
  for (const r of rows) {
    const m = seen(JSON.parse(r.payload));
    if (m.lsn !== BigInt(r.lsn) || m.idx !== r.idx) throw new Error(`payload says ${m.lsn}:${m.idx}, its row ${r.lsn}:${r.idx}`);
    if (!out.has(r.name)) out.set(r.name, []);
    out.get(r.name)!.push(m);
  }
  return out;
}
