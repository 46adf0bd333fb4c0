// What retention does to one source's log, decided from facts alone (no SQL
// here, so the rules can be read and tested on their own):
//
//   wanted  the partitions retention wants gone: oldest first, every partition
//           whose newest change is older than max_age, then, while the log is
//           still larger than max_size, the oldest of the rest. Never the
//           newest partition, where capture writes.
//   drop    the wanted ones that nothing needs: every change in them lies below
//           the source's safe point (see `safePoint`).
//   held    the wanted ones something still needs: the consumers (or the
//           capture) named in `holders`, furthest behind first.
//
// Partitions are contiguous and ordered, so `drop` and `held` are a prefix and
// the run after it: retention never leaves a hole in the log.
import type { Retention } from './retention-defaults.js';

export interface PartitionFacts {
  relname: string;
  /** Covers commit LSNs [lo, hi). */
  lo: bigint;
  hi: bigint;
  /** Heap, indexes and TOAST. */
  bytes: number;
  /** Exact once counted (see migrations/0011), else the statistics' estimate. */
  changes: number;
  /** Commit time of its first and last change; null when empty. */
  oldestAt: Date | null;
  newestAt: Date | null;
  createdAt: Date;
}

/** A consumer of the source, and the LSN below which it needs nothing (null: it needs nothing). */
export interface ConsumerBound {
  name: string;
  state: string;
  bound: bigint | null;
}

export interface SourceBounds {
  /** The source's confirmed position; null when capture never confirmed one (nothing can go). */
  confirmed: bigint | null;
  consumers: ConsumerBound[];
}

export interface RetentionPlan {
  drop: PartitionFacts[];
  held: PartitionFacts[];
  /** What holds `held` (any of it): consumers furthest behind first, and whether capture has not confirmed past it. */
  holders: { consumers: ConsumerBound[]; capture: boolean };
}

const MIN_BIGINT = -(2n ** 63n);

/**
 * Below this LSN every change of the source is done with: each consumer (paused
 * and disabled ones too) has taken it in and holds no message for it, and
 * capture has confirmed past it, so it will never be written again.
 */
export function safePoint(bounds: SourceBounds): bigint {
  let safe = bounds.confirmed ?? MIN_BIGINT;
  for (const c of bounds.consumers) if (c.bound !== null && c.bound < safe) safe = c.bound;
  return safe;
}

/** `parts` ordered by lo. */
export function planRetention(parts: PartitionFacts[], bounds: SourceBounds, retention: Retention, now: Date): RetentionPlan {
  // The newest partition is never a candidate: capture writes there (and caches its bound).
  const candidates = parts.length - 1;
  const cutoff = now.getTime() - retention.max_age_ms;
  let wanted = 0;
  for (let i = 0; i < candidates; i++) {
    // An empty partition is as old as its creation.
    const newest = (parts[i].newestAt ?? parts[i].createdAt).getTime();
    if (newest < cutoff) wanted = i + 1;
  }
  let remaining = parts.reduce((sum, p) => sum + p.bytes, 0);
  let bySize = 0;
  while (bySize < candidates && remaining > retention.max_size_bytes) remaining -= parts[bySize++].bytes;
  wanted = Math.max(wanted, bySize);

  const safe = safePoint(bounds);
  let free = 0;
  while (free < wanted && parts[free].hi <= safe) free++;
  const held = parts.slice(free, wanted);
  // Whoever needs any of the held partitions holds them back.
  const blocked = held.at(-1)?.hi;
  return {
    drop: parts.slice(0, free),
    held,
    holders: {
      consumers:
        blocked === undefined
          ? []
          : bounds.consumers
              .filter((c) => c.bound !== null && c.bound < blocked)
              .sort((a, b) => (a.bound! < b.bound! ? -1 : a.bound! > b.bound! ? 1 : a.name.localeCompare(b.name))),
      capture: blocked !== undefined && (bounds.confirmed === null || bounds.confirmed < blocked),
    },
  };
}

export interface HeldBack {
  changes: number;
  bytes: number;
  oldest_commit_at: string | null;
  oldest_age_ms: number | null;
  consumers: Array<{ name: string; state: string }>;
  /** Capture has not confirmed past it yet (it may still write there). */
  capture: boolean;
  /** Set past the threshold (see `heldBackWarning`); the same text the gateway logs. */
  warning: string | null;
}

/** The held part of a plan as status shows it; null when nothing is held. */
export function heldBack(plan: RetentionPlan, retention: Retention, now: Date, source: string): HeldBack | null {
  if (plan.held.length === 0) return null;
  const oldest = plan.held.find((p) => p.oldestAt !== null)?.oldestAt ?? null;
  const held: HeldBack = {
    changes: plan.held.reduce((sum, p) => sum + p.changes, 0),
    bytes: plan.held.reduce((sum, p) => sum + p.bytes, 0),
    oldest_commit_at: oldest?.toISOString() ?? null,
    oldest_age_ms: oldest ? Math.max(0, now.getTime() - oldest.getTime()) : null,
    consumers: plan.holders.consumers.map((c) => ({ name: c.name, state: c.state })),
    capture: plan.holders.capture,
    warning: null,
  };
  held.warning = heldBackWarning(held, retention, source);
  return held;
}

/**
 * Past the threshold (the oldest held change is older than twice max_age, or
 * more than max_size is held), the sentence that names the consumer and the
 * fix; null below it. Pausing is no fix: a paused consumer keeps its place.
 */
export function heldBackWarning(held: HeldBack, retention: Retention, source: string): string | null {
  const tooOld = held.oldest_age_ms !== null && held.oldest_age_ms > 2 * retention.max_age_ms;
  const tooBig = held.bytes > retention.max_size_bytes;
  if (!tooOld && !tooBig) return null;
  const amount = `${held.changes} changes (${held.bytes} bytes${held.oldest_age_ms !== null ? `, oldest ${formatAge(held.oldest_age_ms)} old` : ''})`;
  const who = held.consumers[0];
  if (!who) {
    return `The log of source "${source}" keeps ${amount} past its retention because capture has not confirmed past them; check the source's capture.`;
  }
  const others = held.consumers.length > 1 ? ` (also: ${held.consumers.slice(1).map((c) => c.name).join(', ')})` : '';
  return (
    `Consumer "${who.name}" (${who.state}) keeps ${amount} of source "${source}" past its retention${others}: ` +
    `let it receive and ack them (resume it if paused), delete its dead letters, or delete the consumer; pausing does not release them.`
  );
}

function formatAge(ms: number): string {
  const h = ms / 3_600_000;
  if (h >= 48) return `${(h / 24).toFixed(1)} d`;
  if (h >= 1) return `${h.toFixed(1)} h`;
  return `${Math.round(ms / 1000)} s`;
}
