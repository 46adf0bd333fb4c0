// Webhook delivery attempts and secret rotation, for the management API:
//   GET  /consumers/:name/attempts       newest first, paged, filterable by status
//   POST /consumers/:name/rotate-secret  new secret (shown once); the old keep signing for the overlap
// Register inside the authenticated /api context: app.register(attemptsRoutes, { deps }).
import type { FastifyInstance } from 'fastify';
import * as q from '../../config/queries.js';
import { parseDuration } from '../../config/units.js';
import { getHealth, listAttempts, type AttemptRow, type HealthRow } from '../../push/attempt-queries.js';
import { webhookId } from '../../push/deliver.js';
import { rotateConsumerSecret } from '../../push/secrets.js';
import { ROTATION_OVERLAP_MS } from '../../signing/rotation.js';
import { SCOPED_READ } from '../auth.js';
import type { AppDeps } from '../deps.js';
import { ApiError, invalid } from '../errors.js';
import { errorResponses, nameParams } from '../schemas/common.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { changeConfig } from './config-tx.js';
import { existingConsumer } from './consumers.js';

const INT64_MAX = 2n ** 63n - 1n;
const MAX_OVERLAP_MS = 30 * 24 * 60 * 60 * 1000;
const date = { type: ['string', 'null'], format: 'date-time' } as const;

const attemptSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'webhook_id', 'batch_id', 'attempt', 'started_at', 'duration_ms', 'status', 'outcome', 'error', 'response_excerpt', 'message_count', 'instance_id'],
  properties: {
    id: { type: 'string', description: 'Attempt id; pass as ?cursor= to page on.' },
    webhook_id: { type: 'string', description: 'The webhook-id header sent (the same for every retry of a batch).' },
    batch_id: { type: 'string', format: 'uuid' },
    attempt: { type: 'integer', description: 'Attempt number of the batch, from 1.' },
    started_at: { type: 'string', format: 'date-time' },
    duration_ms: { type: 'integer' },
    status: { type: ['integer', 'null'], description: 'HTTP status; null when no response arrived.' },
    outcome: { type: 'string', enum: ['delivered', 'retry', 'dead_letter', 'paused'] },
    error: { type: ['string', 'null'], description: 'Why no response arrived (timeout, connection, DNS, refused address), or a note.' },
    response_excerpt: { type: ['string', 'null'], description: 'The first 4 KiB of the response body.' },
    message_count: { type: 'integer' },
    instance_id: { type: ['string', 'null'], description: 'The gateway process that made the attempt.' },
  },
} as const;

const healthSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['last_success_at', 'last_failure_at', 'first_failure_at', 'consecutive_failures', 'last_error'],
  properties: {
    last_success_at: date,
    last_failure_at: date,
    first_failure_at: { ...date, description: 'Start of the current run of failures (null after a success).' },
    consecutive_failures: { type: 'integer' },
    last_error: { type: ['string', 'null'] },
  },
} as const;

export const listAttemptsSchema = {
  summary: 'List webhook delivery attempts, newest first, a page at a time, with the endpoint health',
  tags: ['webhooks'],
  params: nameParams,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      status: { type: 'string', enum: ['succeeded', 'failed'], description: 'succeeded: 2xx; failed: everything else.' },
      http_status: { type: 'integer', minimum: 100, maximum: 599 },
      limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
      cursor: { type: 'string', pattern: '^\\d{1,19}$', description: 'next_cursor of the previous page.' },
    },
  },
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['data', 'next_cursor', 'health'],
      properties: {
        data: { type: 'array', items: attemptSchema },
        next_cursor: { type: ['string', 'null'], description: 'Pass as ?cursor= for the next page; null on the last page.' },
        health: healthSchema,
      },
    },
    ...errorResponses,
  },
} as const;

