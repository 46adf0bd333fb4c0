// /api/streams: named logs of messages applications publish. Bodies are one
// entry of the YAML `streams:` list, validated by the config loader.
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import { usedBy } from '../../api/consumers.js';
import { getStream, listStreams, logNameTaken, type StreamRow } from '../../api/streams.js';
import { toYamlStream, validateStream } from '../../config/load.js';
import * as q from '../../config/queries.js';
import type { PoolClient } from '../../db/pool.js';
import type { AppDeps } from '../deps.js';
import { conflict, invalid, notAnObject, notFound } from '../errors.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { streamSchemas } from '../schemas/resources.js';
import { loaderValidatesBody } from '../schemas/validator.js';
import { changeConfig } from './config-tx.js';
import { isObject, mergePatch } from './merge-patch.js';

/** As the config has it (durations as "7d"), with id and timestamps. */
function present(row: StreamRow) {
  return { id: row.id, ...toYamlStream({ ...row.config, name: row.name }), created_at: row.created_at, updated_at: row.updated_at };
}

export async function streamRoutes(parent: FastifyInstance, opts: { deps: AppDeps; compiler: FastifySchemaCompiler<unknown> }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { deps } = opts;
  const { pool } = deps;
  const bodyByLoader = loaderValidatesBody(opts.compiler);

  async function existing(db: PoolClient | typeof pool, name: string, forUpdate = false): Promise<StreamRow> {
    const row = await getStream(db, name, forUpdate);
    if (!row) throw notFound(`Stream "${name}"`);
    return row;
  }

  app.get('/streams', { schema: streamSchemas.list }, async () => ({ data: (await listStreams(pool)).map(present) }));

  app.get('/streams/:name', { schema: streamSchemas.get }, async (request) => present(await existing(pool, request.params.name)));

  app.post('/streams', { schema: streamSchemas.create, ...bodyByLoader }, async (request, reply) => {
    if (!isObject(request.body)) throw notAnObject();
    const config = validateStream(request.body);
    const row = await changeConfig(deps, async (db) => {
      const taken = await logNameTaken(db, config.name);
      if (taken) throw conflict(`A ${taken} named "${config.name}" already exists (sources and streams share names: a consumer names one of them).`);
      await q.insertStream(db, config);
      return existing(db, config.name);
    });
    return reply.status(201).send(present(row));
  });

  app.patch('/streams/:name', { schema: streamSchemas.update, ...bodyByLoader }, async (request) => {
    const { name } = request.params;
    const patch: unknown = request.body;
    if (!isObject(patch)) throw notAnObject();
    if (patch.name !== undefined && patch.name !== name) throw invalid({ name: ['cannot be changed'] });
    const row = await changeConfig(deps, async (db) => {
      const current = await existing(db, name, true);
      const config = validateStream(mergePatch(toYamlStream({ ...current.config, name }), patch));
      await q.updateStream(db, config);
      return existing(db, name);
    });
    return present(row);
  });

  app.delete('/streams/:name', { schema: streamSchemas.delete }, async (request, reply) => {
    const { name } = request.params;
    await changeConfig(deps, async (db) => {
      await existing(db, name, true);
      const refusal = await usedBy(db, 'Stream', name);
      if (refusal) throw conflict(refusal);
      await q.deleteStream(db, name);
    });
    return reply.status(204).send(null);
  });
}
