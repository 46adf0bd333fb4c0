// The JSON schema (ajv 8) of config/sluice.yaml, and of one source or consumer as
// the management API accepts it: the same resources in the same shape.
//
// Keys are snake_case as in types.ts, but durations and sizes are written as
// people write them ("30s", "64KB") under names without the _ms/_bytes suffix;
// normalise.ts converts them. Every object rejects unknown keys, so a typo is an
// error rather than a silently ignored setting. Defaults are declared once, in
// DEFAULTS, which both the schema (for documentation and editors) and the
// normaliser (which applies them) read.
import net from 'node:net';
import { parseSecret, SecretFormatError } from '../signing/secrets.js';
import { parseLogPoint } from '../log/points.js';
import { DURATION_RE, SIZE_RE, parseDuration, parseSize } from './units.js';
import type { ChangeAction, MessageKind } from './types.js';
import type { TransformSpec } from '../pipeline/transform/spec.js';

export const DEFAULTS = {
  http: { host: '127.0.0.1', port: 7376, body_limit: '1MB' },
  source: { create_if_missing: true, heartbeat_interval: '30s', lag_warning: '1GB', max_batch_changes: 10_000 },
  // How long and how much of a source's captured changes the log keeps
  // (acked or not; never what an active consumer still has to take in).
  retention: { max_age: '7d', max_size: '20GB' },
  // Where a new consumer starts in its source's log.
  consumer_start: 'now',
  consumer: { group_by: true, dead_letter_blocks_group: false, message_kind: 'change' },
  pull: { ack_wait: '30s', max_ack_pending: 10_000, max_waiting: 20 },
  webhook: { batch_size: 100, batch_timeout: '50ms', max_in_flight: 4, timeout: '30s', max_response_bytes: '64KB' },
  retry: { initial: '1s', factor: 2, cap: '1h', max_age: '24h' },
} as const;

/**
 * The largest value of every duration, size and count, in the form people
 * write them: what the database columns and Node's timers hold, with room to
 * spare, and what makes sense (a 30-day visibility timeout does not). Config
 * files and the API share them; docs/configuration.md lists them.
 */
export const MAXIMA = {
  http: { body_limit: '64MB' },
  source: { heartbeat_interval: '24h', lag_warning: '1TB', max_batch_changes: 100_000 },
  retention: { max_age: '3650d', max_size: '100TB' },
  pull: { ack_wait: '12h', max_ack_pending: 1_000_000, max_waiting: 10_000, max_deliver: 1_000_000 },
  webhook: { batch_size: 10_000, batch_timeout: '10m', max_in_flight: 1000, timeout: '15m', max_response_bytes: '16MB', disable_after: '30d' },
  retry: { initial: '24h', factor: 10, cap: '7d', max_attempts: 1_000_000, max_age: '30d' },
} as const;

/**
 * The smallest values where zero or a tiny value would be a mistake rather
 * than a setting: retention below a second (or a megabyte) would drop changes
 * before any consumer could take them in.
 */
export const MINIMA = {
  retention: { max_age: '1s', max_size: '1MB' },
} as const;

export const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
// Unquoted-style Postgres identifiers, case kept: names are matched exactly as
// pgoutput reports them.
const IDENT = '[A-Za-z_][A-Za-z0-9_$]{0,62}';
export const TABLE_RE = new RegExp(`^(?:${IDENT}\\.)?${IDENT}$`);
const IDENT_RE = new RegExp(`^${IDENT}$`);
/** RFC 7230 token: the characters an HTTP header name may use. */
export const HEADER_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Custom ajv formats; the schema's description says what each one accepts. */
export const FORMATS: Record<string, (value: string) => boolean> = {
  duration: (v) => DURATION_RE.test(v),
  'positive-duration': (v) => (parseDuration(v) ?? 0) > 0,
  size: (v) => SIZE_RE.test(v.trim()) && (parseSize(v) ?? 0) > 0,
  // now, earliest, an RFC 3339 timestamp or an LSN (src/log/points.ts).
  'log-start': (v) => parseLogPoint(v) !== undefined,
  'http-url': (v) => urlWithProtocol(v, ['http:', 'https:']),
  // Empty means "unset" (the buffer's own database), so ${VAR:-} can switch it off.
  'postgres-url': (v) => v === '' || urlWithProtocol(v, ['postgres:', 'postgresql:']),
  // What can sign: an HMAC secret (v1) or an ed25519 private key (v1a). A
  // whpk_ public key parses but cannot sign.
  'webhook-secret': (v) => {
    try {
      return parseSecret(v).kind !== 'ed25519-public';
    } catch (err) {
      if (err instanceof SecretFormatError) return false;
      throw err;
    }
  },
  cidr: (v) => {
    const [addr, prefix, extra] = v.split('/');
    const family = net.isIP(addr ?? '');
    if (!family || extra !== undefined || !/^\d{1,3}$/.test(prefix ?? '')) return false;
    return Number(prefix) <= (family === 4 ? 32 : 128);
  },
};

