// Log retention (issue 10, item 2) against a real Postgres: whole partitions
// of sluice.log dropped past max_age / max_size, never what a consumer (paused
// ones included) or capture still needs; what is held back shown in the
// source's status; low locking, measured.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ack, claim } from '../src/buffer/claim.js';
import { createPool, type Pool, type PoolClient } from '../src/db/pool.js';
import { RetentionJob } from '../src/log/retention.js';
import { logStatus } from '../src/log/status.js';
import { createConsumer, messagePayload, startAtEarliest, testSource } from './helpers/buffer.js';
import { useBufferDb } from './helpers/pg.js';

const db = useBufferDb('log_retention', { max: 12 });
let pool: Pool;
beforeAll(() => {
  pool = db.pool;
});

const DAY = 86_400_000;
const GiB = 1024 ** 3;
let seq = 0;

interface Logged {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg?: string;
}
let logged: Logged[] = [];
const log = {
  info: (obj: Record<string, unknown>, msg?: string) => logged.push({ level: 'info', obj, msg }),
  warn: (obj: Record<string, unknown>, msg?: string) => logged.push({ level: 'warn', obj, msg }),
  error: (obj: Record<string, unknown>, msg?: string) => logged.push({ level: 'error', obj, msg }),
};
afterEach(() => {
  logged = [];
});

interface TestSource {
  name: string;
  logNo: number;
  consumers: Record<string, string>;
  /** Full consumer names, by the short ones given. */
  names: Record<string, string>;
  /** Upper bounds of the partitions made so far; the next rows go at the last. */
  his: bigint[];
}

/** A stored source with consumers (all starting before everything), its retention, and capture confirmed up to `confirmed`. */
async function source(consumerNames: string[], retention: { max_age_ms: number; max_size_bytes: number }): Promise<TestSource> {
  const prefix = `r${++seq}`;
  const consumers: Record<string, string> = {};
  const names: Record<string, string> = {};
  const first = `${prefix}-${consumerNames[0]}`;
  const name = testSource(first);
  for (const c of consumerNames) {
    const id = await createConsumer(pool, { name: `${prefix}-${c}` });
    if (c !== consumerNames[0]) {
      // createConsumer gives each consumer a source of its own: this one joins the first's.
      await pool.query(`UPDATE sluice.consumers SET source_name = $2, config = jsonb_set(config, '{source}', to_jsonb($2::text)) WHERE id = $1`, [id, name]);
      await pool.query('DELETE FROM sluice.sources WHERE name = $1', [testSource(`${prefix}-${c}`)]);
      await startAtEarliest(pool, id);
    }
    consumers[c] = id;
    names[c] = `${prefix}-${c}`;
  }
  await pool.query(`UPDATE sluice.sources SET config = config || jsonb_build_object('retention', $2::jsonb) WHERE name = $1`, [name, JSON.stringify(retention)]);
  const { rows } = await pool.query<{ log_no: number }>('SELECT log_no FROM sluice.sources WHERE name = $1', [name]);
  return { name, logNo: rows[0].log_no, consumers, names, his: [] };
}

/** A new partition above the previous ones, holding `count` changes committed at `at`; returns its [lo, hi). */
async function partition(s: TestSource, count: number, at: Date): Promise<{ lo: bigint; hi: bigint }> {
  const lo = s.his.at(-1) ?? 1000n;
  const hi = BigInt((await pool.query<{ hi: string }>('SELECT sluice.log_cover($1, $2, $2, 3600) AS hi', [s.logNo, lo.toString()])).rows[0].hi);
  s.his.push(hi);
  const lsns = Array.from({ length: count }, (_, i) => (lo + BigInt(i)).toString());
  // The statistics of these inserts are reported before this returns: an open partition's count is
  // the statistics' estimate, and a report arriving after a test's ANALYZE would add to it.
  const db = await pool.connect();
  try {
    await db.query(
      `INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
       SELECT $1, k.lsn, 0, 'public', 'orders', 'insert', 'public.orders:' || k.lsn, $3, k.payload
       FROM unnest($2::bigint[], $4::text[]) AS k(lsn, payload)`,
      [s.logNo, lsns, at, lsns.map((l) => messagePayload(l, 0, { id: l }))],
    );
    await db.query('SELECT pg_stat_force_next_flush()');
  } finally {
    db.release();
  }
  return { lo, hi };
}

