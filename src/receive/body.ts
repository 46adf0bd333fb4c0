// Parsing the body, only ever after its signature has been checked.

import { WebhookVerificationError } from './errors.js';
import type { Message, VerifiedWebhook } from './types.js';

export function parseVerifiedBody<R>(bytes: Uint8Array, id: string, timestamp: number): VerifiedWebhook<R> {
  let value: unknown;
  try {
    // fatal: invalid UTF-8 is an error, not silently replaced characters.
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new WebhookVerificationError('invalid_body', 'the body is correctly signed but is not UTF-8 JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new WebhookVerificationError('invalid_body', 'the body is correctly signed but is not a JSON object');
  }
  const data = (value as { data?: unknown }).data;
  if (Array.isArray(data)) return { id, timestamp, batched: true, data: data as Message<R>[] };
  // A bare message (batching off): wrap it so every handler iterates `data`.
  return { id, timestamp, batched: false, data: [value as Message<R>] };
}
