// /api/sources: databases Sluice captures from. Bodies are one entry of the
// YAML `sources:` list, validated by the config loader.
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import { consumersOfSource, usedBy } from '../../api/consumers.js';
import { checkSource } from '../../api/source-check.js';
import { readSourceTables, type SourceTable } from '../../api/source-tables.js';
import { getSource, listSources, type SourceRow } from '../../api/sources.js';
import { getStream, listStreams } from '../../api/streams.js';
import { ConfigError, toYamlConsumer, toYamlSource, validateConsumer, validateSource } from '../../config/load.js';
import * as q from '../../config/queries.js';
import type { SourceConfig } from '../../config/types.js';
import type { Pool, PoolClient } from '../../db/pool.js';
import { captureChanged, prepareSource, SetupError } from '../../capture/setup.js';
import type { AppDeps } from '../deps.js';
import { ApiError, conflict, invalid, notAnObject, notFound } from '../errors.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { sourceSchemas } from '../schemas/resources.js';
import { loaderValidatesBody } from '../schemas/validator.js';
import { changeConfig } from './config-tx.js';
import { restoreUrl, scrubPassword } from './masking.js';
import { isObject, mergePatch } from './merge-patch.js';
import { presentSource } from './present.js';
import { logStatus } from '../../log/status.js';

