// Publication and slot: verified, created when allowed, or printed for a DBA.
// Every refusal is a SetupError whose message names the fix.
import type pg from 'pg';
import type { SourceConfig } from '../config/types.js';
import { createPool } from '../db/pool.js';
import { quoteIdent, quoteTable } from './sql-ident.js';
import * as q from './setup-queries.js';

export class SetupError extends Error {
  override readonly name = 'SetupError';
  constructor(
    message: string,
    /** A problem that will not go away by retrying (the user must act). */
    readonly permanent = true,
  ) {
    super(message);
  }
}

// publish_via_partition_root: a partitioned table's changes are published under
// its own name, the one consumers list, rather than under each partition's.
const VIA_ROOT = 'WITH (publish_via_partition_root = true)';

function createPublication(source: SourceConfig, withViaRoot = true): string {
  // "TABLE a, b": the form every supported server reads (Postgres 14 takes one
  // TABLE keyword for the list, and no TABLES IN SCHEMA).
  const targets = [
    ...(source.tables.length ? [`TABLE ${source.tables.map(quoteTable).join(', ')}`] : []),
    ...source.schemas.map((s) => `TABLES IN SCHEMA ${quoteIdent(s)}`),
  ];
  return `CREATE PUBLICATION ${quoteIdent(source.publication)} FOR ${targets.join(', ')}${withViaRoot ? ' ' + VIA_ROOT : ''}`;
}

/** The SQL a DBA would run instead of letting Sluice create things (`sluice setup --print`). */
export function setupSql(source: SourceConfig, role = '<sluice_role>'): string {
  return [
    `-- Source "${source.name}": run as a superuser on the source database.`,
    `-- 1. wal_level must be logical (needs a restart):`,
    `ALTER SYSTEM SET wal_level = logical;`,
    `-- 2. The role Sluice connects as needs REPLICATION:`,
    `ALTER ROLE ${quoteIdent(role)} WITH REPLICATION;`,
    `-- 3. The publication (before the slot):`,
    `${createPublication(source, false)};`,
    `ALTER PUBLICATION ${quoteIdent(source.publication)} SET (publish_via_partition_root = true); -- partitioned tables under their own name`,
    `-- 4. The replication slot:`,
    `SELECT pg_create_logical_replication_slot('${source.slot.replace(/'/g, "''")}', 'pgoutput');`,
    `-- Tables without a primary key need: ALTER TABLE <table> REPLICA IDENTITY FULL;`,
    `-- 5. Optional, for the transactional outbox: sluice.publish(stream, subject, data, key, idempotency_key).`,
    q.OUTBOX_FUNCTION_SQL,
    '',
  ].join('\n');
}

export interface SetupResult {
  database: string;
  createdPublication: boolean;
  addedTables: string[];
  createdSlot: boolean;
  slotConfirmedLsn: string | null;
  /** sluice.publish (the outbox's function) was installed now. */
  createdOutboxFunction?: boolean;
  /** Why sluice.publish could not be installed (the outbox still works with pg_logical_emit_message). */
  outboxFunctionProblem?: string;
}

/**
 * Runs a CREATE/ALTER that needs privileges the role may lack (CREATE on the
 * database, ownership of the tables, superuser for TABLES IN SCHEMA): Postgres's
 * bare "permission denied" becomes a SetupError saying what was being created
 * and the two ways out.
 */
async function privileged(source: SourceConfig, what: string, run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code !== '42501') throw err; // insufficient_privilege
    throw new SetupError(
      `source "${source.name}": cannot ${what}: ${e.message}. Grant what it needs (CREATE on the database and ownership of the tables; ` +
        `superuser for TABLES IN SCHEMA), or have a DBA run the SQL of \`sluice setup --print\` and set create_if_missing: false.`,
    );
  }
}

/**
 * Verify (and, with create_if_missing, create) what capture needs.
 * `bufferInSameDatabase`: the buffer's schema must never be published.
 */
/** The oldest server capture supports: pgoutput's `messages` option (transaction annotations, the outbox, backfill watermarks) came in 14. */
export const MIN_SERVER_VERSION = 140000;
/** TABLES IN SCHEMA (a source's `schemas`) came in 15. */
export const SCHEMAS_SERVER_VERSION = 150000;

