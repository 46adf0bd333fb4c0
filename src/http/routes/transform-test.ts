// POST /api/consumers/:name/transform/test: a filter and a transform tried on
// one message (a sample, or the latest retained change of a table) before they
// are saved. Nothing is saved or delivered.
import type { FastifyInstance } from 'fastify';
import { normaliseFilter, qualifyTable } from '../../config/normalise.js';
import { formatPath, type RawIssue } from '../../config/errors.js';
import type { YamlConsumer } from '../../config/schema.js';
import type { ConsumerFilter } from '../../config/types.js';
import { latestChange, LATEST_LOOKBACK } from '../../log/latest.js';
import { FilterError } from '../../pipeline/filter/compile.js';
import { checkTransform, TransformError, type TransformSpec } from '../../pipeline/transform/compile.js';
import { rendererFor } from '../../render/render.js';
import { tryOut } from '../../render/try-out.js';
import type { AppDeps } from '../deps.js';
import { ApiError, invalid } from '../errors.js';
import { logTables } from '../../pipeline/route/tables.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { consumerSchemas } from '../schemas/resources.js';
import { checkedFilterColumns, existingConsumer } from './consumers.js';

// Each try of a function starts a sandbox thread: a few at once, not a flood.
const MAX_CONCURRENT_TRIES = 4;

export async function transformTestRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { pool, consumers } = opts.deps;
  const bufferUrl = String(pool.options.connectionString);
  let running = 0;

  app.post('/consumers/:name/transform/test', { schema: consumerSchemas.transformTest }, async (request, reply) => {
    const consumer = await existingConsumer(pool, request.params.name);
    const body = request.body ?? {};
    const { config } = consumer;
    if (body.message !== undefined && body.table !== undefined) {
      throw invalid({ table: ['give either "message" or "table", not both'] });
    }
    const transform = (body.transform as TransformSpec | undefined) ?? config.transform;
    if (body.transform !== undefined) checkedTransform(body.transform);
    const filter = body.filter ? checkedFilter(body.filter as YamlConsumer['filter'], config.tables) : config.filter;
    const columns = filter?.where ? await checkedFilterColumns(pool, { source: config.source, filter }, bufferUrl) : null;

    let envelope: string;
    let from: string;
    let message: Record<string, unknown>;
    if (body.message !== undefined) {
      message = body.message as Record<string, unknown>;
      envelope = JSON.stringify(message);
      from = '{"kind":"sample"}';
    } else {
      const table = body.table === undefined ? undefined : qualifyTable(body.table);
      if (table !== undefined && !config.tables.includes(table)) throw invalid({ table: [`"${table}" is not one of this consumer's tables`] });
      const latest = await latestChange(pool, consumer.id, table ? [table] : logTables(config));
      if (!latest) {
        const which = table ?? config.tables.join(', ');
        throw invalid(
          { [table ? 'table' : 'message']: [`no change of ${which} among the last ${LATEST_LOOKBACK.toLocaleString('en')} retained`] },
          `No retained change of ${which} to try it on; send a sample "message" instead.`,
        );
      }
      const record = consumers.get(consumer.id);
      const { envelope: wrap } = rendererFor({ id: consumer.id, name: consumer.name, annotations: config.annotations, database: record?.database, config: { message_kind: config.message_kind } });
      envelope = wrap(latest.payload);
      message = JSON.parse(latest.payload) as Record<string, unknown>;
      from = `{"kind":"log","commit_lsn":"${latest.commit_lsn}","commit_idx":${latest.commit_idx}}`;
    }
    const meta = (message.metadata ?? {}) as Record<string, unknown>;
    const table = typeof meta.table_schema === 'string' && typeof meta.table_name === 'string' ? `${meta.table_schema}.${meta.table_name}` : null;
    const action = typeof message.action === 'string' ? message.action : null;

    if (running >= MAX_CONCURRENT_TRIES) throw new ApiError(429, `${MAX_CONCURRENT_TRIES} transform tests are already running; retry in a moment.`);
    running++;
    let out;
    try {
      out = await tryOut({ envelope, table, action, filter, columns, transform });
    } catch (e) {
      if (e instanceof TransformError) throw transformInvalid(e);
      if (e instanceof SyntaxError || e instanceof FilterError) {
        throw invalid({ message: [`cannot be read as a change envelope: ${e.message}`] });
      }
      throw e;
    } finally {
      running--;
    }
    // Built as text: the messages keep their exact digits (int8, numeric).
    const text =
      `{"input":${envelope},"from":${from},"filter":${JSON.stringify({ passed: out.passed, reason: out.reason })},` +
      `"output":${out.output ?? 'null'},"error":${JSON.stringify(out.error)}}`;
    return reply.type('application/json; charset=utf-8').serializer((p) => p as string).send(text as never);
  });
}

function checkedTransform(spec: unknown): void {
  try {
    checkTransform(spec);
  } catch (e) {
    if (e instanceof TransformError) throw transformInvalid(e);
    throw e;
  }
}

/** 422 at transform (or transform.function, with the line and column of a syntax error). */
function transformInvalid(e: TransformError): ApiError {
  if (e.line === undefined) return invalid({ transform: [e.message] });
  return invalid({ 'transform.function': [`line ${e.line}, column ${e.column}: ${e.message}`] });
}

/** The body's filter as a consumer's filter is checked when saved (keys qualified, each one of its tables, parsing). */
function checkedFilter(f: YamlConsumer['filter'], tables: string[]): ConsumerFilter | undefined {
  const issues: RawIssue[] = [];
  const { filter } = normaliseFilter(f, tables, ['filter'], issues);
  if (issues.length > 0) {
    const errors: Record<string, string[]> = {};
    for (const i of issues) (errors[formatPath(i.segments)] ??= []).push(i.reason);
    throw invalid(errors);
  }
  return filter;
}
