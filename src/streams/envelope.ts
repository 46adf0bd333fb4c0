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
  /**
   * The message's position in its stream; null in the copy of an outbox
   * message a source's consumer reads among the source's changes (ordered by
   * commit_lsn and commit_idx there; its idempotency key is then given).
   */
  position: bigint | null;
  publishedAt: string;
  /** Published through the outbox: the source and the transaction's commit LSN. */
  outbox?: { source: string; commitLsn: bigint };
}

export function envelope(m: EnvelopeFields): string {
  const outbox = m.outbox ? `,"source":${JSON.stringify(m.outbox.source)},"commit_lsn":${m.outbox.commitLsn}` : '';
  const key = m.idempotencyKey ?? (m.position === null ? null : idempotencyKey(m.position, 0));
  return (
    `{"subject":${JSON.stringify(m.subject)},"data":${m.data},"metadata":{"stream":${JSON.stringify(m.stream)},` +
    `"sequence":${m.position},"key":${JSON.stringify(m.key)},"published_at":"${m.publishedAt}",` +
    `"idempotency_key":${JSON.stringify(key)}${outbox}}}`
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