export async function sourceRoutes(parent: FastifyInstance, opts: { deps: AppDeps; compiler: FastifySchemaCompiler<unknown> }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { deps } = opts;
  const { pool } = deps;
  const statusOf = (name: string) => deps.capture?.status().find((s) => s.name === name);
  const present = (row: SourceRow) => presentSource(row, statusOf(row.name));
  const bodyByLoader = loaderValidatesBody(opts.compiler);

  async function existing(db: PoolClient | typeof pool, name: string, forUpdate = false): Promise<SourceRow> {
    const row = await getSource(db, name, forUpdate);
    if (!row) throw notFound(`Source "${name}"`);
    return row;
  }

  /**
   * Publication (and slot) set up on the source before the change commits, so
   * a table it adds is captured from the moment the call returns; if that
   * cannot be done the call fails with the fix and changes nothing. Called
   * before the config transaction (a slot cannot be created while it is open),
   * and inside it, for the publication alone, if the source changed meanwhile.
   */
  async function prepare(config: SourceConfig, opts: { slot?: boolean } = {}): Promise<void> {
    const url = config.url || String(pool.options.connectionString);
    try {
      await prepareSource(config, url, opts);
    } catch (err) {
      if (!(err instanceof SetupError)) throw err;
      throw new ApiError(422, `${scrubPassword(err.message, url)} Nothing was saved.`);
    }
  }

  /** As stored, with capture status and the retained log: what reads show. */
  const presentWithLog = async (row: SourceRow) => ({ ...present(row), log: await logStatus(pool, row.name) });

  app.get('/sources', { schema: sourceSchemas.list }, async () => ({ data: await Promise.all((await listSources(pool)).map(presentWithLog)) }));

  app.get('/sources/:name', { schema: sourceSchemas.get }, async (request) => presentWithLog(await existing(pool, request.params.name)));

  app.post('/sources', { schema: sourceSchemas.create, ...bodyByLoader }, async (request, reply) => {
    if (!isObject(request.body)) throw notAnObject();
    const config = validateSource(request.body);
    const refuseClashes = async (db: PoolClient | typeof pool) => {
      if (await getSource(db, config.name)) throw conflict(`A source named "${config.name}" already exists.`);
      if (await getStream(db, config.name)) throw conflict(`A stream named "${config.name}" already exists (sources and streams share names: a consumer names one of them).`);
      checkSlotFree(config, await listSources(db));
    };
    // Every check that can refuse the call comes before a slot is created.
    await refuseClashes(pool);
    await prepare(config);
    const row = await changeConfig(deps, async (db) => {
      await refuseClashes(db);
      await q.insertSource(db, config);
      return existing(db, config.name);
    });
    return reply.status(201).send(present(row));
  });

  app.patch('/sources/:name', { schema: sourceSchemas.update, ...bodyByLoader }, async (request) => {
    const { name } = request.params;
    const patch: unknown = request.body;
    if (!isObject(patch)) throw notAnObject();
    if (patch.name !== undefined && patch.name !== name) throw invalid({ name: ['cannot be changed'] });
    /** The patched config, once every check that can refuse it has passed. */
    const patched = async (db: PoolClient | typeof pool, current: SourceRow): Promise<SourceConfig> => {
      const merged = mergePatch(toYamlSource(current.config), patch) as Record<string, unknown>;
      merged.url = restoreUrl(merged.url, current.config.url);
      const config = validateSource(merged);
      checkSlotFree(config, await listSources(db));
      await checkConsumersStillValid(db, config);
      return config;
    };
    const before = await existing(pool, name);
    const prepared = await patched(pool, before);
    if (captureChanged(before.config, prepared)) await prepare(prepared);
    const row = await changeConfig(deps, async (db) => {
      // FOR UPDATE: no consumer attaches while the source's tables are checked.
      const current = await existing(db, name, true);
      const config = await patched(db, current);
      // Changed by another call meanwhile: its publication, again (no slot: see prepare).
      if (captureChanged(current.config, config) && JSON.stringify(config) !== JSON.stringify(prepared)) await prepare(config, { slot: false });
      await q.updateSource(db, config);
      return existing(db, name);
    });
    return present(row);
  });

  app.delete('/sources/:name', { schema: sourceSchemas.delete }, async (request, reply) => {
    const { name } = request.params;
    await changeConfig(deps, async (db) => {
      await existing(db, name, true);
      const refusal = await usedBy(db, 'Source', name);
      if (refusal) throw conflict(refusal);
      await q.deleteSource(db, name);
    });
    return reply.status(204).send(null);
  });

  /** Can capture start with this config? Connection, role, publication and slot, then its tables. */
  async function testConnection(config: SourceConfig) {
    // No url: the source is the buffer's own database.
    const url = config.url || String(pool.options.connectionString);
    const check = await checkSource(url, config);
    const problems: string[] = [];
    if (check.error) problems.push(scrubPassword(check.error, url));
    if (check.wal_level !== undefined && check.wal_level !== 'logical') {
      problems.push(`wal_level is "${check.wal_level}"; logical replication needs wal_level = logical (and a server restart)`);
    }
    if (check.replication_role === false) problems.push('the role has neither REPLICATION nor superuser (ALTER ROLE … WITH REPLICATION)');
    if (!config.create_if_missing) {
      if (check.publication_exists === false) problems.push(`publication "${config.publication}" does not exist and create_if_missing is off`);
      if (check.slot_exists === false) problems.push(`replication slot "${config.slot}" does not exist and create_if_missing is off`);
    }
    let tables: SourceTable[] | undefined;
    if (check.connected && !check.error) {
      try {
        const read = await readSourceTables(url, config);
        tables = read.tables;
        problems.push(...read.problems);
      } catch (err) {
        problems.push(scrubPassword((err as Error).message, url));
      }
    }
    const { error: _error, ...facts } = check;
    return { ok: check.connected && problems.length === 0, ...facts, ...(tables && { tables }), problems };
  }

  app.post('/sources/:name/test', { schema: sourceSchemas.test }, async (request) => testConnection((await existing(pool, request.params.name)).config));

  // Before a source is saved (the console's "Test connection"): the same body
  // as POST /sources, validated the same way, and nothing is stored or created.
  app.post('/sources/test', { schema: sourceSchemas.testNew, ...bodyByLoader }, async (request) => {
    if (!isObject(request.body)) throw notAnObject();
    return testConnection(validateSource(request.body));
  });

  app.get('/sources/:name/tables', { schema: sourceSchemas.tables }, async (request) => {
    const { config } = await existing(pool, request.params.name);
    const url = config.url || String(pool.options.connectionString);
    try {
      return { data: (await readSourceTables(url, config)).tables };
    } catch (err) {
      throw new ApiError(422, `Cannot read the tables of source "${config.name}": ${scrubPassword((err as Error).message, url)}. POST /api/sources/${config.name}/test says more.`);
    }
  });
}

/** Two sources on one database cannot share a replication slot (as the YAML loader checks). */
function checkSlotFree(config: SourceConfig, sources: SourceRow[]) {
  const clash = sources.find(
    (s) => s.name !== config.name && s.config.slot === config.slot && (s.config.url ?? '') === (config.url ?? ''),
  );
  if (clash) throw invalid({ slot: [`"${config.slot}" is already used by source "${clash.name}" on the same database`] });
}

/** A changed source must still capture every table its consumers read. */
async function checkConsumersStillValid(db: PoolClient | Pool, source: SourceConfig) {
  const problems: string[] = [];
  // Their outbox streams are checked where streams are deleted (usedBy).
  const streams = (await listStreams(db)).map((s) => s.name);
  for (const c of await consumersOfSource(db, source.name)) {
    try {
      validateConsumer(toYamlConsumer(c.config), { sources: [source], streams });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const i of err.issues) problems.push(`consumer "${c.name}": ${i.path} ${i.reason}`);
    }
  }
  if (problems.length) throw invalid({ tables: problems }, `The change would break consumers: ${problems[0]}.`);
}