/** Why this server cannot be the source, or null when it can. */
export function serverVersionProblem(source: Pick<SourceConfig, 'name' | 'schemas'>, version: { num: number; text: string }): string | null {
  if (version.num < MIN_SERVER_VERSION) {
    return (
      `source "${source.name}": Postgres ${version.text} is too old; Sluice captures from Postgres 14 or later ` +
      `(it needs pgoutput's messages option, new in 14, for transaction annotations, the outbox and backfills). Upgrade the server.`
    );
  }
  if (source.schemas.length && version.num < SCHEMAS_SERVER_VERSION) {
    return (
      `source "${source.name}": schemas (a publication FOR TABLES IN SCHEMA) needs Postgres 15 or later; this server is ${version.text}. ` +
      `List the tables in sources[].tables instead.`
    );
  }
  return null;
}

/** Why capture could not serve these tables, each with the fix (also the console's connection test). */
export function tableProblems(tables: q.TableInfo[]): string[] {
  const problems: string[] = [];
  for (const t of tables) {
    if (!t.exists) problems.push(`table ${t.qualified} does not exist (create it, or remove it from sources[].tables)`);
    else if (t.replident === 'n') problems.push(`table ${t.qualified} has REPLICA IDENTITY NOTHING: run ALTER TABLE ${quoteTable(t.qualified)} REPLICA IDENTITY DEFAULT (with a primary key) or FULL`);
    else if (t.replident === 'd' && !t.has_pk)
      problems.push(`table ${t.qualified} has no primary key: add one, or run ALTER TABLE ${quoteTable(t.qualified)} REPLICA IDENTITY FULL`);
    if (t.qualified.startsWith('sluice.')) problems.push(`table ${t.qualified} is Sluice's own buffer and must not be captured`);
  }
  return problems;
}

export async function ensureSource(db: pg.Pool, source: SourceConfig, opts: { slot?: boolean } = {}): Promise<SetupResult> {
  const tooOld = serverVersionProblem(source, await q.serverVersion(db));
  if (tooOld) throw new SetupError(tooOld);
  const wal = await q.walLevel(db);
  if (wal !== 'logical') {
    throw new SetupError(
      `source "${source.name}": wal_level is "${wal}", capture needs "logical". ` +
        `Run ALTER SYSTEM SET wal_level = logical; then restart Postgres.`,
    );
  }
  const role = await q.roleCanReplicate(db);
  if (!role.ok) {
    throw new SetupError(
      `source "${source.name}": role "${role.role}" cannot replicate. Run ALTER ROLE ${quoteIdent(role.role)} WITH REPLICATION; as a superuser.`,
    );
  }
  const tables = await q.tableInfo(db, source.tables, source.schemas);
  const problems = tableProblems(tables);
  if (problems.length) throw new SetupError(`source "${source.name}": ${problems.join('; ')}`);

  const database = await q.currentDatabase(db);
  const result: SetupResult = { database, createdPublication: false, addedTables: [], createdSlot: false, slotConfirmedLsn: null };

  let pub = await q.publicationInfo(db, source.publication);
  if (pub.allTables) {
    throw new SetupError(
      `source "${source.name}": publication "${source.publication}" is FOR ALL TABLES, which would publish Sluice's own buffer. ` +
        `Use a publication for the chosen tables (sluice setup --print shows it).`,
    );
  }
  // Without publish_via_partition_root, a partitioned table's changes arrive
  // under its partitions' names, which no consumer lists: they would be dropped.
  const partitioned = tables.filter((t) => t.partitioned).map((t) => t.qualified);
  if (pub.exists && !pub.viaRoot && partitioned.length) {
    const fix = `ALTER PUBLICATION ${quoteIdent(source.publication)} SET (publish_via_partition_root = true)`;
    if (!source.create_if_missing) {
      throw new SetupError(
        `source "${source.name}": publication "${source.publication}" would publish partitioned ${partitioned.join(', ')} ` +
          `under the partitions' names. Run: ${fix};`,
      );
    }
    await privileged(source, `set publish_via_partition_root on publication "${source.publication}"`, () => db.query(fix));
    pub = await q.publicationInfo(db, source.publication);
  }
  const wanted = tables.map((t) => t.qualified);
  const missing = wanted.filter((t) => !pub.tables.includes(t));
  if (!pub.exists || missing.length) {
    if (!source.create_if_missing) {
      const fix = pub.exists
        ? `ALTER PUBLICATION ${quoteIdent(source.publication)} ADD TABLE ${missing.map(quoteTable).join(', ')};`
        : `${createPublication(source)};`;
      throw new SetupError(
        `source "${source.name}": publication "${source.publication}" ${pub.exists ? `lacks ${missing.join(', ')}` : 'does not exist'}. Run: ${fix}`,
      );
    }
    if (!pub.exists) {
      await privileged(source, `create publication "${source.publication}"`, () => db.query(createPublication(source)));
      result.createdPublication = true;
    } else {
      await privileged(source, `add ${missing.join(', ')} to publication "${source.publication}"`, () =>
        db.query(`ALTER PUBLICATION ${quoteIdent(source.publication)} ADD TABLE ${missing.map(quoteTable).join(', ')}`),
      );
      result.addedTables = missing;
    }
  }

  if (opts.slot === false) return result;
  if (source.create_if_missing) await installOutboxFunction(db, result);
  let slot = await q.slotInfo(db, source.slot);
  if (slot.exists && (slot.plugin !== 'pgoutput' || slot.database !== database)) {
    throw new SetupError(
      `source "${source.name}": slot "${source.slot}" exists but uses plugin ${slot.plugin} on database ${slot.database}; ` +
        `Sluice needs a pgoutput slot on ${database}. Choose another slot name or drop it: SELECT pg_drop_replication_slot('${source.slot}');`,
    );
  }
  if (!slot.exists) {
    if (!source.create_if_missing) {
      throw new SetupError(
        `source "${source.name}": replication slot "${source.slot}" does not exist. Run: SELECT pg_create_logical_replication_slot('${source.slot}', 'pgoutput');`,
      );
    }
    await privileged(source, `create replication slot "${source.slot}"`, () => q.createSlot(db, source.slot));
    result.createdSlot = true;
    slot = await q.slotInfo(db, source.slot);
  }
  result.slotConfirmedLsn = slot.confirmed_flush_lsn ?? null;
  return result;
}

