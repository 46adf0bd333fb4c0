// /api/consumers/{name}/backfills: start, watch and cancel backfills. The
// work itself runs in the process that captures the consumer's source
// (src/backfill/runner.ts); these routes only write and read its rows.
import type { FastifyInstance } from 'fastify';
import { getSource } from '../../api/sources.js';
import { planBackfills } from '../../backfill/create.js';
import { presentBackfill } from '../../backfill/present.js';
import { cancelBackfill, createBackfills, getBackfill, listBackfills } from '../../backfill/queries.js';
import { qualifyTable } from '../../config/normalise.js';
import { SCOPED_READ } from '../auth.js';
import type { AppDeps } from '../deps.js';
import { conflict, invalid, notFound } from '../errors.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { backfillSchemas } from '../schemas/backfills.js';
import { existingConsumer } from './consumers.js';

export async function backfillRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { pool } = opts.deps;
  const bufferUrl = String(pool.options.connectionString);

  app.post('/consumers/:name/backfills', { schema: backfillSchemas.create }, async (request, reply) => {
    const consumer = await existingConsumer(pool, request.params.name);
    const body = request.body ?? {};
    const sourceUrl = (await getSource(pool, consumer.config.source))?.config.url || bufferUrl;
    const planned = await planBackfills(
      consumer,
      { ...body, table: body.table === undefined ? undefined : qualifyTable(body.table) },
      sourceUrl,
    );
    if (!planned.ok) throw invalid(planned.issues);
    const created = await createBackfills(pool, planned.backfills);
    if ('running' in created) {
      throw conflict(`A backfill of ${created.running} is already running for consumer "${consumer.name}": wait for it, or cancel it (DELETE …/backfills/{id}) first.`);
    }
    opts.deps.backfillsCreated?.(consumer.config.source);
    const rows = await listBackfills(pool, consumer.id);
    return reply.status(201).send({ data: rows.filter((r) => created.ids.includes(r.id)).map((r) => presentBackfill(r)) });
  });

  app.get('/consumers/:name/backfills', { schema: backfillSchemas.list, config: SCOPED_READ }, async (request) => {
    const consumer = await existingConsumer(pool, request.params.name);
    return { data: (await listBackfills(pool, consumer.id)).map((r) => presentBackfill(r)) };
  });

  app.get('/consumers/:name/backfills/:id', { schema: backfillSchemas.get, config: SCOPED_READ }, async (request) => {
    const consumer = await existingConsumer(pool, request.params.name);
    const row = await getBackfill(pool, request.params.id);
    if (!row || row.consumer_id !== consumer.id) throw notFound(`Backfill ${request.params.id} of consumer "${consumer.name}"`);
    return presentBackfill(row);
  });

  app.delete('/consumers/:name/backfills/:id', { schema: backfillSchemas.cancel }, async (request) => {
    const consumer = await existingConsumer(pool, request.params.name);
    const row = await getBackfill(pool, request.params.id);
    if (!row || row.consumer_id !== consumer.id) throw notFound(`Backfill ${request.params.id} of consumer "${consumer.name}"`);
    if (!(await cancelBackfill(pool, row.id))) throw conflict(`Backfill ${row.id} is not running (it is ${row.state}).`);
    return presentBackfill((await getBackfill(pool, row.id))!);
  });
}
