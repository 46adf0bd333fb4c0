// The change envelope (shared/spec/message.md), as stored and served.
// Stored payloads are JSON text without metadata.consumer, which depends on who
// reads it; withConsumer() adds it when a message is served.

// The envelope's types are the receiver's (src/receive/types.ts): that module
// ships to users' apps with no dependencies, so the gateway imports from it,
// not the other way round, and there is one definition.
export type { Action, Message, MessageMetadata } from '../receive/types.js';

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