async function confirm(s: TestSource, lsn: bigint): Promise<void> {
  await pool.query(
    `INSERT INTO sluice.source_positions (source_name, confirmed_lsn) VALUES ($1, '0/0'::pg_lsn + $2::numeric)
     ON CONFLICT (source_name) DO UPDATE SET confirmed_lsn = EXCLUDED.confirmed_lsn`,
    [s.name, lsn.toString()],
  );
}

async function partitions(s: TestSource): Promise<Array<{ lo: bigint; hi: bigint }>> {
  const { rows } = await pool.query('SELECT lo, hi FROM sluice.log_partitions WHERE source_no = $1 ORDER BY lo', [s.logNo]);
  return rows.map((r) => ({ lo: BigInt(r.lo), hi: BigInt(r.hi) }));
}

async function horizon(s: TestSource): Promise<bigint | null> {
  const { rows } = await pool.query('SELECT dropped_lsn FROM sluice.log_horizons WHERE source_no = $1', [s.logNo]);
  return rows[0] ? BigInt(rows[0].dropped_lsn) : null;
}

async function logRows(s: TestSource): Promise<number> {
  return (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sluice.log WHERE source_no = $1', [s.logNo])).rows[0].n;
}

/** Takes every change the consumer has and acks them all, except those at `keep` LSNs (left in flight: their ack ids are returned). */
async function drain(consumerId: string, keep: bigint[] = []): Promise<string[]> {
  const kept: string[] = [];
  for (let i = 0; i < 100; i++) {
    const { messages } = await claim(pool, { consumerId, limit: 500, visibilityMs: 600_000, deadLetterBlocksGroup: false });
    if (messages.length === 0) return kept;
    const done = messages.filter((m) => !keep.includes(BigInt(m.commitLsn)));
    kept.push(...messages.filter((m) => keep.includes(BigInt(m.commitLsn))).map((m) => m.ackId));
    if (done.length) await ack(pool, consumerId, done.map((m) => m.ackId));
  }
  throw new Error('drain: still claiming after 100 rounds');
}

/** A source whose older partition expired (3 days old, max_age 1 d) and is acked by its one consumer "c"; p1 is the newest. */
async function expiredWindow() {
  const s = await source(['c'], { max_age_ms: DAY, max_size_bytes: 20 * GiB });
  const p0 = await partition(s, 10, daysAgo(3));
  const p1 = await partition(s, 10, new Date());
  await confirm(s, p1.lo + 10n);
  await drain(s.consumers.c);
  return { s, p0, p1 };
}

/** Runs `fn` while a long reader holds a snapshot of the source's log (as a long report query would). */
async function whileReading(s: TestSource, fn: (reader: PoolClient) => Promise<void>): Promise<void> {
  const reader = await pool.connect();
  try {
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await reader.query('SELECT count(*) FROM sluice.log WHERE source_no = $1', [s.logNo]);
    await fn(reader);
  } finally {
    await reader.query('COMMIT');
    reader.release();
  }
}

const job = (opts: { lockTimeoutMs?: number } = {}) => new RetentionJob(pool, { log, ...opts });
const daysAgo = (d: number) => new Date(Date.now() - d * DAY);

describe('log retention', () => {
  it('keeps what a paused consumer has not acked; drops acked changes older than max_age, sets the horizon', async () => {
    const s = await source(['fast', 'slow'], { max_age_ms: 7 * DAY, max_size_bytes: 20 * GiB });
    const p0 = await partition(s, 50, daysAgo(10));
    const p1 = await partition(s, 40, daysAgo(9));
    const p2 = await partition(s, 30, daysAgo(8));
    const p3 = await partition(s, 20, new Date());
    await confirm(s, p3.lo + 20n);
    await drain(s.consumers.fast);
    // "slow" takes everything in and acks all but one change of p1, then is paused.
    const unacked = p1.lo + 7n;
    const inFlight = await drain(s.consumers.slow, [unacked]);
    expect(inFlight).toHaveLength(1);
    await pool.query(`UPDATE sluice.consumers SET state = 'paused' WHERE id = $1`, [s.consumers.slow]);

    const before = await logStatus(pool, s.name);
    expect(before!.partitions).toBe(4);
    expect(before!.held_back).toMatchObject({ consumers: [{ name: s.names.slow, state: 'paused' }], capture: false });

    const run = await job().run();
    expect(run!.sources.find((r) => r.source === s.name)).toMatchObject({ dropped: 1 });
    expect(await partitions(s)).toEqual([p1, p2, p3]);
    expect(await horizon(s)).toBe(p0.hi);
    expect(await logRows(s)).toBe(40 + 30 + 20);
    // The unacked change is still there, and still the paused consumer's to ack.
    const kept = await pool.query('SELECT 1 FROM sluice.log WHERE source_no = $1 AND commit_lsn = $2', [s.logNo, unacked.toString()]);
    expect(kept.rowCount).toBe(1);

    // Status names the holder; p1 and p2 (70 changes, counted exactly) are held back.
    // (The partition capture writes in is estimated from the statistics, which ANALYZE makes exact here.)
    await pool.query('ANALYZE sluice.log');
    const status = await logStatus(pool, s.name);
    expect(status).toMatchObject({ partitions: 3, retained_changes: 90, dropped_before_lsn: expect.any(String) });
    expect(status!.held_back).toMatchObject({ changes: 70, consumers: [{ name: s.names.slow, state: 'paused' }], capture: false, warning: null });
    expect(status!.held_back!.oldest_age_ms).toBeGreaterThan(9 * DAY - 60_000);

    // Resumed, it acks the change: the next run drops p1 and p2 too, never p3 (where capture writes).
    await pool.query(`UPDATE sluice.consumers SET state = 'active' WHERE id = $1`, [s.consumers.slow]);
    expect(await ack(pool, s.consumers.slow, inFlight)).toEqual({ applied: 1, ignored: 0 });
    await job().run();
    expect(await partitions(s)).toEqual([p3]);
    expect(await horizon(s)).toBe(p2.hi);
    expect(await logRows(s)).toBe(20);
    expect((await logStatus(pool, s.name))!.held_back).toBeNull();
  });

  it('max_size drops the oldest partitions first, down to the limit; the newest is never dropped', async () => {
    const s = await source(['c'], { max_age_ms: 30 * DAY, max_size_bytes: 1 });
    const parts = [];
    for (let i = 0; i < 4; i++) parts.push(await partition(s, 200, new Date()));
    await confirm(s, parts[3].lo + 200n);
    await drain(s.consumers.c);
    const sizes = (await pool.query(
      `SELECT pg_total_relation_size(format('sluice.%I', relname)::regclass)::bigint AS b FROM sluice.log_partitions WHERE source_no = $1 ORDER BY lo`,
      [s.logNo],
    )).rows.map((r) => Number(r.b));
    // Room for the two newest partitions: the two oldest go, in order.
    await pool.query(`UPDATE sluice.sources SET config = jsonb_set(config, '{retention,max_size_bytes}', to_jsonb($2::bigint)) WHERE name = $1`, [
      s.name,
      sizes[2] + sizes[3],
    ]);
    await job().run();
    expect(await partitions(s)).toEqual([parts[2], parts[3]]);
    expect(await horizon(s)).toBe(parts[1].hi);
    // A limit below the newest partition's size still keeps it, even with no consumer left and capture
    // confirmed past it (a quiet source's heartbeats move the confirmed position on): capture writes there next.
    await pool.query('DELETE FROM sluice.consumers WHERE id = $1', [s.consumers.c]);
    await confirm(s, parts[3].hi + 100n);
    await pool.query(`UPDATE sluice.sources SET config = jsonb_set(config, '{retention,max_size_bytes}', '1') WHERE name = $1`, [s.name]);
    await job().run();
    expect(await partitions(s)).toEqual([parts[3]]);
  });

  it('never drops past the confirmed position, nor what a consumer has not taken in yet', async () => {
    const s = await source(['c'], { max_age_ms: DAY, max_size_bytes: 20 * GiB });
    const p0 = await partition(s, 10, daysAgo(5));
    const p1 = await partition(s, 10, daysAgo(4));
    const p2 = await partition(s, 10, new Date());
    // Capture has confirmed only into p0: nothing can go.
    await confirm(s, p0.lo + 5n);
    await drain(s.consumers.c);
    await job().run();
    expect(await partitions(s)).toEqual([p0, p1, p2]);
    expect((await logStatus(pool, s.name))!.held_back).toMatchObject({ consumers: [], capture: true });

    // Confirmed past them, but the consumer's position is back in p1 (as after a rewind): p0 alone goes.
    await confirm(s, p2.lo + 10n);
    await pool.query('UPDATE sluice.consumer_positions SET commit_lsn = $2, commit_idx = -1 WHERE consumer_id = $1', [s.consumers.c, (p1.lo + 3n).toString()]);
    await job().run();
    expect(await partitions(s)).toEqual([p1, p2]);
    expect((await logStatus(pool, s.name))!.held_back!.consumers[0].state).toBe('active');
  });

  it('warns past the threshold, naming the consumer and the fix', async () => {
    const s = await source(['stuck'], { max_age_ms: DAY, max_size_bytes: 20 * GiB });
    await partition(s, 10, daysAgo(3));
    const p1 = await partition(s, 10, new Date());
    await confirm(s, p1.lo + 10n);
    await pool.query(`UPDATE sluice.consumers SET state = 'disabled' WHERE id = $1`, [s.consumers.stuck]);
    const j = job();
    await j.run();
    const warning = logged.find((l) => l.level === 'warn' && l.obj.source === s.name);
    expect(warning?.msg).toMatch(/^Consumer "r\d+-stuck" \(disabled\) keeps 10 changes .* past its retention: .*ack.*delete the consumer; pausing does not release them\.$/);
    expect(warning?.obj).toMatchObject({ consumers: [expect.stringMatching(/-stuck$/)], held_changes: 10 });
    expect((await logStatus(pool, s.name))!.held_back!.warning).toBe(warning!.msg);
    // Not repeated on every run.
    logged = [];
    await j.run();
    expect(logged.filter((l) => l.level === 'warn' && l.obj.source === s.name)).toEqual([]);
  });

  it('behind a long reader it gives up at lock_timeout and a later run finishes the detach (FINALIZE) and the drop', async () => {
    const { s, p0, p1 } = await expiredWindow();
    await whileReading(s, async (reader) => {
      const started = Date.now();
      const run = await job({ lockTimeoutMs: 300 }).run();
      expect(Date.now() - started).toBeLessThan(5000);
      expect(run!.interrupted).toBe(true);
      // Detached for new queries already; the reader's snapshot still sees it.
      expect(await logRows(s)).toBe(10);
      expect((await reader.query('SELECT count(*)::int AS n FROM sluice.log WHERE source_no = $1', [s.logNo])).rows[0].n).toBe(20);
      expect(await horizon(s)).toBe(p0.hi);
    });
    const run = await job().run();
    expect(run!.interrupted).toBe(false);
    expect(run!.cleanedUp).toBe(1);
    expect(await partitions(s)).toEqual([p1]);
    const tables = await pool.query(`SELECT 1 FROM pg_class WHERE relname = $1`, [`log_${s.logNo}_${p0.lo.toString(16).padStart(16, '0')}`]);
    expect(tables.rowCount).toBe(0);
  });

  it('a deleted source loses its partitions, catalogue rows and horizon', async () => {
    const { s } = await expiredWindow();
    await job().run();
    expect(await horizon(s)).not.toBeNull();
    const { deleteConsumer, deleteSource } = await import('../src/config/queries.js');
    await deleteConsumer(pool, s.names.c);
    await deleteSource(pool, s.name);
    expect(await horizon(s)).toBeNull();
    const run = await job().run();
    expect(run!.cleanedUp).toBe(1);
    expect(await partitions(s)).toEqual([]);
    expect(await logRows(s)).toBe(0);
    const left = await pool.query(`SELECT 1 FROM pg_class WHERE relname LIKE $1`, [`log\\_${s.logNo}\\_%`]);
    expect(left.rowCount).toBe(0);
  });

  it('a partition a rewind reached while it was detached is attached again, not dropped', async () => {
    const { s, p0, p1 } = await expiredWindow();
    // The detach is left pending behind a reader…
    await whileReading(s, async () => {
      expect((await job({ lockTimeoutMs: 200 }).run())!.interrupted).toBe(true);
    });
    // …and meanwhile a rewind had the consumer take one of its changes in again.
    await pool.query(
      `INSERT INTO sluice.messages (consumer_id, commit_lsn, commit_idx, group_key) VALUES ($1, $2::bigint, 0, 'public.orders:' || $2::text)`,
      [s.consumers.c, (p0.lo + 4n).toString()],
    );
    const run = await job().run();
    expect(run!.cleanedUp).toBe(0);
    expect(await partitions(s)).toEqual([p0, p1]);
    expect(await logRows(s)).toBe(20);
    expect(logged.find((l) => l.level === 'warn' && /rewound/.test(l.msg ?? ''))?.obj).toMatchObject({ source: s.name, consumers: [s.names.c] });
    // Once acked, it goes.
    await pool.query('DELETE FROM sluice.messages WHERE consumer_id = $1', [s.consumers.c]);
    await job().run();
    expect(await partitions(s)).toEqual([p1]);
  });

  it('holds no lock on sluice.log that claims and capture writes wait for (measured under load)', async () => {
    const s = await source(['c'], { max_age_ms: DAY, max_size_bytes: 20 * GiB });
    const old = [];
    for (let i = 0; i < 6; i++) old.push(await partition(s, 5000, daysAgo(3)));
    const newest = await partition(s, 10, new Date());
    await confirm(s, newest.lo + 10n);
    await drain(s.consumers.c);
    // The load: another source's capture writing and its consumer claiming and acking, as fast as they can.
    const busy = await source(['w'], { max_age_ms: 30 * DAY, max_size_bytes: 20 * GiB });
    const busyPart = await partition(busy, 1, new Date());
    const url = String(pool.options.connectionString);
    const jobPool = createPool(url, { max: 2, name: 'sluice-retention-measured' });
    const side = createPool(url, { max: 4, name: 'sluice-retention-load' });
    try {
      let stop = false;
      const worst = { insert: 0, claim: 0 };
      let ops = 0;
      let next = busyPart.lo + 1n;
      const insertLoop = async () => {
        for (let i = 0; i < 100_000 && !stop; i++) {
          const t = performance.now();
          const lsn = (next++).toString();
          await side.query(
            `INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
             VALUES ($1, $2::bigint, 0, 'public', 'orders', 'insert', 'public.orders:' || $2::text, now(), $3)`,
            [busy.logNo, lsn, messagePayload(lsn, 0, { id: lsn })],
          );
          worst.insert = Math.max(worst.insert, performance.now() - t);
          ops++;
        }
      };
      const claimLoop = async () => {
        for (let i = 0; i < 100_000 && !stop; i++) {
          const t = performance.now();
          const { messages } = await claim(side, { consumerId: busy.consumers.w, limit: 50, visibilityMs: 60_000, deadLetterBlocksGroup: false });
          if (messages.length) await ack(side, busy.consumers.w, messages.map((m) => m.ackId));
          worst.claim = Math.max(worst.claim, performance.now() - t);
          ops++;
        }
      };
      // Every lock the job's session holds on sluice.log, sampled: the longest it held one, and which modes.
      const modes = new Set<string>();
      let longestHeldMs = 0;
      let heldSince: number | null = null;
      const sample = async () => {
        for (let i = 0; i < 200_000 && !stop; i++) {
          const { rows } = await side.query<{ mode: string }>(
            `SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE a.application_name = 'sluice-retention-measured' AND l.locktype = 'relation'
               AND l.relation = 'sluice.log'::regclass AND l.granted`,
          );
          const now = performance.now();
          for (const r of rows) modes.add(r.mode);
          if (rows.length && heldSince === null) heldSince = now;
          if (!rows.length && heldSince !== null) {
            longestHeldMs = Math.max(longestHeldMs, now - heldSince);
            heldSince = null;
          }
        }
      };
      const loops = [insertLoop(), claimLoop(), sample()];
      await new Promise((r) => setTimeout(r, 300));
      const warm = { ...worst };
      const t0 = performance.now();
      const run = await new RetentionJob(jobPool, { log }).run();
      const jobMs = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 100));
      stop = true;
      await Promise.all(loops);
      expect(run!.sources.find((r) => r.source === s.name)!.dropped).toBe(6);
      expect(await partitions(s)).toEqual([newest]);
      console.log(
        `retention under load: job ${jobMs.toFixed(0)} ms for 6 partitions (30,000 changes); longest lock on sluice.log ` +
          `${longestHeldMs.toFixed(1)} ms (${[...modes].join(', ') || 'none seen'}); worst concurrent insert ${worst.insert.toFixed(1)} ms, ` +
          `claim+ack ${worst.claim.toFixed(1)} ms (before the job: ${warm.insert.toFixed(1)} / ${warm.claim.toFixed(1)} ms); ${ops} ops`,
      );
      // Only SHARE UPDATE EXCLUSIVE (which inserts, claims and readers never wait for), and briefly.
      for (const m of modes) expect(['AccessShareLock', 'ShareUpdateExclusiveLock']).toContain(m);
      expect(longestHeldMs).toBeLessThan(1000);
      expect(Math.max(worst.insert, worst.claim)).toBeLessThan(1000);
    } finally {
      await jobPool.end();
      await side.end();
    }
  });

  it('one gateway at a time: a second run while one holds the lock skips its turn', async () => {
    const holder = await pool.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(7346221006)');
      expect(await job().run()).toBeNull();
    } finally {
      await holder.query('SELECT pg_advisory_unlock(7346221006)');
      holder.release();
    }
    expect(await job().run()).not.toBeNull();
  });
});
