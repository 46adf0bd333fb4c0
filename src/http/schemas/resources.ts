// Sources and consumers: the API accepts exactly the YAML shape of one resource,
// so the body schemas ARE the config loader's schemas (src/config/schema.ts),
// and the loader validates bodies (see routes/resources-common.ts). Responses
// are the same shape plus read-only fields, with secrets masked.
import { consumerSchema, sourceSchema, streamSchema } from '../../config/load.js';
import { errorResponses, nameParams } from './common.js';

type Schema = Record<string, unknown>;

/** The loader's schema as a route body: without its $id (it is registered with the loader's own ajv). */
function asBody(schema: Schema, partial = false): Schema {
  const { $id: _id, required, ...rest } = schema;
  return partial ? rest : { ...rest, required };
}

/**
 * For the response serializer: defaults are input-side, and an object schema
 * without properties must let its keys through (fast-json-stringify drops keys
 * a schema does not list, which would empty `annotations`).
 */
function asResponse(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(asResponse);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$id' || key === 'default') continue;
    out[key] = key === 'properties' ? Object.fromEntries(Object.entries(value as Schema).map(([k, v]) => [k, asResponse(v)])) : asResponse(value);
  }
  const types = ([] as unknown[]).concat(out.type);
  if (types.includes('object') && !out.properties && out.additionalProperties === undefined) out.additionalProperties = true;
  return out;
}

const timestamp = { type: 'string', format: 'date-time' };

/** The YAML shape plus read-only fields; properties in the order responses show them. */
function resource(schema: Schema, extra: Record<string, unknown>, extraRequired: string[]) {
  const base = asResponse(schema) as Schema;
  return {
    ...base,
    properties: {
      id: { type: 'string', format: 'uuid' },
      ...(base.properties as Schema),
      ...extra,
      created_at: timestamp,
      updated_at: timestamp,
    },
    required: [...((base.required as string[]) ?? []), 'id', 'created_at', 'updated_at', ...extraRequired],
  };
}

const sourceStatus = {
  type: 'object',
  additionalProperties: false,
  description: 'Capture status, when this gateway runs capture.',
  properties: {
    running: { type: 'boolean' },
    standing_by: { type: 'boolean', description: 'Another gateway process streams this source; this one takes over if it stops.' },
    lag_bytes: { type: ['integer', 'null'] },
    last_error: { type: ['string', 'null'] },
    outbox_refused: {
      type: 'object',
      additionalProperties: false,
      required: ['count', 'last_reason'],
      description: 'Outbox messages captured but not stored since this gateway started (content refused, or no such stream); each is also logged.',
      properties: { count: { type: 'integer' }, last_reason: { type: 'string' } },
    },
  },
};

const nullableTimestamp = { type: ['string', 'null'], format: 'date-time' };

const sourceLog = {
  type: 'object',
  additionalProperties: false,
  description: 'The retained change log of the source (in reads: GET of one source and the list).',
  required: ['partitions', 'retained_changes', 'retained_bytes', 'oldest_commit_at', 'dropped_before_lsn', 'held_back'],
  properties: {
    partitions: { type: 'integer', description: 'Log partitions: retention drops whole ones, oldest first.' },
    retained_changes: { type: 'integer', description: 'Exact for sealed partitions, estimated for the one being written.' },
    retained_bytes: { type: 'integer', description: 'Heap, indexes and TOAST of the partitions.' },
    oldest_commit_at: nullableTimestamp,
    dropped_before_lsn: { type: ['string', 'null'], description: 'Every change below this LSN was dropped by retention.' },
    held_back: {
      type: ['object', 'null'],
      additionalProperties: false,
      description: 'Changes retention would drop (older than max_age, or beyond max_size) but cannot, and who holds them.',
      properties: {
        changes: { type: 'integer' },
        bytes: { type: 'integer' },
        oldest_commit_at: nullableTimestamp,
        oldest_age_ms: { type: ['integer', 'null'] },
        consumers: {
          type: 'array',
          description: 'Consumers that still need them (position or unacked messages), furthest behind first.',
          items: {
            type: 'object',
            additionalProperties: false,
            properties: { name: { type: 'string' }, state: { type: 'string' } },
          },
        },
        capture: { type: 'boolean', description: 'Capture has not confirmed past them yet.' },
        warning: { type: ['string', 'null'], description: 'Past the threshold: who holds the log and the fix (also logged).' },
      },
    },
  },
};

