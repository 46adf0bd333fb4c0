// /api/consumers: pull and webhook consumers. Bodies are one entry of the YAML
// `consumers:` list, validated by the config loader against the stored sources.
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import { getConsumer, listConsumers, setConsumerState, type ConsumerRow } from '../../api/consumers.js';
import { getSource, listSources } from '../../api/sources.js';
import { listStreams } from '../../api/streams.js';
import { logActions, logTables } from '../../pipeline/route/tables.js';
import { consumerStats } from '../../buffer/dead-letters.js';
import { toYamlConsumer, validateConsumer } from '../../config/load.js';
import { qualifyTable } from '../../config/normalise.js';
import { formatPath } from '../../config/errors.js';
import * as q from '../../config/queries.js';
import type { ConsumerConfig } from '../../config/types.js';
import { withTransaction, type Pool, type PoolClient } from '../../db/pool.js';
import { parseLogPoint } from '../../log/points.js';
import { checkWhereFilters } from '../../pipeline/filter/save-check.js';
import { currentWal, rewindConsumer, setStartPosition } from '../../log/positions.js';
import { createReplay, dryRunReplay, listReplays, replayStarted, type ReplayQuery } from '../../log/replay.js';
import { generateSecret } from '../../signing/secrets.js';
import { planBackfills } from '../../backfill/create.js';
import { insertBackfills } from '../../backfill/queries.js';
import { SCOPED_READ, mayRead } from '../auth.js';
import type { AppDeps } from '../deps.js';
import { conflict, invalid, notAnObject, notFound } from '../errors.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { consumerSchemas } from '../schemas/resources.js';
import { loaderValidatesBody } from '../schemas/validator.js';
import { changeConfig } from './config-tx.js';
import { restoreHeaders, restoreSecrets } from './masking.js';
import { isObject, mergePatch } from './merge-patch.js';
import { presentConsumer } from './present.js';

const REWIND_TO = 'must be "earliest", an RFC 3339 timestamp such as "2026-12-01T09:30:00Z", or an LSN such as "16/B374D848"';

export async function existingConsumer(db: Pool | PoolClient, name: string, forUpdate = false): Promise<ConsumerRow> {
  const row = await getConsumer(db, name, forUpdate);
  if (!row) throw notFound(`Consumer "${name}"`);
  return row;
}

/** Validated against every stored source and stream, so a wrong name gets a "did you mean". */
async function validateAgainstSources(db: PoolClient, body: unknown): Promise<ConsumerConfig> {
  const sources = (await listSources(db)).map((s) => s.config);
  const streams = (await listStreams(db)).map((s) => s.name);
  return validateConsumer(body, { sources, streams });
}

/**
 * Its where filters checked against the source's columns (422 naming the
 * table and the character, nothing saved), and the types stored with it.
 */
async function storeFilterColumns(db: PoolClient, config: ConsumerConfig, bufferUrl: string): Promise<void> {
  await q.setFilterColumns(db, config.name, await checkedFilterColumns(db, config, bufferUrl));
}

/** The where filters' column types from the source; a 422 at filter.where["<table>"] with the character when one does not compile. */
export async function checkedFilterColumns(db: Pool | PoolClient, config: Pick<ConsumerConfig, 'source' | 'filter'>, bufferUrl: string) {
  // No where filter (a stream's consumer never has one): no source to ask.
  if (!config.filter?.where) return null;
  const source = (await getSource(db, config.source))!.config;
  const check = await checkWhereFilters(config, source.url || bufferUrl);
  if (!check.ok) {
    const errors: Record<string, string[]> = {};
    for (const i of check.issues) (errors[formatPath(['filter', 'where', i.table])] ??= []).push(i.reason);
    throw invalid(errors);
  }
  return check.columns;
}

