// Splitting a failed batch so that one message the endpoint refuses cannot
// hold back (or drag into the dead letters) the other groups that happened to
// share its batch. A batch keeps its id, and so its webhook-id, across retries
// unless it is split; the parts get new ids (messages keep their
// idempotency_key, which is what receivers should deduplicate on). A group's
// messages always stay together, in order, in one part.
//
// An error status for the whole batch does not say which message caused it,
// so the refused group is found by splitting:
//
//   at once (isolate): the endpoint answered with an error that can be about
//           the content (4xx/5xx, not 408/429/503 or a Retry-After) and it
//           does not look down. The batch goes again at once in up to 8 parts, as
//           the same attempt; a part that fails again is split again, so the
//           refused group is alone after a few quick rounds (100 groups in 8
//           parts: 3) while every other group is delivered on the way. The
//           refused group then backs off on its own schedule, which these
//           rounds did not advance: they repeat its attempt number.
//   on the schedule, otherwise (no answer, a timeout, rate limiting, or an
//           endpoint that fails everything: isolating would only multiply the
//           requests it fails):
//     halves: on a first failure with no sign that the endpoint takes anything
//           (an outage looks like that too): halve the batch by groups, so a
//           short blip costs one extra request, not one per group.
//     groups: otherwise (the endpoint accepted other batches since this one was
//           first sent, or this batch failed before, or the next attempt is its
//           last): one batch per group, so the next attempt isolates the
//           group the endpoint refuses.
import { randomUUID } from 'node:crypto';
import type { ClaimedBatch } from './queries.js';

export type SplitMode = 'groups' | 'halves';

/** At most this many parts per isolating split: more quick rounds, but fewer requests, than one part per group. */
export const MAX_ISOLATION_PARTS = 8;

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

/** Error statuses that ask for less traffic, not other content. */
const BUSY_STATUSES = new Set([408, 429, 503]);

/**
 * Whether an answer can be about what the batch held, so that sending its
 * groups apart may get most of them through: an error status, except a
 * timeout (408), rate limiting (429), unavailable (503) and any Retry-After
 * that was honoured, which ask for less traffic. No answer at all (a refused
 * connection, a timeout) says nothing about the content.
 */
export function mayBeAboutContent(status: number | null, retryAfterMs: number | null): boolean {
  return status !== null && status >= 400 && !BUSY_STATUSES.has(status) && retryAfterMs === null;
}

/** Parts for an isolating split: as many as can go at once (max_in_flight), at least 2, at most MAX_ISOLATION_PARTS. */
export function isolationParts(batch: ClaimedBatch, maxInFlight: number): number {
  return Math.min(groupCount(batch), MAX_ISOLATION_PARTS, Math.max(2, maxInFlight));
}

/** The batch id each row gets when the batch is split into `parts` parts by group, in order of first appearance. */
export function splitInto(batch: ClaimedBatch, parts: number): string[] {
  const keys = groupKeys(batch);
  const order = [...new Set(keys)];
  const n = Math.max(1, Math.min(parts, order.length));
  const ids = Array.from({ length: n }, () => randomUUID());
  // Consecutive groups share a part; parts differ in size by at most one group.
  const partOf = new Map(order.map((k, j) => [k, ids[Math.floor((j * n) / order.length)]]));
  return keys.map((k) => partOf.get(k)!);
}

/** The batch id each row gets: its part's new id (a group's rows stay together and in order). */
export function partition(batch: ClaimedBatch, mode: SplitMode | null): string[] {
  if (!mode) return batch.lsns.map(() => batch.batchId);
  return splitInto(batch, mode === 'halves' ? 2 : groupCount(batch));
}