export const sourceResponse = resource(sourceSchema, { status: sourceStatus, log: sourceLog }, []);
export const consumerResponse = resource(
  consumerSchema,
  {
    state: {
      type: 'string',
      enum: ['active', 'paused', 'disabled', 'failing'],
      description: 'failing: active, but its messages cannot be claimed; state_reason says why',
    },
    state_reason: { type: ['string', 'null'] },
  },
  ['state', 'state_reason'],
);

const list = (item: Schema) => ({
  type: 'object',
  additionalProperties: false,
  required: ['data'],
  properties: { data: { type: 'array', items: item } },
});

const deleted = { 204: { type: 'null', description: 'Deleted.' }, ...errorResponses };

export const streamResponse = resource(streamSchema, {}, []);

export const streamSchemas = {
  list: { summary: 'List streams', tags: ['streams'], response: { 200: list(streamResponse), ...errorResponses } },
  get: { summary: 'Get a stream', tags: ['streams'], params: nameParams, response: { 200: streamResponse, ...errorResponses } },
  create: {
    summary: 'Create a stream (the YAML shape of one entry of `streams:`)',
    tags: ['streams'],
    body: asBody(streamSchema),
    response: { 201: streamResponse, ...errorResponses },
  },
  update: {
    summary: 'Change a stream (JSON merge patch of its YAML shape)',
    tags: ['streams'],
    params: nameParams,
    body: asBody(streamSchema, true),
    response: { 200: streamResponse, ...errorResponses },
  },
  delete: { summary: 'Delete a stream and its retained messages', tags: ['streams'], params: nameParams, response: deleted },
};

const sourceTableSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['table', 'exists', 'replica_identity', 'primary_key'],
  properties: {
    table: { type: 'string', description: 'schema.table' },
    exists: { type: 'boolean' },
    replica_identity: { type: ['string', 'null'], enum: ['default', 'full', 'index', 'nothing', null], description: 'null when the table does not exist' },
    primary_key: { type: 'array', items: { type: 'string' }, description: 'Its columns in key order; empty without one.' },
  },
} as const;

const sourceTestResponse = {
  type: 'object',
  additionalProperties: false,
  required: ['ok', 'connected', 'problems'],
  properties: {
    ok: { type: 'boolean', description: 'Capture can start with this source as configured.' },
    connected: { type: 'boolean' },
    server_version: { type: 'string' },
    wal_level: { type: 'string' },
    replication_role: { type: 'boolean', description: 'The role may start replication (REPLICATION or superuser).' },
    publication_exists: { type: 'boolean' },
    slot_exists: { type: 'boolean' },
    tables: { type: 'array', items: sourceTableSchema, description: 'The tables it would capture, once connected.' },
    problems: { type: 'array', items: { type: 'string' }, description: 'Each thing that stops capture, with its fix.' },
  },
} as const;

export const sourceSchemas = {
  list: { summary: 'List sources', tags: ['sources'], response: { 200: list(sourceResponse), ...errorResponses } },
  get: { summary: 'Get a source', tags: ['sources'], params: nameParams, response: { 200: sourceResponse, ...errorResponses } },
  create: {
    summary: 'Create a source (the YAML shape of one entry of `sources:`)',
    tags: ['sources'],
    body: asBody(sourceSchema),
    response: { 201: sourceResponse, ...errorResponses },
  },
  update: {
    summary: 'Change a source (JSON merge patch of its YAML shape)',
    tags: ['sources'],
    params: nameParams,
    body: asBody(sourceSchema, true),
    response: { 200: sourceResponse, ...errorResponses },
  },
  delete: { summary: 'Delete a source (refused while consumers use it)', tags: ['sources'], params: nameParams, response: deleted },
  test: {
    summary: 'Test the connection to a stored source: can capture start?',
    tags: ['sources'],
    params: nameParams,
    response: { 200: sourceTestResponse, ...errorResponses },
  },
  testNew: {
    summary: 'Test a source before it is created (the body of POST /api/sources); nothing is saved or created',
    tags: ['sources'],
    body: asBody(sourceSchema),
    response: { 200: sourceTestResponse, ...errorResponses },
  },
  tables: {
    summary: 'The tables a source captures, with their replica identity and primary key (read from the source database)',
    tags: ['sources'],
    params: nameParams,
    response: {
      200: { type: 'object', additionalProperties: false, required: ['data'], properties: { data: { type: 'array', items: sourceTableSchema } } },
      ...errorResponses,
    },
  },
};

const stateBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { reason: { type: 'string', maxLength: 500 } },
} as const;

const rewindBody = {
  type: 'object',
  additionalProperties: false,
  required: ['to'],
  properties: {
    to: {
      type: 'string',
      maxLength: 100,
      description:
        '"earliest" (the oldest retained change), an RFC 3339 timestamp (from the first change committed at or after it), or an LSN such as "16/B374D848" (changes committed at or after it)',
    },
  },
} as const;

const replayBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: {
      type: 'string',
      maxLength: 100,
      description: '"earliest" (the default), an RFC 3339 timestamp or an LSN such as "16/B374D848": changes committed at or after it',
    },
    to: {
      type: 'string',
      maxLength: 100,
      description: 'An RFC 3339 timestamp or an LSN: changes committed before it (default, and at most: the consumer\'s position)',
    },
    tables: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { type: 'string', minLength: 1, maxLength: 200 },
      description: 'Among the consumer\'s tables (default: all of them)',
    },
    actions: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: ['insert', 'update', 'delete', 'read'] } },
    where: {
      anyOf: [
        { type: 'string', minLength: 1, maxLength: 4000 },
        { type: 'object', additionalProperties: { type: 'string', minLength: 1, maxLength: 4000 } },
      ],
      description: 'A SQL boolean expression over the row\'s columns (for every table replayed), or a map of table → expression',
    },
    dry_run: { type: 'boolean', description: 'Count the matching changes and return the first few; deliver nothing' },
  },
} as const;

const replayResponse = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'from', 'to', 'tables', 'actions', 'where', 'walked', 'matched', 'status', 'created_at', 'finished_at'],
  properties: {
    id: { type: 'string', format: 'uuid' },
    from: {
      type: 'object',
      additionalProperties: false,
      required: ['commit_lsn'],
      properties: { commit_lsn: { type: ['string', 'null'], description: 'null: the start of the log' } },
    },
    to: {
      type: 'object',
      additionalProperties: false,
      required: ['commit_lsn'],
      properties: { commit_lsn: { type: ['string', 'null'] } },
    },
    tables: { type: 'array', items: { type: 'string' } },
    actions: { type: ['array', 'null'], items: { type: 'string' } },
    where: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
    walked: { type: 'integer', description: 'Retained changes walked so far' },
    matched: { type: 'integer', description: 'Matching changes taken in for delivery so far' },
    status: { type: 'string', enum: ['running', 'done'] },
    created_at: { type: 'string', format: 'date-time' },
    finished_at: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

const dryRunResponse = {
  type: 'object',
  additionalProperties: false,
  required: ['dry_run', 'matched', 'walked', 'complete', 'first'],
  properties: {
    dry_run: { type: 'boolean', enum: [true] },
    matched: { type: 'integer', description: 'Matching changes in the range (of those walked)' },
    walked: { type: 'integer' },
    complete: { type: 'boolean', description: 'false: the count stopped at its bounds (2,000,000 changes or 10 s) before the range\'s end' },
    first: { type: 'array', items: { type: 'object' }, description: 'The first matching messages, as stored' },
  },
} as const;

const transformTestBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    transform: { ...consumerSchema.properties.transform, description: 'The transform to try (default: the consumer\'s own)' },
    filter: { ...consumerSchema.properties.filter, description: 'The filter to try (default: the consumer\'s own)' },
    message: {
      type: 'object',
      description: 'A sample message (the change envelope: action, record, changes, metadata.table_schema, metadata.table_name…)',
    },
    table: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      description: 'Take the latest retained change of this table (one of the consumer\'s) instead of a sample',
    },
  },
} as const;

const transformTestResponse = {
  type: 'object',
  additionalProperties: false,
  required: ['input', 'from', 'filter', 'output', 'error'],
  properties: {
    input: { type: 'object', description: 'The message tried, as the consumer is served it without a transform' },
    from: {
      type: 'object',
      additionalProperties: false,
      required: ['kind'],
      properties: {
        kind: { type: 'string', enum: ['sample', 'log'] },
        commit_lsn: { type: 'string' },
        commit_idx: { type: 'integer' },
      },
    },
    filter: {
      type: 'object',
      additionalProperties: false,
      required: ['passed', 'reason'],
      properties: {
        passed: { type: 'boolean', description: 'The message would be delivered' },
        reason: { type: ['string', 'null'], description: 'Why it would not be' },
      },
    },
    output: { description: 'What the consumer would be sent (null when the transform failed)' },
    error: { type: ['string', 'null'], description: 'Why the transform failed on this message: it would become a dead letter' },
  },
} as const;

