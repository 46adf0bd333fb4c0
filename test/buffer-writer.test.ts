// writeBatch's ordering hook, against a real Postgres: capture sends a batch's
// rows while the previous batch is still committing (src/capture/session.ts),
// so the rows and the position of a write must stay invisible until the hook
// lets it commit, and a rejected hook must leave nothing behind.
import { beforeAll, describe, expect, it } from 'vitest';
import { readPosition, writeBatch, type LogRow } from '../src/buffer/writer.js';
import type { Pool } from '../src/db/pool.js';
import { messagePayload } from './helpers/buffer.js';
import { useBufferDb } from './helpers/pg.js';

const db = useBufferDb('buffer_writer');
let pool: Pool;
let seq = 0;

beforeAll(() => {
  pool = db.pool;
});

function rows(fromLsn: number, n: number): LogRow[] {
  return Array.from({ length: n }, (_, i) => ({
    commitLsn: BigInt(fromLsn + i),
    commitIdx: 0,
    schema: 'public',
    table: 'orders',
    action: 'insert',
    groupKey: `g${i % 7}`,
    committedAt: '2026-11-23T20:15:01.123456Z',
    payload: messagePayload(fromLsn + i, 0, { id: i, note: 'tab\there, back\\slash' }),
    wake: [],
  }));
}

/** A stored source of its own; returns its log number. */
async function newSource(name: string): Promise<number> {
  const { rows: r } = await pool.query<{ log_no: number }>(
    `INSERT INTO sluice.sources (name, config) VALUES ($1, '{}') RETURNING log_no`, [name]);
  return r[0].log_no;
}

const stored = async (sourceNo: number) =>
  (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.log WHERE source_no = $1', [sourceNo])).rows[0].n;

function gate() {
  let open!: () => void;
  let fail!: (err: Error) => void;
  const p = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  // Rejected before the writer awaits it (its rows are still on the way).
  p.catch(() => {});
  return { wait: () => p, open, fail };
}

describe('writeBatch with beforeCommit', () => {
  // 300 rows go by COPY (its own transaction), 20 by one INSERT statement.
  for (const size of [300, 20]) {
    it(`keeps ${size} rows and the position invisible until it may commit, then commits both`, async () => {
      const source = `w${++seq}`;
      const sourceNo = await newSource(source);
      const g = gate();
      const write = writeBatch(pool, { sourceName: source, sourceNo, rows: rows( 1000, size), checkpoint: 5000n, lastCommitAt: null, beforeCommit: g.wait });
      await new Promise((r) => setTimeout(r, 300));
      expect(await stored(sourceNo)).toBe(0);
      expect(await readPosition(pool, source)).toBeNull();
      g.open();
      await write;
      expect(await stored(sourceNo)).toBe(size);
      expect(await readPosition(pool, source)).toBe(5000n);
      const { rows: back } = await pool.query<{ payload: string }>('SELECT payload FROM sluice.log WHERE source_no = $1 AND commit_lsn = 1000', [sourceNo]);
      expect(JSON.parse(back[0].payload).record.note).toBe('tab\there, back\\slash');
    });

    it(`rolls ${size} rows and the position back when the previous write failed`, async () => {
      const source = `w${++seq}`;
      const sourceNo = await newSource(source);
      const g = gate();
      const write = writeBatch(pool, { sourceName: source, sourceNo, rows: rows( 1000, size), checkpoint: 5000n, lastCommitAt: null, beforeCommit: g.wait });
      g.fail(new Error('the previous write failed'));
      await expect(write).rejects.toThrow('the previous write failed');
      expect(await stored(sourceNo)).toBe(0);
      expect(await readPosition(pool, source)).toBeNull();
    });
  }

  it('two writes sent together commit in order: the later one waits for the earlier', async () => {
    const source = `w${++seq}`;
    const sourceNo = await newSource(source);
    const g = gate();
    const first = (async () => {
      await g.wait();
      await writeBatch(pool, { sourceName: source, sourceNo, rows: rows( 1000, 300), checkpoint: 2000n, lastCommitAt: null });
    })();
    const second = writeBatch(pool, { sourceName: source, sourceNo, rows: rows( 3000, 300), checkpoint: 4000n, lastCommitAt: null, beforeCommit: () => first });
    await new Promise((r) => setTimeout(r, 300));
    // The later batch's rows were sent, but nothing of it shows before the earlier commits.
    expect(await stored(sourceNo)).toBe(0);
    g.open();
    await Promise.all([first, second]);
    expect(await stored(sourceNo)).toBe(600);
    expect(await readPosition(pool, source)).toBe(4000n);
  });
});

describe('writeBatch stores every value exactly', () => {
  // 300 rows go by binary COPY, 20 by INSERT: both must read back the same.
  for (const size of [300, 20]) {
    it(`${size} rows: unicode, COPY's special characters, a NULL group, times, a 3 MB payload`, async () => {
      const source = `x${++seq}`;
      const sourceNo = await newSource(source);
      const big = 'é€😀'.repeat(300_000) + '\\\t\n\r';
      const times = ['2026-11-23T20:15:01.123456Z', '1999-12-31T23:59:59.000001Z', '2000-01-01T00:00:00.000000Z', '2026-12-07T01:02:03Z'];
      const batch: LogRow[] = Array.from({ length: size }, (_, i) => ({
        commitLsn: 9_000_000_000n + BigInt(i),
        commitIdx: i % 3,
        schema: i % 2 ? 'Sché\tma' : 'public',
        table: 'ta\\ble\n',
        action: 'update',
        groupKey: i % 5 === 0 ? null : `grp:["${i}\\"\t"]`,
        committedAt: times[i % times.length],
        payload: JSON.stringify({ i, note: i === 7 ? big : `line\nbreak\ttab\\ ñ ${i} 😀` }),
        wake: [],
      }));
      await writeBatch(pool, { sourceName: source, sourceNo, rows: batch, checkpoint: 1n, lastCommitAt: null });
      const { rows: back } = await pool.query(
        `SELECT commit_lsn::text, commit_idx, schema_name, table_name, action, group_key,
                to_char(committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, payload
           FROM sluice.log WHERE source_no = $1 ORDER BY commit_lsn`, [sourceNo]);
      expect(back.length).toBe(size);
      for (let i = 0; i < size; i++) {
        const r = batch[i];
        expect(back[i]).toEqual({
          commit_lsn: r.commitLsn.toString(), commit_idx: r.commitIdx, schema_name: r.schema, table_name: r.table,
          action: r.action, group_key: r.groupKey, at: r.committedAt.replace(/:03Z$/, ':03.000000Z'), payload: r.payload,
        });
      }
    });
  }
});
