// GET /api/consumers/:name/messages: the latest retained changes routed to a
// consumer, newest first, each as the consumer is sent it (the render module:
// its message kind, metadata and transform) with its delivery status. A peek:
// it reads the log and the consumer's delivery state and changes neither.
import type { FastifyInstance } from 'fastify';
import { peekMessages, type PeekRow } from '../../log/peek.js';
import { FilterUnusableError, consumerFilter } from '../../pipeline/filter/consumer-filter.js';
import { TransformUnavailable, rendererFor, type Rendered } from '../../render/render.js';
import { SCOPED_READ } from '../auth.js';
import type { AppDeps } from '../deps.js';
import { ApiError, conflict } from '../errors.js';
import { peekSchema } from '../schemas/console.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { existingConsumer } from './consumers.js';

/**
 * One item as JSON text. The rendered message is spliced in as rendered,
 * never parsed again: its numbers (int8, numeric) must keep every digit.
 */
function itemJson(row: PeekRow, rendered: Rendered): string {
  const meta = JSON.stringify({
    commit_lsn: row.commit_lsn,
    commit_idx: row.commit_idx,
    committed_at: row.committed_at?.toISOString() ?? null,
    status: row.status,
  });
  const tail = rendered.ok ? `"message":${rendered.text}` : `"error":${JSON.stringify(rendered.error)}`;
  return `${meta.slice(0, -1)},${tail}}`;
}

export async function messagesRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { deps } = opts;

  app.get('/consumers/:name/messages', { schema: peekSchema, config: SCOPED_READ }, async (request, reply) => {
    const row = await existingConsumer(deps.pool, request.params.name);
    // The registry's record, as delivery uses it: the same compiled filter
    // and renderer (every config change reloads it before answering).
    const consumer = deps.consumers.get(row.id);
    if (!consumer) throw new ApiError(503, `Consumer "${row.name}" is not loaded in this gateway process yet; try again in a moment.`);
    let filter;
    try {
      filter = consumerFilter(consumer);
    } catch (err) {
      if (err instanceof FilterUnusableError) throw conflict(`The consumer's filter cannot run, so what it would be sent is unknown: ${err.message}`);
      throw err;
    }
    const rows = await peekMessages(deps.pool, consumer.id, request.query.limit ?? 20, filter);
    let rendered: Rendered[];
    try {
      rendered = await rendererFor(consumer).render(rows.map((r) => r.payload));
    } catch (err) {
      if (err instanceof TransformUnavailable) throw new ApiError(503, `${err.message}; try again in a moment.`);
      throw err;
    }
    // Already JSON: sent as is, so the serializer does not re-encode the messages.
    return reply
      .type('application/json; charset=utf-8')
      .send(`{"data":[${rows.map((r, i) => itemJson(r, rendered[i])).join(',')}]}` as never);
  });
}
