// /api/consumers/:name/dead-letters: list (paged by message key), retry, discard.
import type { FastifyInstance } from 'fastify';
import { discardDeadLetters, listDeadLetters, retryDeadLetters, type DeadLetter, type MessageKey } from '../../buffer/dead-letters.js';
import { rendererFor } from '../../render/render.js';
import { SCOPED_READ } from '../auth.js';
import type { AppDeps } from '../deps.js';
import { invalid } from '../errors.js';
import { MESSAGE_KEY_RE, discardDeadLettersSchema, listDeadLettersSchema, retryDeadLettersSchema } from '../schemas/dead-letters.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { existingConsumer } from './consumers.js';

const INT64_MAX = 2n ** 63n - 1n;
const INT32_MAX = 2 ** 31 - 1;

/** "<commit_lsn>:<commit_idx>" → key; out-of-range numbers are a 422, not a Postgres error. */
function parseKey(id: string, field: string): MessageKey {
  const m = MESSAGE_KEY_RE.exec(id);
  if (!m || BigInt(m[1]) > INT64_MAX || Number(m[2]) > INT32_MAX) throw invalid({ [field]: [`"${id}" is not a message key`] });
  return { commit_lsn: m[1], commit_idx: Number(m[2]) };
}

const keyOf = (d: MessageKey) => `${d.commit_lsn}:${d.commit_idx}`;

/** `{"ids": [...]}` or `{"all": true}`, never both or neither. */
function selected(body: { ids?: string[]; all?: boolean }): MessageKey[] | 'all' {
  if ((body.ids === undefined) === (body.all === undefined)) {
    throw invalid({ body: ['must have either "ids" or "all": true'] }, 'Send either {"ids": [...]} or {"all": true}.');
  }
  return body.all ? 'all' : body.ids!.map((id, i) => parseKey(id, `ids.${i}`));
}

/**
 * One dead letter as JSON text. The message is spliced in as stored, never
 * parsed: its numbers are exact (int8, numeric) and must stay so. It is the
 * envelope as captured, before any transform: a message the transform refused
 * has no output, and the input is what a user needs to see why.
 */
function deadLetterJson(d: DeadLetter, envelope: (payload: string) => string): string {
  const meta = JSON.stringify({
    id: keyOf(d),
    group_key: d.group_key,
    deliver_count: d.deliver_count,
    last_delivered_at: d.last_delivered_at?.toISOString() ?? null,
    last_error: d.last_error,
    created_at: d.created_at.toISOString(),
  });
  return `${meta.slice(0, -1)},"message":${envelope(d.payload)}}`;
}

export async function deadLetterRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { pool } = opts.deps;

  app.get('/consumers/:name/dead-letters', { schema: listDeadLettersSchema, config: SCOPED_READ }, async (request, reply) => {
    const consumer = await existingConsumer(pool, request.params.name);
    const { limit = 100, cursor } = request.query;
    const after = cursor === undefined ? undefined : parseKey(cursor, 'cursor');
    const rows = await listDeadLetters(pool, consumer.id, { limit, after });
    const next = rows.length === limit ? JSON.stringify(keyOf(rows[rows.length - 1])) : 'null';
    const { envelope } = rendererFor({
      id: consumer.id,
      name: consumer.name,
      annotations: consumer.config.annotations,
      database: opts.deps.consumers.get(consumer.id)?.database,
      config: { message_kind: consumer.config.message_kind },
    });
    // Already JSON: sent as is, so the serializer does not re-encode the messages.
    return reply
      .type('application/json; charset=utf-8')
      .send(`{"data":[${rows.map((d) => deadLetterJson(d, envelope)).join(',')}],"next_cursor":${next}}` as never);
  });

  app.post('/consumers/:name/dead-letters/retry', { schema: retryDeadLettersSchema }, async (request) => {
    const consumer = await existingConsumer(pool, request.params.name);
    return { success: true, retried: await retryDeadLetters(pool, consumer.id, selected(request.body)) };
  });

  app.post('/consumers/:name/dead-letters/discard', { schema: discardDeadLettersSchema }, async (request) => {
    const consumer = await existingConsumer(pool, request.params.name);
    return { success: true, discarded: await discardDeadLetters(pool, consumer.id, selected(request.body)) };
  });
}
