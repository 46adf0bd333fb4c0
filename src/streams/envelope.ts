// A stream message as stored (docs/streams.md#the-message): metadata last, so
// that a consumer's metadata is spliced in when it is served, as for a change
// (src/buffer/message.ts withConsumer).
import { idempotencyKey } from '../buffer/message.js';

/** Longest key or idempotency_key a message may carry. */
export const MESSAGE_KEY_MAX = 255;

export interface EnvelopeFields {
  stream: string;
  subject: string;
  /** JSON text. */
  data: string;
  key: string;
  idempotencyKey: string | null;
  position: bigint;
  publishedAt: string;
  /** Published through the outbox: the source and the transaction's commit LSN. */
  outbox?: { source: string; commitLsn: bigint };
}

export function envelope(m: EnvelopeFields): string {
  const outbox = m.outbox ? `,"source":${JSON.stringify(m.outbox.source)},"commit_lsn":${m.outbox.commitLsn}` : '';
  return (
    `{"subject":${JSON.stringify(m.subject)},"data":${m.data},"metadata":{"stream":${JSON.stringify(m.stream)},` +
    `"sequence":${m.position},"key":${JSON.stringify(m.key)},"published_at":"${m.publishedAt}",` +
    `"idempotency_key":${JSON.stringify(m.idempotencyKey ?? idempotencyKey(m.position, 0))}${outbox}}}`
  );
}

/**
 * The envelope with its position left out, for the buffer to fill in when it
 * hands the position out (src/streams/queries.ts PUBLISH): POSITION where the
 * sequence goes, DEFAULT_KEY where the idempotency key derived from it goes.
 * Neither character can occur in JSON text (control characters are escaped
 * inside strings), nor in a stream name or subject.
 */
export const POSITION = '\x1f';
export const DEFAULT_KEY = '\x1d';

export function envelopeTemplate(m: Omit<EnvelopeFields, 'position' | 'outbox'>): string {
  return (
    `{"subject":${JSON.stringify(m.subject)},"data":${m.data},"metadata":{"stream":${JSON.stringify(m.stream)},` +
    `"sequence":${POSITION},"key":${JSON.stringify(m.key)},"published_at":"${m.publishedAt}",` +
    `"idempotency_key":${m.idempotencyKey === null ? `"${DEFAULT_KEY}"` : JSON.stringify(m.idempotencyKey)}}}`
  );
}
