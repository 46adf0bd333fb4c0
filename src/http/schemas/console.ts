// Schemas of the routes the web console reads besides the resources' own:
// who the token is (GET /api/me), the polled overview (GET /api/overview)
// and a consumer's latest messages (GET /api/consumers/{name}/messages).
import { MINUTES } from '../../metrics/activity-queries.js';
import { errorResponses, nameParams } from './common.js';

const perMinute = {
  type: 'array',
  items: { type: 'number' },
  minItems: MINUTES,
  maxItems: MINUTES,
  description: `${MINUTES} one-minute counts, oldest first; the last is the current minute so far.`,
} as const;

export const meSchema = {
  summary: 'Who the calling token is: admin or not, its name, and the consumers a scoped token may use',
  tags: ['console'],
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['admin', 'name', 'consumers'],
      properties: {
        admin: { type: 'boolean' },
        name: { type: ['string', 'null'], description: 'The stored token\'s name; null for the bootstrap admin token.' },
        consumers: {
          type: ['array', 'null'],
          items: { type: 'string' },
          description: 'A scoped token\'s consumers; null for an admin token (every consumer).',
        },
      },
    },
    ...errorResponses,
  },
} as const;

export const SOURCE_STATUSES = ['running', 'standing_by', 'failing', 'starting', 'unknown'] as const;

export const overviewSchema = {
  summary: 'Sources and consumers at a glance, with the last hour\'s activity a minute at a time (polled by the console)',
  tags: ['console'],
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['generated_at', 'window', 'sources', 'consumers'],
      properties: {
        generated_at: { type: 'string', format: 'date-time' },
        window: {
          type: 'object',
          additionalProperties: false,
          required: ['minutes', 'bucket_seconds'],
          properties: { minutes: { type: 'integer' }, bucket_seconds: { type: 'integer' } },
        },
        sources: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'status', 'position', 'lag_bytes', 'lag_seconds', 'last_error', 'captured_per_minute'],
            properties: {
              name: { type: 'string' },
              status: { type: 'string', enum: SOURCE_STATUSES },
              position: { type: ['string', 'null'], description: 'The durable capture position, as Postgres prints an LSN.' },
              lag_bytes: { type: ['number', 'null'] },
              lag_seconds: { type: ['number', 'null'] },
              last_error: { type: ['string', 'null'] },
              captured_per_minute: perMinute,
            },
          },
        },
        consumers: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: [
              'name', 'source', 'kind', 'state', 'pending', 'pending_at_least', 'in_flight', 'dead_lettered',
              'oldest_pending_age_ms', 'delivered_per_minute', 'delivered_per_second',
            ],
            properties: {
              name: { type: 'string' },
              source: { type: 'string', description: 'The source or stream it reads.' },
              kind: { type: 'string', enum: ['pull', 'webhook'] },
              state: { type: 'string', enum: ['active', 'paused', 'disabled'] },
              pending: { type: 'integer', description: 'Changes waiting: taken in from the log, and not yet taken in.' },
              pending_at_least: { type: 'boolean', description: 'The consumer is far behind: pending counts only the next 1,000 log entries past its position (GET …/stats counts them all).' },
              in_flight: { type: 'integer' },
              dead_lettered: { type: 'integer' },
              oldest_pending_age_ms: { type: ['integer', 'null'] },
              delivered_per_minute: perMinute,
              delivered_per_second: { type: 'number', description: 'Over the last full minute.' },
            },
          },
        },
      },
    },
    ...errorResponses,
  },
} as const;

export const MESSAGE_STATUSES = ['delivered', 'pending', 'in_flight', 'dead_lettered'] as const;

export const peekSchema = {
  summary: 'The latest retained changes routed to a consumer, newest first, as it would be sent them; delivers nothing',
  tags: ['console'],
  params: nameParams,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
  },
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['data'],
      properties: {
        data: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['commit_lsn', 'commit_idx', 'committed_at', 'status'],
            properties: {
              commit_lsn: { type: 'string', description: 'The commit LSN as a decimal integer (as in message keys "<commit_lsn>:<commit_idx>").' },
              commit_idx: { type: 'integer' },
              committed_at: { type: ['string', 'null'], format: 'date-time' },
              status: { type: 'string', enum: MESSAGE_STATUSES },
              message: { description: 'What the consumer is sent for it (its transform applied).' },
              error: { type: 'string', description: 'Instead of message: why the transform refused it.' },
            },
          },
        },
      },
    },
    ...errorResponses,
  },
} as const;
