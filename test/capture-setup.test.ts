// Setup refusals name the fix (shared/spec/capture.md, "Setup Sluice does for
// the user"): each case is a real misconfiguration on a real Postgres, checked
// through ensureSource and, where it matters, through a running SourceCapture's
// status(). TRUNCATE is reported as not captured; the SQL `sluice setup --print`
// shows is run as a DBA would and is then enough.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConsumerRegistry } from '../src/buffer/consumers.js';
import { ensureSource, serverVersionProblem, SetupError, setupSql } from '../src/capture/setup.js';
import { SourceCapture } from '../src/capture/source-capture.js';
import type { SourceConfig } from '../src/config/types.js';
import { startEmbedded, type EmbeddedHandle } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { createPool, type Pool } from '../src/db/pool.js';
import { consumerConfig, eventually, payloads, quietLog, sourceConfig, sql, startCapture } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

/** On Postgres 14 (npm run test:versions) a source cannot capture whole schemas. */
const PG14 = process.env.SLUICE_TEST_PG === '14';
let server: TestPg;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  server = await startTestPg();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
afterAll(async () => {
  await server?.stop();
});

function pool(url: string): Pool {
  const p = createPool(url, { max: 2 });
  cleanups.push(() => p.end());
  return p;
}

/** ensureSource's refusal (a SetupError), or a failure of the test if it accepts. */
async function refusal(db: Pool, source: SourceConfig): Promise<string> {
  const err = await ensureSource(db, source).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SetupError);
  return (err as SetupError).message;
}

function withUser(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  return u.toString();
}

