// JSON schemas of the pull routes (validation and the OpenAPI document).
// Numbers may arrive as strings (query strings, loose clients): the schemas
// accept both and src/pull/params.ts checks ranges and units, so every bad
// value gets the same 422 wording wherever it came from.
import { ACK_IDS_MAX } from './params.js';

const intOrString = { type: ['integer', 'string'] } as const;

export const consumerParams = {
  type: 'object',
  properties: { name: { type: 'string', minLength: 1, maxLength: 200, description: 'Consumer name or id' } },
  required: ['name'],
  additionalProperties: false,
} as const;

const receiveFields = {
  batch_size: { ...intOrString, description: 'Messages to return at most: 1–1000, default 1' },
  max_batch_size: { ...intOrString, description: 'Synonym of batch_size (Sequin)' },
  wait_for: { ...intOrString, description: 'Long-poll: milliseconds (500–300000) or "500ms", "5s", "1m"' },
} as const;

export const receiveQuery = { type: 'object', properties: receiveFields, additionalProperties: false } as const;
// null stands for "no body" (fastify validates a missing body as null).
export const receiveBody = { type: ['object', 'null'], properties: receiveFields, additionalProperties: false } as const;

const ackIds = {
  type: 'array',
  maxItems: ACK_IDS_MAX,
  items: { type: 'string', maxLength: 128 },
  description: 'ack_ids from receive responses',
} as const;

export const ackBody = {
  type: 'object',
  properties: { ack_ids: ackIds },
  required: ['ack_ids'],
  additionalProperties: false,
} as const;

export const modifyVisibilityBody = {
  type: 'object',
  properties: {
    ack_ids: ackIds,
    visibility_timeout_ms: { ...intOrString, description: 'New visibility from now: 0–43200000 ms' },
  },
  required: ['ack_ids', 'visibility_timeout_ms'],
  additionalProperties: false,
} as const;

// Documentation only: receive sends its body as pre-built JSON text.
export const receiveResponse = {
  type: 'object',
  properties: {
    data: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          ack_id: { type: 'string' },
          data: { type: 'object', additionalProperties: true, description: 'The message (see message.md)' },
        },
        required: ['ack_id', 'data'],
        additionalProperties: false,
      },
    },
  },
  required: ['data'],
  additionalProperties: false,
} as const;

export const ackResponse = {
  type: 'object',
  properties: {
    success: { type: 'boolean' },
    applied: { type: 'integer', description: 'ack_ids that matched a current delivery' },
    ignored: { type: 'integer', description: 'unknown, stale, malformed or repeated ack_ids' },
  },
  required: ['success', 'applied', 'ignored'],
  additionalProperties: false,
} as const;
