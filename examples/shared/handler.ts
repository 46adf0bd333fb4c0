// What a receiver does once a delivery is verified. Shared by the TypeScript
// examples so that each of them shows only its framework's part: getting the
// raw body, verifying it, and choosing the status code.
//
// Sluice delivers at least once, so there are two layers of de-duplication:
//  - webhook-id: the same delivery again (our 2xx was lost, Sluice timed out…).
//    Skip it whole and answer 2xx again, or Sluice keeps retrying it.
//  - metadata.idempotency_key: the same change inside a different delivery (a
//    dead letter retried through the API, a replay). Skip just that message.
// Both live in memory here, bounded. In production keep them in your database,
// e.g. `CREATE TABLE processed_changes (idempotency_key text PRIMARY KEY)`, and
// insert into it IN THE SAME TRANSACTION as the change's effects: an
// `INSERT … ON CONFLICT DO NOTHING` that inserts no row says "already done",
// atomically, across restarts and across every instance of your app.

import type { Message, VerifiedWebhook, WebhookVerificationError } from 'sluice/webhooks';

/** A Set that forgets its oldest entries past `max`, so memory stays bounded however long the app runs. */
export class BoundedSet {
  private readonly items = new Set<string>();

  constructor(private readonly max: number) {}

  has(key: string): boolean {
    return this.items.has(key);
  }

  add(key: string): void {
    this.items.add(key);
    // A Set iterates in insertion order: the first value is the oldest.
    if (this.items.size > this.max) this.items.delete(this.items.values().next().value as string);
  }
}

export interface Outcome {
  duplicate: boolean;
  processed: number;
  skipped: number;
}

const seenDeliveries = new BoundedSet(10_000);
const appliedChanges = new BoundedSet(100_000);

/** One JSON line per event on stdout: easy to read, and what the tests check. */
export function log(fields: Record<string, unknown>): void {
  console.log(JSON.stringify(fields));
}

// Synchronous on purpose: Node runs it to the end before the next request, so two
// concurrent retries of one webhook-id cannot both pass the check. An async
// handler needs the database constraint above (or an "in progress" marker).
export function handleDelivery(webhook: VerifiedWebhook): Outcome {
  if (seenDeliveries.has(webhook.id)) {
    log({ event: 'duplicate_delivery', webhook_id: webhook.id });
    return { duplicate: true, processed: 0, skipped: webhook.data.length };
  }
  let processed = 0;
  for (const message of webhook.data) if (applyChange(webhook.id, message)) processed++;
  // Marked only once every message is applied: if the handler throws halfway the
  // answer is 5xx, Sluice retries this webhook-id, and the idempotency keys skip
  // the messages already done.
  seenDeliveries.add(webhook.id);
  return { duplicate: false, processed, skipped: webhook.data.length - processed };
}

/** Your business logic goes here; it must tolerate seeing a change twice. */
function applyChange(webhookId: string, message: Message): boolean {
  const { idempotency_key, table_schema, table_name, record_pks } = message.metadata;
  const fields = { webhook_id: webhookId, idempotency_key };
  if (appliedChanges.has(idempotency_key)) {
    log({ event: 'duplicate_change', ...fields });
    return false;
  }
  log({ event: 'processed', ...fields, table: `${table_schema}.${table_name}`, action: message.action, record_pks });
  appliedChanges.add(idempotency_key);
  return true;
}

/** The 400 body for a delivery that failed verification: the code says which check failed. */
export function rejection(err: WebhookVerificationError): { error: string; message: string } {
  log({ event: 'rejected', code: err.code, message: err.message });
  return { error: err.code, message: err.message };
}
