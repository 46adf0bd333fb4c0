// writeBatch's ordering hook, against a real Postgres: capture sends a batch's
// rows while the previous batch is still committing (src/capture/session.ts),
// so the rows and the position of a write must stay invisible until the hook
// lets it commit, and a rejected hook must leave nothing behind.
import { beforeAll, describe, expect, it } from 'vitest';
import { readPosition, writeBatch, type BufferRow } from '../src/buffer/writer.js';
import type { Pool } from '../src/db/pool.js';
import { createConsumer, messagePayload } from './helpers/buffer.js';
import { useBufferDb } from './helpers/pg.js';

const db = useBufferDb('buffer_writer');
let pool: Pool;
let seq = 0;

beforeAll(() => {
  pool = db.pool;
});

function rows(consumerId: string, fromLsn: number, n: number): BufferRow[] {
  return Array.from({ length: n }, (_, i) => ({
    consumerId,
    commitLsn: BigInt(fromLsn + i),
    commitIdx: 0,
    groupKey: `g${i % 7}`,
    payload: messagePayload(fromLsn + i, 0, { id: i, note: 'tab\there, back\\slash' }),
  }));
}

const stored = async (consumerId: string) =>
  (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.messages WHERE consumer_id = $1', [consumerId])).rows[0].n;

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
      const consumerId = await createConsumer(pool, { name: source });
      const g = gate();
      const write = writeBatch(pool, { sourceName: source, rows: rows(consumerId, 1000, size), checkpoint: 5000n, lastCommitAt: null, beforeCommit: g.wait });
      await new Promise((r) => setTimeout(r, 300));
      expect(await stored(consumerId)).toBe(0);
      expect(await readPosition(pool, source)).toBeNull();
      g.open();
      await write;
      expect(await stored(consumerId)).toBe(size);
      expect(await readPosition(pool, source)).toBe(5000n);
      const { rows: back } = await pool.query<{ payload: string }>('SELECT payload FROM sluice.messages WHERE consumer_id = $1 AND commit_lsn = 1000', [consumerId]);
      expect(JSON.parse(back[0].payload).record.note).toBe('tab\there, back\\slash');
    });

    it(`rolls ${size} rows and the position back when the previous write failed`, async () => {
      const source = `w${++seq}`;
      const consumerId = await createConsumer(pool, { name: source });
      const g = gate();
      const write = writeBatch(pool, { sourceName: source, rows: rows(consumerId, 1000, size), checkpoint: 5000n, lastCommitAt: null, beforeCommit: g.wait });
      g.fail(new Error('the previous write failed'));
      await expect(write).rejects.toThrow('the previous write failed');
      expect(await stored(consumerId)).toBe(0);
      expect(await readPosition(pool, source)).toBeNull();
    });
  }

  it('two writes sent together commit in order: the later one waits for the earlier', async () => {
    const source = `w${++seq}`;
    const consumerId = await createConsumer(pool, { name: source });
    const g = gate();
    const first = (async () => {
      await g.wait();
      await writeBatch(pool, { sourceName: source, rows: rows(consumerId, 1000, 300), checkpoint: 2000n, lastCommitAt: null });
    })();
    const second = writeBatch(pool, { sourceName: source, rows: rows(consumerId, 3000, 300), checkpoint: 4000n, lastCommitAt: null, beforeCommit: () => first });
    await new Promise((r) => setTimeout(r, 300));
    // The later batch's rows were sent, but nothing of it shows before the earlier commits.
    expect(await stored(consumerId)).toBe(0);
    g.open();
    await Promise.all([first, second]);
    expect(await stored(consumerId)).toBe(600);
    expect(await readPosition(pool, source)).toBe(4000n);
  });
});
