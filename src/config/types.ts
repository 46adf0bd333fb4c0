// The validated, defaulted configuration: what src/config/load.ts returns after
// reading config/sluice.yaml (or an API-created resource), substituting ${VAR}s
// and checking it against src/config/schema.ts. Durations are milliseconds here.
import type { TransformSpec } from '../pipeline/transform/spec.js';

export interface SluiceConfig {
  /** Where the buffer lives. Unset url: the embedded Postgres (npm start / tests). */
  buffer: { url?: string };
  /** console: serve the web console (absent: yes). */
  http: { host: string; port: number; body_limit_bytes: number; console?: boolean };
  auth: { admin_token?: string };
  /** GET /metrics: behind a token (admin tokens, or `token`) or open. */
  metrics?: { access: 'token' | 'open'; token?: string };
  sources: SourceConfig[];
  /** Logs of published messages (src/streams/); their names are distinct from the sources'. */
  streams: StreamConfig[];
  consumers: ConsumerConfig[];
}

export interface StreamConfig {
  name: string;
  /** As a source's: how long and how much of the stream the log keeps. */
  retention: { max_age_ms: number; max_size_bytes: number };
  /** Absent when none were given. */
  annotations?: Record<string, unknown>;
}

export interface SourceConfig {
  name: string;
  /** Connection string; defaults to the buffer's database. */
  url?: string;
  /** Qualified table names ("public.orders") captured by this source. */
  tables: string[];
  /** Whole schemas captured (FOR TABLES IN SCHEMA). */
  schemas: string[];
  publication: string;
  slot: string;
  /** Create the publication and slot when they are missing (else: error naming the fix). */
  create_if_missing: boolean;
  /** pg_logical_emit_message heartbeat period, so a quiet database's slot advances. */
  heartbeat_interval_ms: number;
  /** Warn when the slot retains more WAL than this. */
  lag_warning_bytes: number;
  /** Largest number of changes held in memory before a chunk is written to the buffer. */
  max_batch_changes: number;
  /** Served as metadata.database.annotations; absent when none were given. */
  annotations?: Record<string, unknown>;
  /**
   * What the retained change log keeps of this source: changes older than
   * max_age, or beyond max_size in total, are dropped (never one an active
   * consumer has yet to take in). Always set by the loader; rows stored before
   * migration 0012 got the defaults there.
   */
  retention: { max_age_ms: number; max_size_bytes: number };
}

export type ConsumerKind = 'pull' | 'webhook';

/** What a consumer's messages describe: each change, or the row it left. */
export type MessageKind = 'change' | 'row';

export interface ConsumerConfig {
  name: string;
  /** The log it reads: a source's name, or (with `stream`) the stream's. */
  source: string;
  kind: ConsumerKind;
  /** Qualified table names; must be captured by the source. Empty for a stream's consumer. */
  tables: string[];
  /** Set (to the stream's name, as `source`) for a consumer of a stream. */
  stream?: string;
  /**
   * Subject patterns (src/pipeline/route/subjects.ts): a stream consumer's
   * selection ([">"] for every message); on a source's consumer, absent or a
   * narrowing of its tables' changes by <database>.<schema>.<table>.<action>.
   */
  subjects?: string[];
  /**
   * Streams whose outbox messages, published inside the source's transactions
   * (src/capture/outbox.ts), a source's consumer reads among the changes, in
   * commit order. Absent when none.
   */
  outbox?: string[];
  /**
   * Per-group ordering. `true` (default): group by each table's primary key.
   * `false`: no grouping. Or per table, the columns that form the group key.
   */
  group_by: boolean | Record<string, string[]>;
  /** Dead letters keep blocking their group (default false: move on). */
  dead_letter_blocks_group: boolean;
  /** Which changes it takes in; absent: every change of its tables. */
  filter?: ConsumerFilter;
  /**
   * change: each message is a change; row: the row the change left behind
   * (src/render/row-message.ts). Absent in consumers stored before it existed: change.
   */
  message_kind?: MessageKind;
  /** What each message becomes when it is served (src/pipeline/transform/); absent: the message as captured. */
  transform?: TransformSpec;
  /**
   * Where the consumer starts in its source's log: "now" (the default),
   * "earliest", an RFC 3339 timestamp or an LSN "16/B374D848". Read once, when
   * the consumer is created (src/log/positions.ts); absent when not given.
   */
  start?: string;
  /** Backfill each table when the consumer is created (read once, like start); absent when not given. */
  backfill?: boolean;
  annotations: Record<string, unknown>;
  pull?: PullSettings;
  webhook?: WebhookSettings;
}

/** The kinds of change a filter can select. */
export type ChangeAction = 'insert' | 'update' | 'delete' | 'read';

export interface ConsumerFilter {
  /** Only these kinds of change (absent: all). */
  actions?: ChangeAction[];
  /**
   * Per qualified table, a SQL boolean expression over the row's columns; a
   * change passes when it is true (false and NULL filter it out). Tables
   * without one pass whole.
   */
  where?: Record<string, string>;
}

export interface PullSettings {
  ack_wait_ms: number;
  max_ack_pending: number;
  max_waiting: number;
  max_deliver?: number;
}

export interface WebhookSettings {
  url: string;
  headers: Record<string, string>;
  /** whsec_… secrets; the first signs, others keep signing until their expiry. */
  secrets: string[];
  batch_size: number;
  batch_timeout_ms: number;
  max_in_flight: number;
  timeout_ms: number;
  max_response_bytes: number;
  retry: {
    initial_ms: number;
    factor: number;
    cap_ms: number;
    max_attempts?: number;
    max_age_ms?: number;
  };
  /** CIDR ranges the SSRF guard lets through (e.g. "127.0.0.0/8"). */
  allow_private_ranges: string[];
  /** false with batch_size 1: the body is the bare message, not {"data": [...]}. Default true. */
  batched?: boolean;
  /** Disable the consumer after failing for this long with no success in between. Default 5 days. */
  disable_after_ms?: number;
}