describe('capture setup: every refusal names the fix', () => {
  it('wal_level not logical: an ensureSource refusal, and the running capture reports it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-replica-'));
    chmodSync(dir, 0o755); // as root, Postgres runs as 'postgres' and must reach the folder
    let replica: EmbeddedHandle | null = null;
    cleanups.push(async () => {
      await replica?.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    replica = await startEmbedded({ dataDir: path.join(dir, 'pg'), persistent: false, extraFlags: ['-c', 'wal_level=replica'] });
    await sql(replica.url, `CREATE TABLE t (id int PRIMARY KEY)`);
    const src = sourceConfig('walrep', ['public.t']);
    const msg = await refusal(pool(replica.url), src);
    expect(msg).toBe(
      'source "walrep": wal_level is "replica", capture needs "logical". Run ALTER SYSTEM SET wal_level = logical; then restart Postgres.',
    );

    // The same through SourceCapture: not running, the message in status().
    const bufUrl = await server.createDatabase('setup_walrep_buf');
    const buf = pool(bufUrl);
    await migrate(buf);
    const capture = new SourceCapture(src, { bufferPool: buf, sourceUrl: replica.url, consumers: new ConsumerRegistry(buf), log: quietLog });
    cleanups.push(() => capture.stop());
    capture.start();
    const status = await eventually(async () => (capture.status().last_error ? capture.status() : null));
    expect(status).toMatchObject({ name: 'walrep', running: false, last_error: msg });
    // Nothing was created on the source.
    const { rows } = await sql(replica.url, `SELECT (SELECT count(*) FROM pg_publication)::int AS pubs, (SELECT count(*) FROM pg_replication_slots)::int AS slots`);
    expect(rows[0]).toEqual({ pubs: 0, slots: 0 });
  });

  it('a role without REPLICATION', async () => {
    const url = await server.createDatabase('setup_role');
    await sql(
      url,
      `DROP ROLE IF EXISTS "plain user"; CREATE ROLE "plain user" LOGIN PASSWORD 'pw';
       CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO "plain user";`,
    );
    const db = pool(withUser(url, 'plain user', 'pw'));
    const msg = await refusal(db, sourceConfig('role', ['public.t']));
    expect(msg).toBe(`source "role": role "plain user" cannot replicate. Run ALTER ROLE "plain user" WITH REPLICATION; as a superuser.`);
    // With REPLICATION, creating the publication still needs CREATE on the database.
    await sql(url, `ALTER ROLE "plain user" WITH REPLICATION`);
    expect(await refusal(db, sourceConfig('role', ['public.t']))).toBe(
      'source "role": cannot create publication "sluice_role": permission denied for database setup_role. ' +
        'Grant what it needs (CREATE on the database and ownership of the tables; superuser for TABLES IN SCHEMA), ' +
        'or have a DBA run the SQL of `sluice setup --print` and set create_if_missing: false.',
    );
    // The fixes work: the role (owning the table) then sets up capture itself.
    await sql(url, `GRANT CREATE ON DATABASE setup_role TO "plain user"`);
    const ok = await ensureSource(db, sourceConfig('role', ['public.t']));
    expect(ok).toMatchObject({ createdPublication: true, createdSlot: true });
    await sql(url, `SELECT pg_drop_replication_slot('sluice_role')`);
    await sql(url, `DROP PUBLICATION sluice_role; DROP TABLE t; REVOKE ALL ON DATABASE setup_role FROM "plain user"`);
  });

  it('a table without a primary key; accepted once REPLICA IDENTITY FULL; NOTHING, missing tables and Sluice tables refused', async () => {
    const url = await server.createDatabase('setup_pk');
    await sql(url, `CREATE TABLE nopk (a int, b text); CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING;`);
    const db = pool(url);
    expect(await refusal(db, sourceConfig('pk', ['public.nopk']))).toBe(
      'source "pk": table public.nopk has no primary key: add one, or run ALTER TABLE "public"."nopk" REPLICA IDENTITY FULL',
    );
    // Several problems are reported together.
    expect(await refusal(db, sourceConfig('pk', ['public.nothing', 'public.missing']))).toBe(
      'source "pk": table public.missing does not exist (create it, or remove it from sources[].tables); ' +
        'table public.nothing has REPLICA IDENTITY NOTHING: run ALTER TABLE "public"."nothing" REPLICA IDENTITY DEFAULT (with a primary key) or FULL',
    );
    await migrate(db);
    expect(await refusal(db, sourceConfig('pk', ['sluice.messages']))).toContain("table sluice.messages is Sluice's own buffer and must not be captured");

    // The suggested fix is accepted, and the table is then captured (full rows).
    await sql(url, `ALTER TABLE nopk REPLICA IDENTITY FULL`);
    const fx = await startCapture(url, sourceConfig('pk', ['public.nopk']), [consumerConfig('c', 'pk', ['public.nopk'])]);
    cleanups.push(() => fx.stop());
    await sql(url, `INSERT INTO nopk VALUES (1, 'x'); UPDATE nopk SET b = 'y'; DELETE FROM nopk;`);
    const msgs = await eventually(async () => {
      const p = await payloads(fx.pool, 'c');
      return p.length === 3 ? p : null;
    });
    expect(msgs.map((m) => [m.action, m.record, m.changes])).toEqual([
      ['insert', { a: 1, b: 'x' }, null],
      ['update', { a: 1, b: 'y' }, { b: 'x' }],
      ['delete', { a: 1, b: 'y' }, null],
    ]);
  });

  it('create_if_missing false: a missing publication, a publication lacking a table, a missing slot', async () => {
    const url = await server.createDatabase('setup_missing');
    await sql(url, `CREATE TABLE "Orders" (id int PRIMARY KEY); CREATE TABLE items (id int PRIMARY KEY)`);
    const db = pool(url);
    const src = sourceConfig('miss', ['public.Orders', 'public.items'], { create_if_missing: false });
    expect(await refusal(db, src)).toBe(
      'source "miss": publication "sluice_miss" does not exist. ' +
        'Run: CREATE PUBLICATION "sluice_miss" FOR TABLE "public"."Orders", "public"."items" WITH (publish_via_partition_root = true);',
    );
    await sql(url, `CREATE PUBLICATION sluice_miss FOR TABLE "Orders"`);
    expect(await refusal(db, src)).toBe(
      'source "miss": publication "sluice_miss" lacks public.items. Run: ALTER PUBLICATION "sluice_miss" ADD TABLE "public"."items";',
    );
    await sql(url, `ALTER PUBLICATION sluice_miss ADD TABLE items`);
    expect(await refusal(db, src)).toBe(
      `source "miss": replication slot "sluice_miss" does not exist. Run: SELECT pg_create_logical_replication_slot('sluice_miss', 'pgoutput');`,
    );
    // Nothing was created by the refusals.
    const { rows } = await sql(url, `SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'sluice_miss'`);
    expect(rows[0].n).toBe(0);
    await sql(url, `SELECT pg_create_logical_replication_slot('sluice_miss', 'pgoutput')`);
    cleanups.push(() => sql(url, `SELECT pg_drop_replication_slot('sluice_miss')`));
    const ok = await ensureSource(db, src);
    expect(ok).toMatchObject({ database: 'setup_missing', createdPublication: false, createdSlot: false, addedTables: [] });
    expect(ok.slotConfirmedLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  });

  it('a slot of another plugin, and a publication FOR ALL TABLES, are refused', async () => {
    const url = await server.createDatabase('setup_refuse');
    await sql(url, `CREATE TABLE t (id int PRIMARY KEY)`);
    const db = pool(url);
    await sql(url, `SELECT pg_create_logical_replication_slot('sluice_other', 'test_decoding')`);
    cleanups.push(() => sql(url, `SELECT pg_drop_replication_slot('sluice_other')`));
    expect(await refusal(db, sourceConfig('other', ['public.t']))).toBe(
      'source "other": slot "sluice_other" exists but uses plugin test_decoding on database setup_refuse; ' +
        `Sluice needs a pgoutput slot on setup_refuse. Choose another slot name or drop it: SELECT pg_drop_replication_slot('sluice_other');`,
    );

    await sql(url, `CREATE PUBLICATION sluice_all FOR ALL TABLES`);
    expect(await refusal(db, sourceConfig('all', ['public.t']))).toBe(
      `source "all": publication "sluice_all" is FOR ALL TABLES, which would publish Sluice's own buffer. ` +
        'Use a publication for the chosen tables (sluice setup --print shows it).',
    );
    const { rows } = await sql(url, `SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'sluice_all'`);
    expect(rows[0].n).toBe(0);
  });

  it('a server older than 14 is refused naming its version and what is needed; schemas need 15', () => {
    // The check itself, on the versions Postgres reports (no 13 server is installed to run it against).
    expect(serverVersionProblem({ name: 'legacy', schemas: [] }, { num: 130016, text: '13.16' })).toBe(
      'source "legacy": Postgres 13.16 is too old; Sluice captures from Postgres 14 or later ' +
        "(it needs pgoutput's messages option, new in 14, for transaction annotations, the outbox and backfills). Upgrade the server.",
    );
    expect(serverVersionProblem({ name: 'x', schemas: ['shop'] }, { num: 140013, text: '14.13' })).toMatch(/needs Postgres 15 or later; this server is 14\.13/);
    expect(serverVersionProblem({ name: 'x', schemas: [] }, { num: 140013, text: '14.13' })).toBeNull();
    expect(serverVersionProblem({ name: 'x', schemas: ['shop'] }, { num: 180004, text: '18.4' })).toBeNull();
  });

  it.runIf(PG14)('schemas (TABLES IN SCHEMA) are refused on Postgres 14, naming the version and the fix', async () => {
    const url = await server.createDatabase('setup_pg14');
    await sql(url, `CREATE SCHEMA shop; CREATE TABLE shop.a (id int PRIMARY KEY)`);
    const err = await ensureSource(pool(url), sourceConfig('old', [], { schemas: ['shop'] })).catch((e: Error) => e);
    expect(err).toBeInstanceOf(SetupError);
    expect((err as Error).message).toMatch(/^source "old": schemas \(a publication FOR TABLES IN SCHEMA\) needs Postgres 15 or later; this server is 14\.\d+.*List the tables in sources\[\]\.tables instead\.$/);
  });

  it.skipIf(PG14)('the SQL of `sluice setup --print`, run by a DBA, is all capture needs', async () => {
    const url = await server.createDatabase('setup_print');
    await sql(url, `CREATE SCHEMA shop; CREATE TABLE shop.a (id int PRIMARY KEY); CREATE TABLE shop.b (id int PRIMARY KEY); CREATE TABLE t (id int PRIMARY KEY)`);
    const src = sourceConfig('print', ['public.t'], { schemas: ['shop'], create_if_missing: false });
    const text = setupSql(src, 'postgres');
    expect(text).toContain('ALTER SYSTEM SET wal_level = logical;');
    expect(text).toContain('ALTER ROLE "postgres" WITH REPLICATION;');
    expect(text).toContain('CREATE PUBLICATION "sluice_print" FOR TABLE "public"."t", TABLES IN SCHEMA "shop";');
    expect(text).toContain('ALTER PUBLICATION "sluice_print" SET (publish_via_partition_root = true);');
    expect(text).toContain(`SELECT pg_create_logical_replication_slot('sluice_print', 'pgoutput');`);
    // Publication before slot.
    expect(text.indexOf('CREATE PUBLICATION')).toBeLessThan(text.indexOf('pg_create_logical_replication_slot'));
    // Run what it prints except ALTER SYSTEM (wal_level is already logical here).
    // The outbox's function (last, optional) is one multi-line statement; the rest one per line.
    const [required, outbox] = text.split('-- 5. Optional, for the transactional outbox');
    const statements = required.split('\n').filter((l) => l.trim() && !l.startsWith('--') && !l.startsWith('ALTER SYSTEM'));
    for (const s of statements) await sql(url, s);
    await sql(url, outbox.slice(outbox.indexOf('\n') + 1));
    expect((await sql(url, `SELECT to_regprocedure('sluice.publish(text,text,jsonb,text,text)') IS NOT NULL AS ok`)).rows[0].ok).toBe(true);
    cleanups.push(() => sql(url, `SELECT pg_drop_replication_slot('sluice_print')`));
    const ok = await ensureSource(pool(url), src);
    expect(ok).toMatchObject({ createdPublication: false, createdSlot: false, addedTables: [] });
  });

  it('a partitioned table is captured under its own name, from every partition', async () => {
    const url = await server.createDatabase('setup_partition');
    const PARTITIONED = `CREATE TABLE events (id int, d date, kind text, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
       CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
       CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');`;
    await sql(url, PARTITIONED);
    const src = sourceConfig('part', ['public.events']);
    const fx = await startCapture(url, src, [consumerConfig('c', 'part', ['public.events'])]);
    cleanups.push(() => fx.stop());
    await sql(url, `INSERT INTO events VALUES (1, '2025-06-01', 'a'), (2, '2026-06-01', 'b')`);
    await sql(url, `UPDATE events SET kind = 'c' WHERE id = 2`);
    await sql(url, `DELETE FROM events WHERE id = 1`);
    const msgs = await eventually(async () => {
      const p = await payloads(fx.pool, 'c');
      return p.length === 4 ? p : null;
    });
    expect(msgs.map((m) => [m.action, m.metadata.table_name, m.metadata.record_pks])).toEqual([
      ['insert', 'events', ['1', '2025-06-01']],
      ['insert', 'events', ['2', '2026-06-01']],
      ['update', 'events', ['2', '2026-06-01']],
      ['delete', 'events', ['1', '2025-06-01']],
    ]);
    // What setup created passes its own check on the next start.
    expect(await ensureSource(pool(url), { ...src, create_if_missing: false })).toMatchObject({ createdPublication: false, addedTables: [] });

    // A publication made without publish_via_partition_root would publish the
    // partitions' names, which no consumer reads: refused with the fix, or fixed.
    const url2 = await server.createDatabase('setup_partition_dba');
    await sql(url2, `${PARTITIONED} CREATE PUBLICATION sluice_part2 FOR TABLE events;`);
    const src2 = sourceConfig('part2', ['public.events'], { create_if_missing: false });
    expect(await refusal(pool(url2), src2)).toBe(
      'source "part2": publication "sluice_part2" would publish partitioned public.events under the partitions\' names. ' +
        'Run: ALTER PUBLICATION "sluice_part2" SET (publish_via_partition_root = true);',
    );
    await sql(url2, `SELECT pg_create_logical_replication_slot('sluice_part2', 'pgoutput')`);
    cleanups.push(() => sql(url2, `SELECT pg_drop_replication_slot('sluice_part2')`));
    expect(await ensureSource(pool(url2), { ...src2, create_if_missing: true })).toMatchObject({ createdPublication: false, addedTables: [] });
    const { rows } = await sql(url2, `SELECT pubviaroot FROM pg_publication WHERE pubname = 'sluice_part2'`);
    expect(rows[0].pubviaroot).toBe(true);
  });

  it('TRUNCATE is reported as not captured, and capture goes on', async () => {
    const url = await server.createDatabase('setup_truncate');
    await sql(url, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int PRIMARY KEY)`);
    const fx = await startCapture(url, sourceConfig('trunc', ['public.t', 'public.u']), [consumerConfig('c', 'trunc', ['public.t', 'public.u'])]);
    cleanups.push(() => fx.stop());
    const warnings: string[] = [];
    const warn = quietLog.warn;
    quietLog.warn = (o: unknown, m?: string) => {
      warnings.push(m ?? '');
      warn(o, m);
    };
    cleanups.push(async () => {
      quietLog.warn = warn;
    });
    await sql(url, `INSERT INTO t VALUES (1); INSERT INTO u VALUES (1)`);
    await sql(url, `TRUNCATE t, u`);
    await sql(url, `INSERT INTO t VALUES (2)`);
    const msgs = await eventually(async () => {
      const p = await payloads(fx.pool, 'c');
      return p.length === 3 ? p : null;
    });
    expect(msgs.map((m) => `${m.action}:${m.metadata.table_name}:${m.record.id}`)).toEqual(['insert:t:1', 'insert:u:1', 'insert:t:2']);
    expect(fx.capture.truncatesNotCaptured).toBe(2);
    expect(warnings).toContain('TRUNCATE is not captured as messages; consumers are not told');
  });
});
