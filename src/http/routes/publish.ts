// POST /api/streams/{name}/messages: publish one message, or a batch
// ({"messages": [...]}), to a stream. A 2xx means every message of the batch
// is durable (or was published before under its idempotency_key); a refusal
// stores nothing of the batch.
import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../deps.js';
import { invalid, notFound, type FieldErrors } from '../errors.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { publishSchema } from '../schemas/publish.js';
import { subjectError } from '../../pipeline/route/subjects.js';
import { Publisher, UnknownStream, type PublishMessage } from '../../streams/publisher.js';

export async function publishRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { consumers } = opts.deps;
  // One per app (so per process): publishes to a stream share its writes. The
  // consumers of the stream are woken when its messages commit (their
  // long-polls and dispatchers wait on that notification).
  const publisher = new Publisher(opts.deps.pool, (stream) => consumers.all().filter((c) => c.config.stream === stream).map((c) => c.id));

  app.post('/streams/:name/messages', { schema: publishSchema }, async (request) => {
    const body = request.body as Record<string, unknown>;
    const batch = body.messages !== undefined;
    if (batch && Object.keys(body).length > 1) {
      throw invalid({ messages: ['give either one message (subject, data, …) or "messages", not both'] });
    }
    const raw = batch ? (body.messages as unknown[]) : [body];
    const errors: FieldErrors = {};
    const messages = raw.map((m, i) => checked(m as Record<string, unknown>, batch ? `messages[${i}].` : '', errors));
    if (Object.keys(errors).length > 0) throw invalid(errors);
    try {
      return { data: await publisher.publish(request.params.name, messages) };
    } catch (err) {
      if (err instanceof UnknownStream) throw notFound(`Stream "${request.params.name}"`);
      throw err;
    }
  });
}

/** One message's fields checked beyond the schema (subject syntax); problems go into `errors` under `at`. */
function checked(m: Record<string, unknown>, at: string, errors: FieldErrors): PublishMessage {
  const add = (field: string, reason: string) => (errors[at + field] ??= []).push(reason);
  if (typeof m.subject !== 'string') add('subject', 'is required');
  else {
    const why = subjectError(m.subject);
    if (why) add('subject', why);
  }
  if (!('data' in m)) add('data', 'is required (any JSON value; null included)');
  return {
    subject: m.subject as string,
    data: JSON.stringify(m.data ?? null),
    ...(m.key !== undefined && { key: m.key as string }),
    ...(m.idempotency_key !== undefined && { idempotency_key: m.idempotency_key as string }),
  };
}
