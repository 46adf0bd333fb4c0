// Dead-letter routes. A dead letter's id is its message key "<commit_lsn>:<commit_idx>".
import { errorResponses, nameParams } from './common.js';

export const MESSAGE_KEY_RE = /^(\d{1,19}):(\d{1,10})$/;
const messageKey = { type: 'string', pattern: MESSAGE_KEY_RE.source, description: 'A message key "<commit_lsn>:<commit_idx>".' } as const;

export const listDeadLettersSchema = {
  summary: 'List dead letters, oldest first, a page at a time',
  tags: ['dead letters'],
  params: nameParams,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
      cursor: { ...messageKey, description: 'next_cursor of the previous page.' },
    },
  },
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['data', 'next_cursor'],
      properties: {
        data: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'group_key', 'deliver_count', 'last_delivered_at', 'last_error', 'created_at', 'message'],
            properties: {
              id: messageKey,
              group_key: { type: ['string', 'null'] },
              deliver_count: { type: 'integer' },
              last_delivered_at: { type: ['string', 'null'], format: 'date-time' },
              last_error: { type: ['string', 'null'] },
              created_at: { type: 'string', format: 'date-time' },
              message: { type: 'object', additionalProperties: true, description: 'The message as it would be delivered.' },
            },
          },
        },
        next_cursor: { type: ['string', 'null'], description: 'Pass as ?cursor= for the next page; null on the last page.' },
      },
    },
    ...errorResponses,
  },
} as const;

const selection = {
  type: 'object',
  additionalProperties: false,
  description: 'Either {"ids": [...]} or {"all": true}.',
  properties: {
    ids: { type: 'array', minItems: 1, maxItems: 10_000, uniqueItems: true, items: messageKey },
    all: { type: 'boolean', const: true },
  },
} as const;

const result = (counted: 'retried' | 'discarded') =>
  ({
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['success', counted],
      properties: { success: { type: 'boolean' }, [counted]: { type: 'integer' } } as const,
    },
    ...errorResponses,
  }) as const;

export const retryDeadLettersSchema = {
  summary: 'Make dead letters pending again (delivery count reset, in their original order)',
  tags: ['dead letters'],
  params: nameParams,
  body: selection,
  response: result('retried'),
} as const;

export const discardDeadLettersSchema = {
  summary: 'Delete dead letters',
  tags: ['dead letters'],
  params: nameParams,
  body: selection,
  response: result('discarded'),
} as const;
