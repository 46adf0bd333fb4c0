// The retention rules on their own (src/log/retention-plan.ts): no database.
import { describe, expect, it } from 'vitest';
import { formatStatus } from '../src/cli/status.js';
import { heldBack, planRetention, safePoint, type PartitionFacts } from '../src/log/retention-plan.js';

const DAY = 86_400_000;
const now = new Date('2026-12-04T12:00:00Z');
const ago = (days: number) => new Date(now.getTime() - days * DAY);

/** Partitions [i*100, (i+1)*100), one per entry: [age of its newest change in days (null: empty), bytes]. */
function parts(spec: Array<[number | null, number]>): PartitionFacts[] {
  return spec.map(([age, bytes], i) => ({
    relname: `p${i}`,
    lo: BigInt(i * 100),
    hi: BigInt((i + 1) * 100),
    bytes,
    changes: 10,
    oldestAt: age === null ? null : ago(age + 0.5),
    newestAt: age === null ? null : ago(age),
    createdAt: ago(age ?? 9),
  }));
}
const names = (ps: PartitionFacts[]) => ps.map((p) => p.relname);
const week = { max_age_ms: 7 * DAY, max_size_bytes: 1000 };

describe('planRetention', () => {
  it('drops the expired prefix below the safe point and never the newest partition', () => {
    const ps = parts([[10, 1], [9, 1], [8, 1], [1, 1]]);
    const plan = planRetention(ps, { confirmed: 1000n, consumers: [] }, week, now);
    expect(names(plan.drop)).toEqual(['p0', 'p1', 'p2']);
    expect(plan.held).toEqual([]);
    // All expired: the newest still stays.
    expect(names(planRetention(parts([[10, 1], [9, 1]]), { confirmed: 1000n, consumers: [] }, week, now).drop)).toEqual(['p0']);
  });

  it('an empty partition is as old as its creation', () => {
    const ps = parts([[null, 1], [1, 1]]);
    expect(names(planRetention(ps, { confirmed: 1000n, consumers: [] }, week, now).drop)).toEqual(['p0']);
  });

  it('max_size: oldest first while the log is larger, together with max_age', () => {
    const ps = parts([[1, 400], [1, 400], [1, 400], [1, 400]]);
    expect(names(planRetention(ps, { confirmed: 1000n, consumers: [] }, week, now).drop)).toEqual(['p0', 'p1']);
    const mixed = parts([[9, 10], [1, 600], [1, 600], [1, 10]]);
    expect(names(planRetention(mixed, { confirmed: 1000n, consumers: [] }, week, now).drop)).toEqual(['p0', 'p1']);
  });

  it('holds what a consumer (any state) or capture still needs, naming the furthest behind first', () => {
    const ps = parts([[10, 1], [9, 1], [8, 1], [1, 1]]);
    const bounds = {
      confirmed: 1000n,
      consumers: [
        { name: 'b', state: 'active', bound: 250n },
        { name: 'a', state: 'paused', bound: 150n },
        { name: 'idle', state: 'active', bound: null },
        { name: 'ahead', state: 'active', bound: 400n },
      ],
    };
    expect(safePoint(bounds)).toBe(150n);
    const plan = planRetention(ps, bounds, week, now);
    expect(names(plan.drop)).toEqual(['p0']);
    expect(names(plan.held)).toEqual(['p1', 'p2']);
    expect(plan.holders).toEqual({ consumers: [bounds.consumers[1], bounds.consumers[0]], capture: false });
    const held = heldBack(plan, week, now, 'src')!;
    expect(held).toMatchObject({ changes: 20, bytes: 2, consumers: [{ name: 'a', state: 'paused' }, { name: 'b', state: 'active' }], warning: null });
    // Never confirmed: nothing goes, capture holds it.
    const unconfirmed = planRetention(ps, { confirmed: null, consumers: [] }, week, now);
    expect(unconfirmed.drop).toEqual([]);
    expect(unconfirmed.holders).toEqual({ consumers: [], capture: true });
  });

  it('warns past twice max_age or beyond max_size, with the consumer and the fix', () => {
    const bounds = { confirmed: 1000n, consumers: [{ name: 'slow', state: 'paused', bound: 0n }] };
    const old = heldBack(planRetention(parts([[15, 1], [1, 1]]), bounds, week, now), week, now, 'main')!;
    expect(old.warning).toBe(
      'Consumer "slow" (paused) keeps 10 changes (1 bytes, oldest 15.5 d old) of source "main" past its retention: ' +
        'let it receive and ack them (resume it if paused), delete its dead letters, or delete the consumer; pausing does not release them.',
    );
    expect(heldBack(planRetention(parts([[10, 1], [1, 1]]), bounds, week, now), week, now, 'main')!.warning).toBeNull();
    expect(heldBack(planRetention(parts([[1, 2000], [1, 1]]), bounds, week, now), week, now, 'main')!.warning).toMatch(/^Consumer "slow"/);
  });
});

describe('sluice status', () => {
  it('shows the retained log and what holds it back', () => {
    const text = formatStatus({
      sources: [{
        name: 'main', confirmed_lsn: '0/10', last_commit_at: null, slot_active: true, lag_bytes: 0,
        log: {
          partitions: 3, retained_changes: 30, retained_bytes: 3000, oldest_commit_at: '2026-11-20T00:00:00.000Z', dropped_before_lsn: null,
          held_back: { changes: 10, bytes: 1000, oldest_commit_at: '2026-11-20T00:00:00.000Z', oldest_age_ms: 1, consumers: [{ name: 'slow', state: 'paused' }], capture: false, warning: 'W' },
        },
      }],
      consumers: [],
    });
    expect(text).toContain('log: 30 changes, 3000 bytes in 3 partitions, oldest 2026-11-20T00:00:00.000Z');
    expect(text).toContain('held back: 10 changes, 1000 bytes, oldest 2026-11-20T00:00:00.000Z, by slow (paused)');
    expect(text).toContain('warning: W');
  });
});