/**
 * sluice.publish, for the outbox: installed when missing. Not having it is
 * no reason to stop capture (pg_logical_emit_message does the same), so a
 * failure is reported in the result, for a warning.
 */
async function installOutboxFunction(db: pg.Pool, result: SetupResult): Promise<void> {
  try {
    if (await q.hasOutboxFunction(db)) return;
    await q.createOutboxFunction(db);
    result.createdOutboxFunction = true;
  } catch (err) {
    // Another gateway installing it at the same moment: it is there now.
    if (await q.hasOutboxFunction(db).catch(() => false)) return;
    result.outboxFunctionProblem = (err as Error).message;
  }
}

/** Fields whose change alters what is captured, and so calls for prepareSource. */
export const CAPTURE_FIELDS = ['url', 'tables', 'schemas', 'publication', 'slot', 'create_if_missing'] as const;

export function captureChanged(before: SourceConfig | undefined, after: SourceConfig): boolean {
  return !before || CAPTURE_FIELDS.some((f) => JSON.stringify(before[f]) !== JSON.stringify(after[f]));
}

/**
 * ensureSource on a short-lived connection, for the management API and `sluice
 * config apply`: a table added to a source is in its publication (and a new
 * source has its slot) before the call returns, so no change made after it is
 * missed; or the call fails with the fix and saves nothing. Every failure is a
 * SetupError; a connection failure is one too (nothing can be verified).
 *
 * Creating a slot waits until every transaction open at that moment has ended,
 * so a caller holding one (with an xid) must pass `slot: false` or wait for
 * itself for ever: callers prepare before their transaction, and again, for
 * the publication alone, inside it if the config changed meanwhile.
 */
export async function prepareSource(source: SourceConfig, url: string, opts: { slot?: boolean } = {}): Promise<SetupResult> {
  const pool = createPool(url, { max: 1, name: 'sluice-setup' });
  try {
    return await ensureSource(pool, source, opts);
  } catch (err) {
    if (err instanceof SetupError) throw err;
    throw new SetupError(`source "${source.name}": cannot reach its database to set up capture: ${(err as Error).message}`, false);
  } finally {
    await pool.end().catch(() => {});
  }
}
