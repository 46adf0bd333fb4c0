// Request and response schemas of /api/consumers/{name}/backfills: the single
// source of the routes' types and of the OpenAPI document.
import { errorResponses } from './common.js';

const params = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 200 } },
} as const;

const idParams = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'id'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 200 }, id: { type: 'string', pattern: '^[0-9]{1,18}$' } },
} as const;

const createBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    table: { type: 'string', minLength: 1, maxLength: 200, description: 'One of the consumer\'s tables (default: each of them)' },
    start: {
      type: 'object',
      additionalProperties: false,
      required: ['column', 'from'],
      description: 'Only rows whose `column` is at or after `from`, read in that column\'s order (it must lead a btree index)',
      properties: {
        column: { type: 'string', minLength: 1, maxLength: 63 },
        from: { type: 'string', minLength: 1, maxLength: 200, description: 'A value of the column\'s type, as Postgres reads it' },
      },
    },
    chunk_size: { type: 'integer', minimum: 1, maximum: 10000, default: 5000, description: 'Rows read per chunk' },
    max_rows_per_second: { type: 'integer', minimum: 1, maximum: 10000000, description: 'Throttle (default: none)' },
    max_backlog: {
      type: 'integer',
      minimum: 0,
      maximum: 100000000,
      default: 50000,
      description: 'Pause while the consumer has more than this many changes not yet taken in (0: never pause)',
    },
  },
} as const;

export const backfillView = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'table', 'state', 'start', 'chunk_size', 'max_rows_per_second', 'max_backlog', 'rows_read', 'rows_sent', 'rows_estimate',
    'rate_per_second', 'eta_seconds', 'error', 'created_at', 'updated_at', 'finished_at'],
  properties: {
    id: { type: 'string' },
    table: { type: 'string' },
    state: { type: 'string', enum: ['running', 'done', 'cancelled', 'failed'] },
    start: {
      type: ['object', 'null'],
      additionalProperties: false,
      required: ['column', 'from'],
      properties: { column: { type: 'string' }, from: { type: 'string' } },
    },
    chunk_size: { type: 'integer' },
    max_rows_per_second: { type: ['integer', 'null'] },
    max_backlog: { type: 'integer' },
    rows_read: { type: 'integer', description: 'Rows read from the table so far' },
    rows_sent: {
      type: 'integer',
      description: 'Rows stored as `read` messages: rows_read less those a change of the row around the read replaced (that change is delivered instead)',
    },
    rows_estimate: { type: ['integer', 'null'], description: 'Rows in the table, from pg_class.reltuples (null before its first ANALYZE)' },
    rate_per_second: { type: ['integer', 'null'] },
    eta_seconds: { type: ['integer', 'null'], description: 'Time left at the rate so far (0 once ended)' },
    error: { type: ['string', 'null'] },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
    finished_at: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

const list = { type: 'object', additionalProperties: false, required: ['data'], properties: { data: { type: 'array', items: backfillView } } } as const;

export const backfillSchemas = {
  create: {
    summary: 'Backfill a consumer: send its tables\' existing rows as `read` messages beside its live changes',
    description:
      'Starts one backfill per table (the given one, or each of the consumer\'s). Rows are read in small keyset chunks, ' +
      'with no long transaction or lock, and interleaved with live changes by watermarks: a row read is never delivered ' +
      'after a newer change of it. A table with a backfill running is refused with 409 (nothing starts).',
    tags: ['backfills'],
    params,
    body: createBody,
    response: { 201: list, ...errorResponses },
  },
  list: { summary: 'The consumer\'s backfills, with their progress', tags: ['backfills'], params, response: { 200: list, ...errorResponses } },
  get: { summary: 'One backfill\'s progress', tags: ['backfills'], params: idParams, response: { 200: backfillView, ...errorResponses } },
  cancel: {
    summary: 'Cancel a running backfill',
    description: 'It stops at once: rows of the chunk being read are not sent. Rows already sent stay delivered.',
    tags: ['backfills'],
    params: idParams,
    response: { 200: backfillView, ...errorResponses },
  },
} as const;