export const consumerSchemas = {
  list: { summary: 'List consumers', tags: ['consumers'], response: { 200: list(consumerResponse), ...errorResponses } },
  get: { summary: 'Get a consumer', tags: ['consumers'], params: nameParams, response: { 200: consumerResponse, ...errorResponses } },
  create: {
    summary: 'Create a consumer (the YAML shape of one entry of `consumers:`); a webhook secret is generated when none is given and shown in this response only',
    tags: ['consumers'],
    body: asBody(consumerSchema),
    response: { 201: consumerResponse, ...errorResponses },
  },
  update: {
    summary: 'Change a consumer (JSON merge patch of its YAML shape; masked values sent back unchanged keep their stored value)',
    tags: ['consumers'],
    params: nameParams,
    body: asBody(consumerSchema, true),
    response: { 200: consumerResponse, ...errorResponses },
  },
  pause: {
    summary: 'Pause delivery',
    tags: ['consumers'],
    params: nameParams,
    body: stateBody,
    response: { 200: consumerResponse, ...errorResponses },
  },
  resume: { summary: 'Resume delivery', tags: ['consumers'], params: nameParams, response: { 200: consumerResponse, ...errorResponses } },
  delete: { summary: 'Delete a consumer and its buffered messages', tags: ['consumers'], params: nameParams, response: deleted },
  rewind: {
    summary: 'Deliver again every retained change of the consumer\'s tables from a point on, in order per group',
    description:
      'The consumer goes back to `to` (never forward). Changes in flight are delivered again once their delivery ends; ' +
      'dead letters from the point on are pending again. The idempotency key of a change stays its own.',
    tags: ['consumers'],
    params: nameParams,
    body: rewindBody,
    response: {
      200: {
        type: 'object',
        additionalProperties: false,
        required: ['redelivering', 'from'],
        properties: {
          redelivering: { type: 'integer', description: 'Retained changes of the consumer\'s tables from the point on: what will be delivered again.' },
          from: {
            type: 'object',
            additionalProperties: false,
            required: ['commit_lsn', 'committed_at'],
            description: 'The first change delivered again; both null when there is none.',
            properties: {
              commit_lsn: { type: ['string', 'null'], description: 'As Postgres prints an LSN, e.g. "16/B374D848".' },
              committed_at: { type: ['string', 'null'], format: 'date-time' },
            },
          },
        },
      },
      ...errorResponses,
    },
  },
  replay: {
    summary: 'Deliver again the retained changes that match a query (republish)',
    description:
      'Walks the consumer\'s retained changes from `from` to `to` (at most up to its position) and delivers again those of ' +
      '`tables` and `actions` that pass `where`, in order per group, beside its live changes. Returns at once; the replay ' +
      'runs as the consumer is served. `dry_run` counts the matches and returns the first few instead.',
    tags: ['consumers'],
    params: nameParams,
    body: replayBody,
    response: { 200: dryRunResponse, 202: replayResponse, ...errorResponses },
  },
  transformTest: {
    summary: 'Try a filter and a transform on a sample message or the latest retained change of a table',
    description:
      'Runs the given `filter` and `transform` (default: the consumer\'s own) on `message`, or on the latest retained change ' +
      'of `table` (default: of any of the consumer\'s tables), and returns whether it passes, the output or the error. ' +
      'Nothing is saved or delivered. A transform that does not compile is a 422 with its line and column.',
    tags: ['consumers'],
    params: nameParams,
    body: transformTestBody,
    response: { 200: transformTestResponse, ...errorResponses },
  },
  replays: {
    summary: 'The consumer\'s replays (the latest 100), with their progress',
    tags: ['consumers'],
    params: nameParams,
    response: { 200: { type: 'object', additionalProperties: false, required: ['data'], properties: { data: { type: 'array', items: replayResponse } } }, ...errorResponses },
  },
  stats: {
    summary: 'Message counts of a consumer',
    tags: ['consumers'],
    params: nameParams,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        scan_limit: {
          type: 'integer',
          minimum: 1,
          maximum: 10_000_000,
          description: 'Count the changes not yet taken in among at most this many log entries past the position (default: all); for a consumer far behind, a bounded answer.',
        },
      },
    } as const,
    response: {
      200: {
        type: 'object',
        additionalProperties: false,
        required: ['pending', 'in_flight', 'dead_lettered', 'oldest_pending_age_ms', 'pending_at_least'],
        properties: {
          pending: { type: 'integer', description: 'Waiting to be delivered.' },
          pending_at_least: { type: 'boolean', description: 'scan_limit was reached: pending is a lower bound.' },
          in_flight: { type: 'integer', description: 'Delivered, not yet acked, visibility timeout running.' },
          dead_lettered: { type: 'integer' },
          oldest_pending_age_ms: { type: ['integer', 'null'], description: 'Age of the oldest unacked message (dead letters aside).' },
        },
      },
      ...errorResponses,
    },
  },
};