export async function consumerRoutes(parent: FastifyInstance, opts: { deps: AppDeps; compiler: FastifySchemaCompiler<unknown> }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { deps } = opts;
  const { pool } = deps;
  const bodyByLoader = loaderValidatesBody(opts.compiler);

  // A scoped token sees its own consumers only (SCOPED_READ routes: src/http/auth.ts).
  app.get('/consumers', { schema: consumerSchemas.list, config: SCOPED_READ }, async (request) => ({
    data: (await listConsumers(pool)).filter((c) => mayRead(request.principal, c.name)).map((c) => presentConsumer(c)),
  }));

  app.get('/consumers/:name', { schema: consumerSchemas.get, config: SCOPED_READ }, async (request) =>
    presentConsumer(await existingConsumer(pool, request.params.name)),
  );

  app.post('/consumers', { schema: consumerSchemas.create, ...bodyByLoader }, async (request, reply) => {
    const body: unknown = request.body;
    if (!isObject(body)) throw notAnObject();
    // A webhook consumer without secrets gets one, shown in this response only.
    const secrets = isObject(body.webhook) ? body.webhook.secrets : null;
    const generated = body.kind === 'webhook' && (secrets === undefined || (Array.isArray(secrets) && secrets.length === 0));
    const withSecret = generated ? mergePatch(body, { webhook: { secrets: [generateSecret()] } }) : body;
    const row = await changeConfig(deps, async (db) => {
      const config = await validateAgainstSources(db, withSecret);
      if (await getConsumer(db, config.name)) throw conflict(`A consumer named "${config.name}" already exists.`);
      const id = await q.insertConsumer(db, config);
      await storeFilterColumns(db, config, String(pool.options.connectionString));
      // Where it starts in the log, in the same transaction: it is never seen at another position.
      const point = parseLogPoint(config.start ?? 'now')!;
      // A stream's consumer: "now" is the stream's tail, as the insert left it.
      const source = config.stream === undefined ? (await getSource(db, config.source))!.config : null;
      const now = point.kind === 'now' && source ? await currentWal(source, String(pool.options.connectionString)) : null;
      await setStartPosition(db, { id, source: config.source }, point, now);
      if (config.backfill) {
        // Checked and started with the consumer: a refusal saves neither.
        const planned = await planBackfills({ id, config }, {}, source?.url || String(pool.options.connectionString));
        if (!planned.ok) throw invalid({ backfill: Object.values(planned.issues).flat() });
        await insertBackfills(db, planned.backfills);
      }
      return existingConsumer(db, config.name);
    });
    return reply.status(201).send(presentConsumer(row, generated));
  });

  app.patch('/consumers/:name', { schema: consumerSchemas.update, ...bodyByLoader }, async (request) => {
    const { name } = request.params;
    const patch: unknown = request.body;
    if (!isObject(patch)) throw notAnObject();
    if (patch.name !== undefined && patch.name !== name) throw invalid({ name: ['cannot be changed'] });
    const row = await changeConfig(deps, async (db) => {
      const current = await existingConsumer(db, name, true);
      if (patch.kind !== undefined && patch.kind !== current.config.kind) {
        throw invalid({ kind: ['cannot be changed; create a new consumer of the other kind'] });
      }
      // Sent back as read (GET → edit → PATCH) is fine; another value would do nothing.
      if (patch.start !== undefined && patch.start !== (current.config.start ?? null)) {
        throw invalid({ start: [`applies only when a consumer is created; to deliver retained changes again, POST /api/consumers/${name}/rewind`] });
      }
      const merged = mergePatch(toYamlConsumer(current.config), patch) as Record<string, unknown>;
      // A transform is one value, replaced whole: merged key by key, a new
      // {"path": …} over a stored {"function": …} would hold both forms.
      if (isObject(patch.transform)) merged.transform = patch.transform;
      const stored = current.config.webhook;
      if (isObject(merged.webhook) && stored) {
        // Masked values sent back (GET → edit → PATCH) mean "keep what is stored".
        merged.webhook.secrets = restoreSecrets(merged.webhook.secrets, stored.secrets);
        merged.webhook.headers = restoreHeaders(merged.webhook.headers, stored.headers);
      }
      const config = await validateAgainstSources(db, merged);
      await q.updateConsumer(db, config);
      // Checked again only when it changed: an unrelated edit needs no source.
      if (JSON.stringify(config.filter?.where) !== JSON.stringify(current.config.filter?.where)) {
        await storeFilterColumns(db, config, String(pool.options.connectionString));
      }
      return existingConsumer(db, name);
    });
    return presentConsumer(row);
  });

  app.post('/consumers/:name/pause', { schema: consumerSchemas.pause }, async (request) => {
    const reason = request.body?.reason ?? 'paused through the API';
    const row = await setState(request.params.name, 'paused', reason);
    // One line per state change, as the dispatcher logs the ones its endpoint causes.
    request.log.info({ consumer: row.name, state: 'paused', reason }, 'consumer paused');
    return presentConsumer(row);
  });

  app.post('/consumers/:name/resume', { schema: consumerSchemas.resume }, async (request) => {
    const row = await setState(request.params.name, 'active', null);
    request.log.info({ consumer: row.name, state: 'active' }, 'consumer resumed');
    return presentConsumer(row);
  });

  app.delete('/consumers/:name', { schema: consumerSchemas.delete }, async (request, reply) => {
    const { name } = request.params;
    await changeConfig(deps, async (db) => {
      await existingConsumer(db, name, true);
      await q.deleteConsumer(db, name);
    });
    return reply.status(204).send(null);
  });

  app.post('/consumers/:name/rewind', { schema: consumerSchemas.rewind }, async (request) => {
    const { name } = request.params;
    const point = parseLogPoint(request.body.to);
    if (!point || point.kind === 'now') throw invalid({ to: [REWIND_TO] });
    return withTransaction(pool, async (db) => {
      // FOR UPDATE: not deleted or moved to another source meanwhile.
      const consumer = await existingConsumer(db, name, true);
      const { source } = consumer.config;
      return rewindConsumer(db, { id: consumer.id, source, tables: logTables(consumer.config), actions: logActions(consumer.config) }, point);
    });
  });

  app.post('/consumers/:name/replay', { schema: consumerSchemas.replay }, async (request, reply) => {
    const { name } = request.params;
    const { dry_run: dryRun, ...body } = request.body ?? {};
    const query: ReplayQuery = { ...body, tables: body.tables?.map(qualifyTable) };
    if (body.where && typeof body.where === 'object') {
      query.where = Object.fromEntries(Object.entries(body.where).map(([t, e]) => [qualifyTable(t), e]));
    }
    const bufferUrl = String(pool.options.connectionString);
    const out = await withTransaction(pool, async (db) => {
      // FOR UPDATE: not deleted or moved to another source meanwhile.
      const consumer = await existingConsumer(db, name, true);
      // A replay selects a source's changes by table and row (where); a stream has neither.
      if (consumer.config.stream !== undefined) {
        throw invalid({ name: [`reads stream "${consumer.config.stream}": replay by query is for consumers of sources; to deliver its messages again, POST /api/consumers/${name}/rewind`] });
      }
      const c = { id: consumer.id, name, source: consumer.config.source, tables: logTables(consumer.config) };
      const sourceUrl = (await getSource(db, c.source))!.config.url || bufferUrl;
      if (dryRun) return { dry: await dryRunReplay(db, c, query, sourceUrl) } as const;
      const replay = await createReplay(db, c, query, sourceUrl);
      await db.query("SELECT pg_notify('sluice_messages', $1)", [consumer.id]);
      return { replay, consumerId: consumer.id } as const;
    });
    // Answered after the commit: a receive that follows the answer sees the replay.
    if ('dry' in out && out.dry) {
      const d = out.dry;
      // The stored messages as they are (int8 and numeric digits intact): built, not re-serialised.
      const body = `{"dry_run":true,"matched":${d.matched},"walked":${d.walked},"complete":${d.complete},"first":[${d.first.join(',')}]}`;
      return reply.status(200).type('application/json; charset=utf-8').serializer((p) => p as string).send(body as never);
    }
    replayStarted(out.consumerId);
    return reply.status(202).send(out.replay);
  });

  app.get('/consumers/:name/replays', { schema: consumerSchemas.replays, config: SCOPED_READ }, async (request) => {
    const consumer = await existingConsumer(pool, request.params.name);
    return { data: await listReplays(pool, consumer.id) };
  });

  app.get('/consumers/:name/stats', { schema: consumerSchemas.stats, config: SCOPED_READ }, async (request) => {
    const consumer = await existingConsumer(pool, request.params.name);
    return consumerStats(pool, consumer.id, request.query.scan_limit);
  });

  async function setState(name: string, state: 'active' | 'paused', reason: string | null): Promise<ConsumerRow> {
    return changeConfig(deps, async (db) => {
      if (!(await setConsumerState(db, name, state, reason))) throw notFound(`Consumer "${name}"`);
      return existingConsumer(db, name);
    });
  }
}