export const rotateSecretSchema = {
  summary: 'Rotate the webhook signing secret: the new one signs at once, the old ones keep signing for the overlap',
  tags: ['webhooks'],
  params: nameParams,
  body: {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: {
      overlap: { type: 'string', description: 'How long older secrets keep signing, e.g. "24h" (default), "0s".' },
      scheme: {
        type: 'string',
        enum: ['v1', 'v1a'],
        description: 'v1: a new HMAC-SHA256 "whsec_" secret; v1a: a new ed25519 "whsk_" key (receivers verify with public_key). Default: the scheme of the current secret.',
      },
    },
  },
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['secret', 'public_key', 'secrets'],
      properties: {
        secret: { type: 'string', description: 'The new secret, in full: shown in this response only.' },
        public_key: {
          type: ['string', 'null'],
          description: 'For a v1a key, its "whpk_" public key, which receivers verify with (not a secret); null for v1.',
        },
        secrets: {
          type: 'array',
          description: 'Every secret that signs, newest first, masked.',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['secret', 'expires_at'],
            properties: { secret: { type: 'string' }, expires_at: { ...date, description: 'When it stops signing; null: no expiry.' } },
          },
        },
      },
    },
    ...errorResponses,
  },
} as const;

const iso = (d: Date | null) => d?.toISOString() ?? null;

function presentAttempt(a: AttemptRow) {
  return {
    id: a.id,
    webhook_id: webhookId(a.batch_id),
    batch_id: a.batch_id,
    attempt: a.attempt,
    started_at: a.started_at.toISOString(),
    duration_ms: a.duration_ms,
    status: a.status,
    outcome: a.outcome,
    error: a.error,
    response_excerpt: a.response_excerpt,
    message_count: a.message_count,
    instance_id: a.instance_id,
  };
}

function presentHealth(h: HealthRow | null) {
  return {
    last_success_at: iso(h?.last_success_at ?? null),
    last_failure_at: iso(h?.last_failure_at ?? null),
    first_failure_at: iso(h?.first_failure_at ?? null),
    consecutive_failures: h?.consecutive_failures ?? 0,
    last_error: h?.last_error ?? null,
  };
}

const notWebhook = (name: string) => new ApiError(409, `Consumer "${name}" is a pull consumer; only webhook consumers have attempts and secrets.`);

export async function attemptsRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { deps } = opts;

  app.get('/consumers/:name/attempts', { schema: listAttemptsSchema, config: SCOPED_READ }, async (request) => {
    const consumer = await existingConsumer(deps.pool, request.params.name);
    if (consumer.config.kind !== 'webhook') throw notWebhook(consumer.name);
    const { status, http_status, limit = 50, cursor } = request.query;
    if (cursor !== undefined && BigInt(cursor) > INT64_MAX) throw invalid({ cursor: [`"${cursor}" is not an attempt id`] });
    const [rows, health] = await Promise.all([
      listAttempts(deps.pool, consumer.id, { status, httpStatus: http_status, before: cursor, limit }),
      getHealth(deps.pool, consumer.id),
    ]);
    return {
      data: rows.map(presentAttempt),
      next_cursor: rows.length === limit ? rows[rows.length - 1].id : null,
      health: presentHealth(health),
    };
  });

  app.post('/consumers/:name/rotate-secret', { schema: rotateSecretSchema }, async (request) => {
    const text = request.body?.overlap;
    const overlapMs = text === undefined ? ROTATION_OVERLAP_MS : parseDuration(text);
    if (overlapMs === undefined || overlapMs > MAX_OVERLAP_MS) {
      throw invalid({ overlap: ['must be a duration such as "24h" or "90m", at most 30d'] });
    }
    const { name } = request.params;
    const rotated = await changeConfig(deps, async (db) => {
      const consumer = await existingConsumer(db, name, true);
      if (consumer.config.kind !== 'webhook' || !consumer.config.webhook) throw notWebhook(name);
      // No scheme given: the consumer's current one (rotateConsumerSecret's default).
      const out = await rotateConsumerSecret(db, consumer.id, consumer.config, { overlapMs, scheme: request.body?.scheme });
      await q.updateConsumer(db, out.config);
      return out;
    });
    return { secret: rotated.secret, public_key: rotated.publicKey, secrets: rotated.secrets };
  });
}
