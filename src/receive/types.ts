// Types a webhook receiver needs, and the one definition of the envelope:
// `sluice/webhooks` ships to users' apps (and Web runtimes) with no dependency
// on the gateway's own modules, so the gateway (src/buffer/message.ts) imports
// these rather than the other way round.

export type Action = 'insert' | 'update' | 'delete' | 'read';

export interface MessageMetadata {
  table_schema: string;
  table_name: string;
  commit_timestamp: string;
  /** Exact integer; JSON number text. */
  commit_lsn: number;
  commit_idx: number;
  idempotency_key: string;
  record_pks: string[];
  database_name: string;
  /** Columns an update did not touch whose TOASTed value the WAL did not carry. */
  unchanged_toast_columns?: string[];
  /** Set inside the transaction with pg_logical_emit_message(true, 'sequin:transaction_annotations.set', '<json object>'). */
  transaction_annotations: Record<string, unknown> | null;
  consumer: { id: string; name: string; annotations: Record<string, unknown> };
  /** The source the change was captured from (as Sequin's metadata.database). */
  database?: { id: string; name: string; annotations: Record<string, unknown>; database: string; hostname: string };
}

export interface Message<R = Record<string, unknown>> {
  record: R;
  changes: Partial<R> | null;
  action: Action;
  metadata: MessageMetadata;
}

/**
 * What a consumer with `message_kind: row` is sent: the row a change left
 * behind. Inserts, updates and backfill reads carry the row; a delete is a
 * tombstone whose record holds the key (the whole old row under REPLICA
 * IDENTITY FULL) with `deleted: true`. The verifiers type `data` as change
 * messages: a row consumer's handler reads it `as unknown as RowMessage<R>[]`.
 */
export interface RowMessage<R = Record<string, unknown>> {
  record: R;
  deleted: boolean;
  metadata: MessageMetadata;
}

/** A batched webhook body: `{"data": [message, …]}`. */
export interface WebhookBatch<R = Record<string, unknown>> {
  data: Message<R>[];
}

/**
 * What a successful verification returns. The body is always presented as a
 * batch: a bare message (batching turned off on the consumer) is wrapped as
 * `{ data: [message] }` and `batched` is false, so handlers need one code path.
 * The body's shape is not validated beyond "JSON object": `R` is what the sender
 * promises, and the signature proves who the sender is.
 */
export interface VerifiedWebhook<R = Record<string, unknown>> extends WebhookBatch<R> {
  /** `webhook-id`: the same on every retry of a delivery; use it to de-duplicate. */
  id: string;
  /** `webhook-timestamp` in Unix seconds (this attempt's time). */
  timestamp: number;
  /** false when the body was a bare message rather than `{"data": [...]}`. */
  batched: boolean;
}

/**
 * The raw request body, byte for byte as received. A Node `Buffer` is a
 * `Uint8Array`, so it is accepted as is. Never pass `JSON.stringify(parsed)`:
 * re-serialised JSON rarely matches the signed bytes.
 */
export type WebhookBody = string | Uint8Array | ArrayBuffer;

/** Structural stand-in for the Web `Headers` class (no DOM lib needed). */
export interface HeadersLike {
  get(name: string): string | null;
}

/** Node's `req.headers` (lower-case keys) or any object with keys in any letter case. */
export type HeaderRecord = Record<string, string | readonly string[] | undefined | null>;

export type WebhookHeadersInput = HeadersLike | HeaderRecord;

/** Structural stand-in for the Web `Request` class. */
export interface RequestLike {
  headers: HeadersLike;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * `whsec_…` (HMAC) secrets and/or `whpk_…` (ed25519) public keys. A request is
 * accepted when any one signature in its header matches any one of these.
 */
export type VerifyKeys = string | readonly string[];

export interface VerifyOptions {
  /** How far `webhook-timestamp` may be from now, either way. Default 300. */
  toleranceSeconds?: number;
  /** Clock, injectable for tests. Default `() => new Date()`. */
  now?: () => Date;
}
