// The transactional outbox: application code publishes to a stream inside its
// own transaction with
//   SELECT pg_logical_emit_message(true, 'sluice:<stream>', '{"subject": …, "data": …}')
// (or sluice.publish(…), which setup installs: src/capture/setup-queries.ts).
// The message is in the WAL if and only if the transaction commits, and
// capture meets it in commit order between the transaction's own changes;
// it is stored in the stream's log in the same buffer transaction that
// stores those changes and moves the source's position past them, so a crash
// can neither lose it nor store it twice (src/streams/outbox.ts).
import { NAME_RE } from '../config/schema.js';
import { MESSAGE_KEY_MAX as PUBLISH_MAX_KEY } from '../streams/envelope.js';
import { subjectError } from '../pipeline/route/subjects.js';
import { BACKFILL_MARK_PREFIX } from './backfill-mark.js';

export const OUTBOX_PREFIX = 'sluice:';

/** An outbox message as capture met it, checked. */
export interface OutboxMessage {
  stream: string;
  subject: string;
  /** The data as JSON text. */
  data: string;
  /** The group key (default: the subject). */
  key: string;
  idempotencyKey: string | null;
  /** The transaction that published it: its commit and the message's index among its changes. */
  commitLsn: bigint;
  commitIdx: number;
  committedAt: string;
}

/** The stream a logical message's prefix publishes to, or null when it is no outbox message. */
export function outboxStream(prefix: string): string | null {
  if (!prefix.startsWith(OUTBOX_PREFIX) || prefix === BACKFILL_MARK_PREFIX) return null;
  const name = prefix.slice(OUTBOX_PREFIX.length);
  return NAME_RE.test(name) ? name : null;
}

export type OutboxFields = Pick<OutboxMessage, 'subject' | 'data' | 'key' | 'idempotencyKey'>;

/** The message's fields, or why its content is refused (a sentence, for the log). */
export function parseOutbox(content: Uint8Array): OutboxFields | string {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8'));
  } catch {
    return 'the content is not JSON';
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'the content is not a JSON object ({"subject": …, "data": …})';
  const m = v as Record<string, unknown>;
  const unknown = Object.keys(m).filter((k) => !['subject', 'data', 'key', 'idempotency_key'].includes(k));
  if (unknown.length) return `unknown field ${JSON.stringify(unknown[0])} (the fields are subject, data, key, idempotency_key)`;
  if (typeof m.subject !== 'string') return 'subject is required (a string such as "orders.created")';
  const why = subjectError(m.subject);
  if (why) return `subject "${m.subject.slice(0, 300)}" ${why}`;
  if (!('data' in m)) return 'data is required (any JSON value; null included)';
  for (const f of ['key', 'idempotency_key'] as const) {
    const s = m[f];
    if (s === undefined || s === null) continue;
    if (typeof s !== 'string' || s.length === 0 || s.length > PUBLISH_MAX_KEY) return `${f} must be a string of 1–${PUBLISH_MAX_KEY} characters`;
  }
  return {
    subject: m.subject,
    data: JSON.stringify(m.data),
    key: typeof m.key === 'string' ? m.key : m.subject,
    idempotencyKey: typeof m.idempotency_key === 'string' ? m.idempotency_key : null,
  };
}
