// CaptureSession's two write slots when the second write fails while the first
// is still committing, against a real Postgres (src/capture/session.ts). The
// first write's COMMIT is held back by a deferred trigger that sleeps; the
// second write's COPY hits a CHECK constraint meanwhile. The session must
// report the failure once, never confirm the failed batch's position, and
// settle() must not return before the first write has finished: a new session
// that read the position and cleared the tail while that COMMIT was pending
// would then store its rows a second time.
import { beforeAll, describe, expect, it } from 'vitest';
import { readPosition, type LogRow } from '../src/buffer/writer.js';
import type { ChangeDecoder } from '../src/capture/decoder.js';
import type { ReplicationEvent } from '../src/capture/replication.js';
import { CaptureSession } from '../src/capture/session.js';
import type { Pool } from '../src/db/pool.js';
import { messagePayload } from './helpers/buffer.js';
import { useBufferDb } from './helpers/pg.js';

const db = useBufferDb('capture_session_race');
let pool: Pool;

beforeAll(async () => {
  pool = db.pool;
  // Test-only faults on this database's buffer table.
  await pool.query(`
    CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;
    CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON sluice.log
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
      WHEN (NEW.payload LIKE '%"mark":"slow"%') EXECUTE FUNCTION public.slow_commit();
    ALTER TABLE sluice.log ADD CONSTRAINT no_poison CHECK (payload NOT LIKE '%"mark":"poison"%');
  `);
});

// Rows come straight from the events: this test is about the session's writes,
// not about decoding (test/decoder*.test.ts).
type FakeInsert = { tag: 'insert'; row: LogRow };
const decoder = {
  begin: () => {},
  onRelation: async () => {},
  change: (e: FakeInsert, out: LogRow[]) => out.push(e.row),
} as unknown as ChangeDecoder;

/** One transaction of `n` rows (COPY path: more than 200), one of them marked. */
function transaction(commitLsn: bigint, n: number, mark: 'slow' | 'poison'): ReplicationEvent[] {
  const rows = Array.from({ length: n }, (_, i): LogRow => ({
    commitLsn,
    commitIdx: i,
    schema: 'public',
    table: 'orders',
    action: 'insert',
    groupKey: `g${i % 5}`,
    committedAt: '2026-11-23T20:15:01.123456Z',
    payload: messagePayload(commitLsn, i, { id: i, mark: i === n - 1 ? mark : 'plain' }),
    wake: [],
  }));
  return [
    { tag: 'begin', commitLsn, commitTimeMicros: 0n, xid: 1 },
    ...rows.map((row) => ({ tag: 'insert', row }) as unknown as ReplicationEvent),
    { tag: 'commit', commitLsn, endLsn: commitLsn + 10n, commitTimeMicros: 0n },
  ];
}

const stored = async (sourceNo: number, commitLsn: bigint) =>
  (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.log WHERE source_no = $1 AND commit_lsn = $2', [sourceNo, commitLsn.toString()]))
    .rows[0].n;

describe('CaptureSession: the second write fails while the first commits', () => {
  it('reports once, confirms only the first, and settle() waits for the first to commit', async () => {
    const { rows: src } = await pool.query<{ log_no: number }>(`INSERT INTO sluice.sources (name, config) VALUES ('race', '{}') RETURNING log_no`);
    const sourceNo = src[0].log_no;
    const confirmed: bigint[] = [];
    const fatal: Error[] = [];
    let onFatal!: () => void;
    const failedOnce = new Promise<void>((resolve) => (onFatal = resolve));
    const session = new CaptureSession({
      sourceName: 'race',
      sourceNo,
      bufferPool: pool,
      decoder,
      maxBatch: 2500,
      durableLsn: 0n,
      confirm: (lsn) => confirmed.push(lsn),
      onFatal: (err) => {
        fatal.push(err);
        onFatal();
      },
    });

    for (const e of transaction(1000n, 250, 'slow')) await session.onEvent(e);
    // Let the first write start (flushes run on setImmediate), then queue the second beside it.
    await new Promise((r) => setImmediate(r));
    for (const e of transaction(2000n, 250, 'poison')) await session.onEvent(e);

    await failedOnce;
    expect(fatal[0].message).toMatch(/no_poison/);
    // The first write is still in its COMMIT (the trigger sleeps): nothing visible yet.
    expect(await stored(sourceNo, 1000n)).toBe(0);

    await session.settle();
    // settle() returned only once the first write had committed, with its position.
    expect(await stored(sourceNo, 1000n)).toBe(250);
    expect(await readPosition(pool, 'race')).toBe(1010n);
    expect(await stored(sourceNo, 2000n)).toBe(0);
    expect(confirmed).toEqual([1010n]);
    expect(fatal).toHaveLength(1);
    expect(session.durableLsn()).toBe(1010n);
    // A failed session takes no more events.
    await expect(session.onEvent({ tag: 'begin', commitLsn: 3000n, commitTimeMicros: 0n, xid: 2 })).rejects.toThrow(/no_poison/);
  });
});

describe('CaptureSession: wide rows', () => {
  it('writes a batch once its payloads reach 16M characters, whatever max_batch_changes says', async () => {
    const { rows: src } = await pool.query<{ log_no: number }>(`INSERT INTO sluice.sources (name, config) VALUES ('wide', '{}') RETURNING log_no`);
    const sourceNo = src[0].log_no;
    const written: number[] = [];
    const session = new CaptureSession({
      sourceName: 'wide',
      sourceNo,
      bufferPool: pool,
      decoder,
      maxBatch: 2500,
      durableLsn: 0n,
      confirm: () => {},
      onFatal: (err) => {
        throw err;
      },
      onWritten: (rows) => written.push(rows),
    });
    // One transaction of 7 rows of ~6M characters: a write every third row.
    const wide = 'w'.repeat(6 * 1024 * 1024);
    const events = transaction(5000n, 7, 'slow').map((e) =>
      e.tag === 'insert' ? ({ ...e, row: { ...(e as unknown as FakeInsert).row, payload: JSON.stringify({ wide }) } } as unknown as ReplicationEvent) : e,
    );
    for (const e of events) await session.onEvent(e);
    await session.drain();
    expect(written).toEqual([3, 3, 1]);
    expect(await stored(sourceNo, 5000n)).toBe(7);
  });
});