function urlWithProtocol(value: string, protocols: string[]): boolean {
  try {
    return protocols.includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

// Descriptions complete the sentence "<path>: must be …" in error messages.
const name = {
  type: 'string',
  pattern: NAME_RE.source,
  description: 'a name of lowercase letters, digits, "_" and "-" (1–63 characters, starting with a letter or digit)',
};
const table = { type: 'string', pattern: TABLE_RE.source, description: 'a table name such as "public.orders" or "orders"' };
const identifier = { type: 'string', pattern: IDENT_RE.source, description: 'a Postgres identifier' };
const postgresUrl = { type: 'string', format: 'postgres-url', description: 'a postgres:// URL, or empty for the buffer database' };
const int = (minimum: number, maximum: number, extra: object = {}) => ({ type: 'integer', minimum, maximum, ...extra });
const list = (items: object, extra: object = {}) => ({ type: 'array', items, uniqueItems: true, ...extra });

// The maximum of a duration or size is checked where it is parsed
// (normalise.ts), so "30d" and 2592000000 get the same message.
function duration(defaultValue: string | undefined, max: string, allowZero = false, min?: string) {
  return {
    type: ['string', 'integer'],
    format: allowZero ? 'duration' : 'positive-duration',
    minimum: allowZero ? 0 : 1,
    ...(defaultValue !== undefined && { default: defaultValue }),
    description: `a duration such as "30s", "500ms", "5m", "24h", or integer milliseconds${allowZero ? '' : min ? `, from ${min}` : ' above 0'}, at most ${max}`,
  };
}

function size(defaultValue: string, max: string, min?: string) {
  return {
    type: ['string', 'integer'],
    format: 'size',
    minimum: 1,
    default: defaultValue,
    description: `a size such as "64KB", "1MB", "1GB" (1KB = 1024 bytes), or integer bytes ${min ? `from ${min}` : 'above 0'}, at most ${max}`,
  };
}

const object = <E extends object = object>(properties: Record<string, object>, extra: E = {} as E) => ({
  type: 'object',
  additionalProperties: false,
  properties,
  ...extra,
});

const S = DEFAULTS.source;
export const sourceSchema = object(
  {
    name,
    url: postgresUrl,
    tables: list(table, { default: [] }),
    schemas: list(identifier, { default: [] }),
    publication: { type: 'string', pattern: '^[a-z_][a-z0-9_]{0,62}$', description: 'a publication name (lowercase letters, digits, "_")' },
    slot: { type: 'string', pattern: '^[a-z0-9_]{1,63}$', description: 'a replication slot name (lowercase letters, digits, "_")' },
    create_if_missing: { type: 'boolean', default: S.create_if_missing },
    heartbeat_interval: duration(S.heartbeat_interval, MAXIMA.source.heartbeat_interval),
    lag_warning: size(S.lag_warning, MAXIMA.source.lag_warning),
    max_batch_changes: int(1, MAXIMA.source.max_batch_changes, { default: S.max_batch_changes }),
    // Free-form user data served as metadata.database.annotations of its messages.
    annotations: { type: 'object' },
    // How long and how much of the source's changes the log keeps.
    retention: object(
      {
        max_age: duration(DEFAULTS.retention.max_age, MAXIMA.retention.max_age, false, MINIMA.retention.max_age),
        max_size: size(DEFAULTS.retention.max_size, MAXIMA.retention.max_size, MINIMA.retention.max_size),
      },
      { default: {} },
    ),
  },
  { $id: 'https://sluice.dev/schema/source.json', required: ['name'] },
);

// A stream: a named log of messages that applications publish (not captured
// from a database), retained like a source's changes.
export const streamSchema = object(
  {
    name,
    retention: object(
      {
        max_age: duration(DEFAULTS.retention.max_age, MAXIMA.retention.max_age, false, MINIMA.retention.max_age),
        max_size: size(DEFAULTS.retention.max_size, MAXIMA.retention.max_size, MINIMA.retention.max_size),
      },
      { default: {} },
    ),
    // Free-form user data, shown with the stream.
    annotations: { type: 'object' },
  },
  { $id: 'https://sluice.dev/schema/stream.json', required: ['name'] },
);

const P = DEFAULTS.pull;
const pullSchema = object(
  {
    ack_wait: duration(P.ack_wait, MAXIMA.pull.ack_wait),
    max_ack_pending: int(1, MAXIMA.pull.max_ack_pending, { default: P.max_ack_pending }),
    max_waiting: int(1, MAXIMA.pull.max_waiting, { default: P.max_waiting }),
    max_deliver: int(1, MAXIMA.pull.max_deliver),
  },
  { default: {} },
);

const W = DEFAULTS.webhook;
const R = DEFAULTS.retry;
const webhookSchema = object(
  {
    url: { type: 'string', format: 'http-url', description: 'an http or https URL' },
    headers: {
      type: 'object',
      propertyNames: { pattern: HEADER_NAME_RE.source, description: 'an HTTP header name (RFC 7230 token)' },
      additionalProperties: { type: 'string', pattern: '^[^\\r\\n]*$', description: 'a string without line breaks' },
      default: {},
    },
    secrets: list(
      { type: 'string', format: 'webhook-secret', description: 'a secret "whsec_" + base64 of 24–64 bytes (v1, HMAC-SHA256), or an ed25519 signing key "whsk_" + base64 of its 32-byte seed (v1a; receivers verify with its "whpk_" public key)' },
      { default: [] },
    ),
    batch_size: int(1, MAXIMA.webhook.batch_size, { default: W.batch_size }),
    // false: one change per request, the bare message as the body.
    batched: { type: 'boolean' },
    batch_timeout: duration(W.batch_timeout, MAXIMA.webhook.batch_timeout, true),
    max_in_flight: int(1, MAXIMA.webhook.max_in_flight, { default: W.max_in_flight }),
    timeout: duration(W.timeout, MAXIMA.webhook.timeout),
    max_response_bytes: size(W.max_response_bytes, MAXIMA.webhook.max_response_bytes),
    // Only failures for this long: the consumer is disabled (default 5 days).
    disable_after: duration(undefined, MAXIMA.webhook.disable_after),
    retry: object(
      {
        initial: duration(R.initial, MAXIMA.retry.initial),
        factor: { type: 'number', minimum: 1, maximum: MAXIMA.retry.factor, default: R.factor },
        cap: duration(R.cap, MAXIMA.retry.cap),
        max_attempts: int(1, MAXIMA.retry.max_attempts),
        max_age: duration(R.max_age, MAXIMA.retry.max_age),
      },
      { default: {} },
    ),
    allow_private_ranges: list(
      { type: 'string', format: 'cidr', description: 'a CIDR range such as "127.0.0.0/8" or "::1/128"' },
      { default: [] },
    ),
  },
  { required: ['url'] },
);

export const consumerSchema = object(
  {
    name,
    source: name,
    kind: { type: 'string', enum: ['pull', 'webhook'] },
    tables: list(table, { minItems: 1 }),
    // A consumer of a stream names it in place of source, and selects its
    // messages by subject patterns in place of tables (src/pipeline/route/subjects.ts).
    stream: { type: 'string', minLength: 1, description: 'the stream to consume (in place of source and tables)' },
    subjects: list(
      { type: 'string', minLength: 1, maxLength: 255 },
      { minItems: 1, maxItems: 1000, description: 'subject patterns such as "orders.*" or "sensors.>" (default [">"]: every message)' },
    ),
    // A source's consumer may read outbox messages its source's transactions
    // publish to these streams, in commit order among the changes
    // (migrations/0023_source_outbox.sql).
    outbox: list(name, {
      maxItems: 100,
      description: 'streams whose outbox messages, published inside this source\'s transactions, are delivered among its table changes in commit order',
    }),
    group_by: {
      type: ['boolean', 'object'],
      propertyNames: table,
      additionalProperties: list(identifier, { minItems: 1 }),
      default: DEFAULTS.consumer.group_by,
      description: 'true (group by primary key), false (no grouping), or a map of table → columns',
    },
    dead_letter_blocks_group: { type: 'boolean', default: DEFAULTS.consumer.dead_letter_blocks_group },
    // Which changes the consumer takes in (absent: all). Filtered-out changes
    // are stepped over when they are taken in from the log: no delivery state,
    // and they never hold up their group.
    filter: object({
      actions: list(
        { type: 'string', enum: ['insert', 'update', 'delete', 'read'] },
        { minItems: 1, description: 'the kinds of change to deliver: any of insert, update, delete, read (rows of a backfill)' },
      ),
      // Per table, a SQL boolean expression over the row's columns, as after
      // WHERE. Parsed by Postgres' parser and evaluated in the gateway (never
      // run as SQL); checked against the table's columns when saved.
      where: {
        type: 'object',
        propertyNames: table,
        additionalProperties: {
          type: 'string',
          minLength: 1,
          maxLength: 4000,
          description: "a SQL boolean expression over the table's columns, such as \"status = 'paid' AND amount >= 100\"",
        },
        description: "a map of table → SQL boolean expression, such as {\"public.orders\": \"status = 'paid'\"}",
      },
    }),
    // change: each message is a change (record, changes, action); row: the row
    // a change left behind (record, deleted), for consumers that keep a copy
    // of the table (src/render/row-message.ts). Applied when served.
    message_kind: {
      type: 'string',
      enum: ['change', 'row'],
      default: DEFAULTS.consumer.message_kind,
      description: 'change (default): messages describe each change; row: each message is the row as the change left it, deletes as {"record": key, "deleted": true}',
    },
    // What each message becomes when it is served (pull and webhook alike):
    // one of path, template or function (src/pipeline/transform/). Applied at
    // delivery, so a rewind or replay is served with the current transform.
    transform: object(
      {
        path: { type: 'string', minLength: 1, maxLength: 1000, description: 'a message path whose value is served, such as "record"' },
        template: {
          type: 'object',
          minProperties: 1,
          description: 'an object of output keys → message paths (or nested such objects), such as {"id": "record.id", "kind": "action"}',
        },
        function: {
          type: 'string',
          minLength: 1,
          maxLength: 65_536,
          description: 'a JavaScript function (message) => value, run in a QuickJS sandbox with no I/O',
        },
        timeout_ms: int(1, 1000, { description: "a function's time limit per message, in ms (default 50)" }),
        memory_mb: int(8, 256, { description: "a function's memory cap, in MiB (default 32)" }),
      },
      { description: 'one of {"path": …}, {"template": {…}} or {"function": "…"}' },
    ),
    // Where a new consumer starts in its source's log; read when it is created.
    start: {
      type: 'string',
      format: 'log-start',
      default: DEFAULTS.consumer_start,
      description: 'now, earliest, an RFC 3339 timestamp such as "2026-12-01T09:30:00Z", or an LSN such as "16/B374D848"',
    },
    // A new consumer also gets the rows its tables hold already (a backfill of
    // each, src/backfill/); read once, when it is created.
    backfill: { type: 'boolean', description: 'true: when the consumer is created, backfill each of its tables (send the rows they hold already)' },
    // Free-form user data copied into every message's metadata.consumer.
    annotations: { type: 'object', default: {} },
    // Which block is allowed depends on kind; normalise.ts checks it, with a clearer
    // message than an if/then schema would give.
    pull: pullSchema,
    webhook: webhookSchema,
  },
  // source and tables, or stream: normalise.ts checks which, with a clearer message than oneOf.
  { $id: 'https://sluice.dev/schema/consumer.json', required: ['name', 'kind'] },
);

const H = DEFAULTS.http;
export const configSchema = object(
  {
    buffer: object({ url: postgresUrl }, { default: {} }),
    http: object(
      {
        host: { type: 'string', minLength: 1, default: H.host },
        port: int(0, 65_535, { default: H.port }),
        body_limit: size(H.body_limit, MAXIMA.http.body_limit),
        // The web console at / and /console (src/console/): its files need no
        // token, everything it shows comes from /api with the user's token.
        console: { type: 'boolean', default: true },
      },
      { default: {} },
    ),
    auth: object({ admin_token: { type: 'string' } }, { default: {} }),
    // GET /metrics (src/metrics/): behind a token (an admin token, or this
    // one) by default, or open to whoever reaches the port.
    metrics: object(
      {
        access: { type: 'string', enum: ['token', 'open'], default: 'token' },
        token: { type: 'string', description: 'a token for scrapers (at least 24 characters); admin tokens work too' },
      },
      { default: {} },
    ),
    sources: { type: 'array', items: { $ref: sourceSchema.$id }, default: [] },
    streams: { type: 'array', items: { $ref: streamSchema.$id }, default: [] },
    consumers: { type: 'array', items: { $ref: consumerSchema.$id }, default: [] },
  },
  { $id: 'https://sluice.dev/schema/sluice.json' },
);

// The YAML shape after schema validation (before normalisation).
type Duration = string | number;
type Size = string | number;

export interface YamlStream {
  name: string;
  retention?: { max_age?: Duration; max_size?: Size };
  annotations?: Record<string, unknown>;
}

export interface YamlSource {
  name: string;
  url?: string;
  tables?: string[];
  schemas?: string[];
  publication?: string;
  slot?: string;
  create_if_missing?: boolean;
  heartbeat_interval?: Duration;
  lag_warning?: Size;
  max_batch_changes?: number;
  annotations?: Record<string, unknown>;
  retention?: { max_age?: Duration; max_size?: Size };
}

export interface YamlPull {
  ack_wait?: Duration;
  max_ack_pending?: number;
  max_waiting?: number;
  max_deliver?: number;
}

export interface YamlWebhook {
  url: string;
  headers?: Record<string, string>;
  secrets?: string[];
  batch_size?: number;
  batched?: boolean;
  batch_timeout?: Duration;
  max_in_flight?: number;
  timeout?: Duration;
  max_response_bytes?: Size;
  disable_after?: Duration;
  retry?: { initial?: Duration; factor?: number; cap?: Duration; max_attempts?: number; max_age?: Duration };
  allow_private_ranges?: string[];
}

export interface YamlConsumer {
  name: string;
  source?: string;
  kind: 'pull' | 'webhook';
  tables?: string[];
  stream?: string;
  subjects?: string[];
  outbox?: string[];
  group_by?: boolean | Record<string, string[]>;
  dead_letter_blocks_group?: boolean;
  message_kind?: MessageKind;
  filter?: { actions?: ChangeAction[]; where?: Record<string, string> };
  transform?: TransformSpec;
  start?: string;
  backfill?: boolean;
  annotations?: Record<string, unknown>;
  pull?: YamlPull;
  webhook?: YamlWebhook;
}

export interface YamlConfig {
  buffer?: { url?: string };
  http?: { host?: string; port?: number; body_limit?: Size; console?: boolean };
  auth?: { admin_token?: string };
  metrics?: { access?: 'token' | 'open'; token?: string };
  sources?: YamlSource[];
  streams?: YamlStream[];
  consumers?: YamlConsumer[];
}
