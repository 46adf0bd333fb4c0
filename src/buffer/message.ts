// The change envelope (shared/spec/message.md), as stored and served.
// Stored payloads are JSON text without metadata.consumer, which depends on who
// reads it; withConsumer() adds it when a message is served.

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
  transaction_annotations: Record<string, unknown> | null;
  consumer: { id: string; name: string; annotations: Record<string, unknown> };
}

export interface Message<R = Record<string, unknown>> {
  record: R;
  changes: Partial<R> | null;
  action: Action;
  metadata: MessageMetadata;
}

/** base64 of "<commit_lsn>:<commit_idx>", as Sequin derives it. */
export function idempotencyKey(commitLsn: bigint | number | string, commitIdx: number): string {
  return Buffer.from(`${commitLsn}:${commitIdx}`).toString('base64');
}

/**
 * Stored payloads end with `"transaction_annotations":null}}` (metadata is the
 * last key of the message and transaction_annotations the last of metadata), so
 * the consumer is spliced in before the final two braces without re-parsing.
 */
export function withConsumer(payload: string, consumerJson: string): string {
  return payload.slice(0, -2) + ',"consumer":' + consumerJson + '}}';
}

export function consumerJson(c: { id: string; name: string; annotations: Record<string, unknown> }): string {
  return JSON.stringify({ id: c.id, name: c.name, annotations: c.annotations ?? {} });
}
