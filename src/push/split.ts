// Splitting a failed batch so that one message the endpoint refuses cannot
// hold back (or drag into the dead letters) the other groups that happened to
// share its batch. A batch keeps its id, and so its webhook-id, across retries
// unless it is split; the parts get new ids (messages keep their
// idempotency_key, which is what receivers should deduplicate on).
//
//   halves: on a first failure with no sign that the endpoint takes anything
//           (an outage looks like that too): halve the batch by groups, so a
//           short blip costs one extra request, not one per group.
//   groups: otherwise (the endpoint accepted other batches since this one was
//           first sent, or this batch failed before, or the next attempt is its
//           last): one batch per group, so the next attempt isolates the
//           group the endpoint refuses.
import { randomUUID } from 'node:crypto';
import type { ClaimedBatch } from './queries.js';

export type SplitMode = 'groups' | 'halves';

/** Each row's group; ungrouped rows are each their own. */
function groupKeys(batch: ClaimedBatch): string[] {
  return batch.groups.map((g, i) => (g === null ? `m:${batch.lsns[i]}:${batch.idxs[i]}` : `g:${g}`));
}

export function groupCount(batch: ClaimedBatch): number {
  return new Set(groupKeys(batch)).size;
}

export function splitMode(batch: ClaimedBatch, successSinceFirstAttempt: boolean, maxAttempts?: number): SplitMode | null {
  if (groupCount(batch) <= 1) return null;
  const nextIsLast = maxAttempts !== undefined && batch.attempt + 1 >= maxAttempts;
  return successSinceFirstAttempt || batch.attempt >= 2 || nextIsLast ? 'groups' : 'halves';
}

/** The batch id each row gets: its part's new id (a group's rows stay together and in order). */
export function partition(batch: ClaimedBatch, mode: SplitMode | null): string[] {
  if (!mode) return batch.lsns.map(() => batch.batchId);
  const keys = groupKeys(batch);
  const order = [...new Set(keys)];
  const firstHalf = new Set(order.slice(0, Math.ceil(order.length / 2)));
  const halves = [randomUUID(), randomUUID()];
  const perGroup = new Map(order.map((k) => [k, randomUUID()]));
  return keys.map((k) => (mode === 'groups' ? perGroup.get(k)! : firstHalf.has(k) ? halves[0] : halves[1]));
}
