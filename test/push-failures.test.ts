// Failure handling against real receivers scripted to fail: the durable retry
// schedule, dead letters, Retry-After, redirects, 410, timeouts, resets, slow
// and oversized bodies, a failing group beside healthy ones, auto-disable.
import { describe, expect, it } from 'vitest';
import { listDeadLetters, retryDeadLetters } from '../src/buffer/dead-letters.js';
import { claimBatches } from '../src/push/queries.js';
import { eventually } from './helpers/capture.js';
import {
  inconsistentBatches,
  insertMessages,
  insertWebhookConsumer,
  messagesFor,
  seqsByGroup,
  sleep,
  usePushEnv,
  webhookSettings,
  type Delivery,
} from './helpers/receiver.js';

const env = usePushEnv('push_failures');
const hasGroup = (d: Delivery, g: string) => d.messages.some((m) => m.record.id === g);
/**
 * Requests that carried a group's message while an earlier one of the group was
 * not yet accepted, other than as the head of what was left (rule 3). Each
 * request's messages of a group must be the next ones the group has not had accepted.
 */
function outOfTurn(ds: Delivery[]): string[] {
  const acceptedUpTo = new Map<string, number>();
  const bad: string[] = [];
  for (const d of ds) {
    const perGroup = new Map<string, number[]>();
    for (const m of d.messages) perGroup.set(m.record.id, [...(perGroup.get(m.record.id) ?? []), m.record.seq]);
    for (const [g, seqs] of perGroup) {
      const next = (acceptedUpTo.get(g) ?? -1) + 1;
      if (seqs.some((s, i) => s !== next + i)) bad.push(`${d.n}: ${g} ${seqs.join(',')} (next ${next})`);
      if (d.status >= 200 && d.status < 300) acceptedUpTo.set(g, next + seqs.length - 1);
    }
  }
  return bad;
}
const gaps = (ds: Delivery[]) => ds.slice(1).map((d, i) => d.receivedAt - ds[i].receivedAt);

describe('push failures', () => {
  it('retries a 5xx with the same webhook-id on a growing schedule kept in Postgres, then delivers', async () => {
    const r = await env.receiver((d) => ({ status: d.n <= 3 ? 500 : 200, body: 'not now' }));
    const retry = { initial_ms: 200, factor: 2, cap_ms: 2000, max_attempts: 10 };
    const id = await insertWebhookConsumer(env.pool, 'five-hundred', webhookSettings(r.url, { retry }));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a'], 3));

    await eventually(async () => r.deliveries.length >= 1);
    // Backing off: the schedule and the batch identity are a row in Postgres,
    // once the failure is recorded (after the response; on a busy machine that
    // took more than the 50 ms this test used to sleep). Polled every 5 ms:
    // the first backoff lasts at least 100 ms.
    const batchRows = async () =>
      (await env.pool.query(
        'SELECT due_at > now() AS waiting, attempt, cardinality(lsns) AS n, last_error FROM sluice.webhook_batches WHERE consumer_id = $1',
        [id],
      )).rows;
    const rows = await eventually(async () => {
      const got = await batchRows();
      return got.some((b) => b.last_error !== null) ? got : null;
    }, 10_000, 5);
    expect(rows).toEqual([{ waiting: true, attempt: 1, n: 3, last_error: 'HTTP 500: not now' }]);

    await eventually(async () => r.accepted().length === 3 && (await env.remaining(id)) === 0);
    expect(new Set(r.deliveries.map((d) => d.id)).size).toBe(1);
    // Equal jitter: each wait is at least half of initial * factor^(n-1), at most all of it (+ slack).
    gaps(r.deliveries).forEach((gap, i) => {
      const base = 200 * 2 ** i;
      expect(gap).toBeGreaterThanOrEqual(base / 2 - 20);
      expect(gap).toBeLessThan(base + 400);
    });
    const attempts = await env.attempts(id);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.status])).toEqual([
      [1, 'retry', 500],
      [2, 'retry', 500],
      [3, 'retry', 500],
      [4, 'delivered', 200],
    ]);
    expect(attempts[0].response_excerpt).toBe('not now');
  });

  it('dead-letters a group that keeps failing, lets the other groups through, and retries dead letters on demand', async () => {
    let healed = false;
    const r = await env.receiver((d) => ({ status: !healed && hasGroup(d, 'bad') ? 500 : 200 }));
    const retry = { initial_ms: 30, factor: 2, cap_ms: 100, max_attempts: 3 };
    const id = await insertWebhookConsumer(env.pool, 'poison', webhookSettings(r.url, { retry, batch_size: 10 }));
    const lines: Array<{ level: string; obj: Record<string, unknown>; msg?: string }> = [];
    const keep = (level: string) => (obj: Record<string, unknown>, msg?: string) => void lines.push({ level, obj, msg });
    await env.run({ log: { info: keep('info'), warn: keep('warn'), error: keep('error') } });
    await insertMessages(env.pool, id, messagesFor(['bad', 'g1', 'g2', 'g3', 'g4'], 25));

    await eventually(async () => (await env.remaining(id, 1)) === 5 && (await env.remaining(id)) === 5, 20_000);
    const byGroup = seqsByGroup(r.accepted());
    expect(byGroup.get('bad')).toBeUndefined();
    for (const g of ['g1', 'g2', 'g3', 'g4']) expect(byGroup.get(g)).toEqual([0, 1, 2, 3, 4]);
    const dead = await listDeadLetters(env.pool, id, { limit: 10 });
    expect(dead.map((x) => JSON.parse(x.payload).record.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(dead.every((x) => x.deliver_count === 3 && x.last_error === 'HTTP 500')).toBe(true);
    // A batch may carry a group's consecutive messages: they are dead-lettered together.
    const outcomes = (await env.attempts(id)).map((a) => a.outcome);
    expect(outcomes.filter((o) => o === 'dead_letter').length).toBeGreaterThanOrEqual(1);
    // Each failure and each dead letter is one log line naming the consumer, the group and the reason.
    const deadLines = lines.filter((l) => l.msg === 'webhook delivery failed; the messages are dead letters');
    expect(deadLines.length).toBe(outcomes.filter((o) => o === 'dead_letter').length);
    for (const l of deadLines) {
      expect(l).toMatchObject({ level: 'error', obj: { consumer: 'poison', group_count: 1, reason: 'HTTP 500', outcome: 'dead_letter' } });
      expect(String((l.obj.groups as string[])[0])).toContain('bad');
    }
    expect(lines.filter((l) => l.msg === 'webhook delivery failed').every((l) => l.level === 'warn' && l.obj.outcome === 'retry' && l.obj.consumer === 'poison')).toBe(true);

    healed = true;
    const before = r.deliveries.length;
    expect(await retryDeadLetters(env.pool, id, 'all')).toBe(5);
    await eventually(async () => (await env.remaining(id)) === 0);
    const again = r.deliveries.slice(before).flatMap((d) => d.messages);
    expect(again.map((m) => m.record.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(inconsistentBatches(r.deliveries)).toEqual([]);
  });

  it('keeps the group blocked behind its dead letter when dead letters block', async () => {
    const r = await env.receiver((d) => ({ status: hasGroup(d, 'bad') ? 500 : 200 }));
    const retry = { initial_ms: 30, factor: 2, cap_ms: 60, max_attempts: 2 };
    const id = await insertWebhookConsumer(env.pool, 'blocking', webhookSettings(r.url, { retry }), { dead_letter_blocks_group: true });
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['bad', 'ok'], 2));
    await eventually(async () => (await env.remaining(id, 1)) === 1 && (await env.remaining(id)) === 1);
    // Later messages of both groups: "ok" flows, "bad" waits behind its dead letter.
    await insertMessages(env.pool, id, messagesFor(['bad', 'ok'], 4, 2000));
    await eventually(async () => seqsByGroup(r.accepted()).get('ok')?.length === 3);
    await sleep(300);
    expect(await env.remaining(id, 1)).toBe(1);
    expect(await env.remaining(id, 0)).toBe(2);
    const badSent = r.deliveries.flatMap((d) => d.messages.filter((m) => m.record.id === 'bad').map((m) => m.metadata.commit_lsn));
    expect(new Set(badSent)).toEqual(new Set([1000]));
  });

  it('dead-letters once the first attempt is older than max_age', async () => {
    const r = await env.receiver(() => ({ status: 503 }));
    const retry = { initial_ms: 100, factor: 1, cap_ms: 100, max_age_ms: 350 };
    const id = await insertWebhookConsumer(env.pool, 'aged', webhookSettings(r.url, { retry }));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a'], 1));
    await eventually(async () => (await env.remaining(id, 1)) === 1);
    const attempts = await env.attempts(id);
    expect(attempts.length).toBeGreaterThanOrEqual(3);
    expect(attempts.length).toBeLessThanOrEqual(8);
    expect(attempts.at(-1).outcome).toBe('dead_letter');
  });

  it('honours Retry-After in seconds and as an HTTP date', async () => {
    const at = () => new Date(Date.now() + 2000).toUTCString();
    const r = await env.receiver((d) =>
      d.n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : d.n === 2 ? { status: 503, headers: { 'retry-after': at() } } : { status: 200 },
    );
    const retry = { initial_ms: 20, factor: 2, cap_ms: 5000, max_attempts: 5 };
    const id = await insertWebhookConsumer(env.pool, 'slow-down', webhookSettings(r.url, { retry }));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a'], 1));
    await eventually(async () => r.accepted().length === 1, 10_000);
    const [first, second] = gaps(r.deliveries);
    expect(first).toBeGreaterThanOrEqual(980);
    expect(first).toBeLessThan(1800);
    expect(second).toBeGreaterThanOrEqual(980);
    expect(second).toBeLessThan(2800);
  });

  it('does not follow redirects: a 3xx is a failed attempt', async () => {
    let redirect = true;
    const r = await env.receiver((d) =>
      d.path === '/hook' && redirect ? { status: 301, headers: { location: `http://127.0.0.1:${r.port}/elsewhere` } } : { status: 200 },
    );
    const id = await insertWebhookConsumer(env.pool, 'moved', webhookSettings(r.url));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a'], 2));
    await eventually(async () => r.deliveries.length >= 2);
    redirect = false;
    await eventually(async () => (await env.remaining(id)) === 0);
    expect(r.deliveries.every((d) => d.path === '/hook')).toBe(true);
    const [a] = await env.attempts(id);
    expect([a.status, a.outcome, a.error]).toEqual([301, 'retry', 'redirect not followed']);
  });

  it('pauses the consumer on 410 Gone and resends the same batch after resume', async () => {
    let gone = true;
    const r = await env.receiver(() => ({ status: gone ? 410 : 200 }));
    const id = await insertWebhookConsumer(env.pool, 'gone', webhookSettings(r.url));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a', 'b'], 4));
    await eventually(async () => {
      const { rows } = await env.pool.query('SELECT state, state_reason FROM sluice.consumers WHERE id = $1', [id]);
      return rows[0].state === 'paused' && /410 Gone/.test(rows[0].state_reason);
    });
    await sleep(400);
    expect(r.deliveries).toHaveLength(1);
    expect(await env.remaining(id)).toBe(4);
    expect((await env.attempts(id)).map((a) => a.outcome)).toEqual(['paused']);

    gone = false;
    await env.pool.query(`UPDATE sluice.consumers SET state = 'active', state_reason = NULL WHERE id = $1`, [id]);
    await env.registry.reload();
    await eventually(async () => (await env.remaining(id)) === 0);
    expect(r.deliveries[1].id).toBe(r.deliveries[0].id);
  });

  it('records timeouts, retries a reset connection at once, and acks despite slow or oversized bodies', async () => {
    const script = new Map<string, (n: number) => any>([
      ['hang', (n) => (n === 1 ? { hang: true } : { status: 200 })],
      ['reset', (n) => (n === 1 ? { reset: true } : { status: 200 })],
      ['slow', () => ({ status: 200, trickleMs: 50 })],
      ['big', () => ({ status: 200, body: 'y'.repeat(1 << 20) })],
    ]);
    const seen = new Map<string, number>();
    const r = await env.receiver((d) => {
      const g = d.messages[0].record.id;
      seen.set(g, (seen.get(g) ?? 0) + 1);
      return script.get(g)!(seen.get(g)!);
    });
    const ids: Record<string, string> = {};
    for (const g of script.keys()) {
      ids[g] = await insertWebhookConsumer(env.pool, g, webhookSettings(r.url, { timeout_ms: 400, max_response_bytes: 10_000 }));
    }
    await env.run();
    for (const g of script.keys()) await insertMessages(env.pool, ids[g], messagesFor([g], 1));
    await eventually(async () => {
      for (const id of Object.values(ids)) if ((await env.remaining(id)) > 0) return false;
      return true;
    });
    const hang = await env.attempts(ids.hang);
    expect(hang.map((a) => a.outcome)).toEqual(['retry', 'delivered']);
    expect(hang[0].error).toMatch(/^timeout/);
    expect(hang[0].status).toBeNull();
    // The reset was retried in-process: two requests, one attempt, one webhook-id.
    const reset = await env.attempts(ids.reset);
    expect(reset.map((a) => [a.attempt, a.outcome])).toEqual([[1, 'delivered']]);
    const resetRequests = r.deliveries.filter((d) => d.messages[0].record.id === 'reset');
    expect(resetRequests).toHaveLength(2);
    expect(resetRequests[0].id).toBe(resetRequests[1].id);
    const slow = await env.attempts(ids.slow);
    expect(slow.map((a) => [a.outcome, a.status])).toEqual([['delivered', 200]]);
    const big = await env.attempts(ids.big);
    expect(big.map((a) => a.outcome)).toEqual(['delivered']);
    expect(big[0].response_excerpt).toHaveLength(4096);
  });

  it('lets healthy groups flow while one group keeps failing', async () => {
    const r = await env.receiver((d) => ({ status: hasGroup(d, 'sick') ? 500 : 200 }));
    const retry = { initial_ms: 100, factor: 2, cap_ms: 400, max_attempts: 1000 };
    const id = await insertWebhookConsumer(env.pool, 'mixed', webhookSettings(r.url, { retry, batch_size: 20, max_in_flight: 2 }));
    const groups = ['sick', ...Array.from({ length: 19 }, (_, i) => `ok${i}`)];
    await env.run();
    await insertMessages(env.pool, id, messagesFor(groups, 400));
    await eventually(async () => r.accepted().length === 380 && (await env.remaining(id)) === 20, 20_000);
    const byGroup = seqsByGroup(r.accepted());
    for (const g of groups.slice(1)) expect(byGroup.get(g)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(await env.remaining(id)).toBe(20);
    // The sick group's head is the only message it ever sent.
    const sick = r.deliveries.filter((d) => hasGroup(d, 'sick')).flatMap((d) => d.messages.filter((m) => m.record.id === 'sick'));
    expect(new Set(sick.map((m) => m.record.seq))).toEqual(new Set([0]));
    expect(inconsistentBatches(r.deliveries)).toEqual([]);
  });

  it('sends a failing group\'s neighbours again at once, apart from it, while its own retries keep their schedule', async () => {
    const r = await env.receiver((d) => ({ status: hasGroup(d, 'poison') ? 500 : 200 }));
    // A long backoff: a healthy message held for even its shortest wait (5 s) fails the 2 s bound below.
    const retry = { initial_ms: 10_000, factor: 2, cap_ms: 60_000, max_attempts: 3 };
    const id = await insertWebhookConsumer(env.pool, 'neighbours', webhookSettings(r.url, { retry, batch_size: 50, max_in_flight: 4 }));
    const groups = ['poison', ...Array.from({ length: 49 }, (_, i) => `ok${i}`)];
    await env.run();
    // Five rounds, 150 ms apart, of two messages per group: the poison group's
    // head shares its first batch with healthy groups' messages.
    const insertedAt = new Map<number, number>();
    for (let round = 0; round < 5; round++) {
      const msgs = [0, 1].flatMap((k) =>
        groups.map((group, g) => ({ lsn: 1000 + round * 100 + k * 50 + g, idx: 0, group, seq: round * 2 + k })),
      );
      await insertMessages(env.pool, id, msgs);
      for (const m of msgs) insertedAt.set(m.lsn, Date.now());
      await sleep(150);
    }
    await eventually(async () => r.accepted().length === 490, 10_000);

    // Every healthy message arrived within 2 s of its insert (old behaviour: the
    // neighbours waited out the poison group's backoff, 5-10 s), in order, and
    // no group ever had a later message out while an earlier one was.
    const late = r
      .deliveries.filter((d) => d.status === 200)
      .flatMap((d) => d.messages.map((m) => d.receivedAt - insertedAt.get(m.metadata.commit_lsn)!));
    expect(Math.max(...late)).toBeLessThan(2000);
    const byGroup = seqsByGroup(r.accepted());
    for (const g of groups.slice(1)) expect(byGroup.get(g)).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(outOfTurn(r.deliveries)).toEqual([]);
    expect(inconsistentBatches(r.deliveries)).toEqual([]);
    const refused = r.deliveries.filter((d) => d.status === 500);
    expect(refused.length).toBeGreaterThan(1);
    // Only the poison group's head was ever sent, and the last refusal carried it alone.
    expect(new Set(refused.flatMap((d) => d.messages.filter((m) => m.record.id === 'poison').map((m) => m.record.seq)))).toEqual(new Set([0]));
    expect(refused.at(-1)!.messages.map((m) => m.record.id)).toEqual(['poison']);

    // The requests that isolated it were all its first attempt: neither its
    // schedule nor its neighbours' attempt counts moved.
    let attempts = await env.attempts(id);
    expect(new Set(attempts.map((a) => a.attempt))).toEqual(new Set([1]));
    expect(attempts.filter((a) => a.outcome === 'delivered').reduce((n, a) => n + a.message_count, 0)).toBe(490);
    expect(attempts.filter((a) => a.outcome === 'retry')).toHaveLength(refused.length);
    const poisonRow = async () =>
      (
        await env.pool.query(
          `SELECT attempt, cardinality(lsns) AS n, (extract(epoch FROM due_at - last_attempt_at) * 1000)::float8 AS wait_ms
           FROM sluice.webhook_batches WHERE consumer_id = $1`,
          [id],
        )
      ).rows;
    // Backing off alone, on the schedule's first step: initial (10 s), equal jitter.
    let [row] = await poisonRow();
    expect(row).toMatchObject({ attempt: 1, n: 1 });
    expect(row.wait_ms).toBeGreaterThanOrEqual(5000 - 50);
    expect(row.wait_ms).toBeLessThanOrEqual(10_000 + 500);

    // Its backoff over: attempt 2 fails and waits initial × factor (20 s, jittered).
    await env.pool.query(`UPDATE sluice.webhook_batches SET due_at = now() WHERE consumer_id = $1`, [id]);
    await eventually(async () => (await env.attempts(id)).some((a) => a.attempt === 2));
    [row] = await poisonRow();
    expect(row.wait_ms).toBeGreaterThanOrEqual(10_000 - 50);
    expect(row.wait_ms).toBeLessThanOrEqual(20_000 + 500);
    // Attempt 3 is its last: a dead letter, after 3 attempts; no healthy message is one.
    await env.pool.query(`UPDATE sluice.webhook_batches SET due_at = now() WHERE consumer_id = $1`, [id]);
    await eventually(async () => (await env.remaining(id, 1)) === 1);
    const dead = await listDeadLetters(env.pool, id, { limit: 10 });
    expect(dead.map((x) => [JSON.parse(x.payload).record.id, x.deliver_count])).toEqual([['poison', 3]]);
    attempts = await env.attempts(id);
    expect(attempts.filter((a) => a.attempt > 1).map((a) => [a.attempt, a.outcome, a.message_count])).toEqual([
      [2, 'retry', 1],
      [3, 'dead_letter', 1],
    ]);
    // The group is free again: its later messages go, in order (the receiver still refuses them).
    await eventually(async () => r.deliveries.some((d) => d.messages.some((m) => m.record.id === 'poison' && m.record.seq === 1)));
  });

  it('isolates a refused group before dead-lettering a batch at its last attempt, so only that group becomes a dead letter', async () => {
    const r = await env.receiver((d) => ({ status: hasGroup(d, 'bad') ? 422 : 200 }));
    const retry = { initial_ms: 10_000, factor: 2, cap_ms: 60_000, max_attempts: 1 };
    const id = await insertWebhookConsumer(env.pool, 'last-try', webhookSettings(r.url, { retry, batch_size: 20 }));
    const groups = ['bad', ...Array.from({ length: 9 }, (_, i) => `ok${i}`)];
    await env.run();
    await insertMessages(env.pool, id, messagesFor(groups, 20));
    await eventually(async () => (await env.remaining(id, 1)) === 2 && (await env.remaining(id)) === 2);
    const dead = await listDeadLetters(env.pool, id, { limit: 10 });
    expect(dead.map((x) => [JSON.parse(x.payload).record.id, JSON.parse(x.payload).record.seq, x.deliver_count])).toEqual([
      ['bad', 0, 1],
      ['bad', 1, 1],
    ]);
    const byGroup = seqsByGroup(r.accepted());
    for (const g of groups.slice(1)) expect(byGroup.get(g)).toEqual([0, 1]);
    expect(new Set((await env.attempts(id)).map((a) => a.attempt))).toEqual(new Set([1]));
  });

  it('does not split at once for an endpoint that refuses everything, nor for rate limiting', async () => {
    // Down (every request a 500): the first three failed batches are split at
    // once, their parts fail too, and from then on everything waits for the schedule.
    const down = await env.receiver(() => ({ status: 500 }));
    const retry = { initial_ms: 10_000, factor: 2, cap_ms: 60_000, max_attempts: 5 };
    const id = await insertWebhookConsumer(env.pool, 'down', webhookSettings(down.url, { retry, batch_size: 40, max_in_flight: 4 }));
    // Busy: 429, 503, and a 504 with Retry-After ask for less traffic: not split at once.
    const answers = [{ status: 429 }, { status: 503 }, { status: 504, headers: { 'retry-after': '5' } }];
    const busy = await env.receiver((d) => answers[d.n % 3]);
    const slow = await insertWebhookConsumer(env.pool, 'busy', webhookSettings(busy.url, { retry, batch_size: 10, max_in_flight: 3 }));
    await env.run();
    const groups = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    await insertMessages(env.pool, id, messagesFor(groups('d', 160), 160));
    await insertMessages(env.pool, slow, messagesFor(groups('b', 30), 30));
    await eventually(async () => down.deliveries.length >= 16 && busy.deliveries.length >= 3);
    await sleep(1000);
    expect(down.deliveries).toHaveLength(4 + 3 * 4);
    expect(down.deliveries.slice(4).every((d) => d.messages.length === 10)).toBe(true);
    expect(busy.deliveries).toHaveLength(3);
    for (const consumer of [id, slow]) {
      const { rows } = await env.pool.query<{ soonest: number }>(
        `SELECT (extract(epoch FROM min(due_at) - now()) * 1000)::float8 AS soonest FROM sluice.webhook_batches WHERE consumer_id = $1`,
        [consumer],
      );
      expect(rows[0].soonest).toBeGreaterThan(2000);
      expect(new Set((await env.attempts(consumer)).map((a) => a.attempt))).toEqual(new Set([1]));
    }
  });

  it('disables a consumer that has failed for disable_after with no success', async () => {
    const r = await env.receiver(() => ({ status: 500 }));
    const retry = { initial_ms: 50, factor: 1, cap_ms: 50, max_attempts: 1000 };
    const id = await insertWebhookConsumer(env.pool, 'hopeless', webhookSettings(r.url, { retry, disable_after_ms: 400 }));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a'], 1));
    await eventually(async () => {
      const { rows } = await env.pool.query('SELECT state, state_reason FROM sluice.consumers WHERE id = $1', [id]);
      return rows[0].state === 'disabled' && /every delivery failed since/.test(rows[0].state_reason);
    });
    const n = r.deliveries.length;
    await sleep(300);
    expect(r.deliveries.length).toBe(n);
    const { rows } = await env.pool.query('SELECT consecutive_failures, first_failure_at FROM sluice.webhook_health WHERE consumer_id = $1', [id]);
    expect(rows[0].consecutive_failures).toBe(n);
  });

  it('claims a due batch whole, with its id, and never a group twice', async () => {
    const id = await insertWebhookConsumer(env.pool, 'claims', webhookSettings('http://127.0.0.1:9/hook'));
    await insertMessages(env.pool, id, messagesFor(['a', 'b'], 6));
    const opts = { consumerId: id, batches: 4, batchSize: 3, leaseMs: 60_000, deadLetterBlocksGroup: false, fresh: true };
    const first = await claimBatches(env.pool, opts);
    // Consecutive messages of a group share a batch; the groups' later messages wait.
    expect(first.batches.map((b) => b.groups)).toEqual([['a', 'b', 'a']]);
    expect((await claimBatches(env.pool, opts)).batches).toEqual([]);
    const batch = first.batches[0];
    // Its lease ran out (its process died): it goes again whole, under the same id.
    await env.pool.query(`UPDATE sluice.webhook_batches SET due_at = now() - interval '1 second' WHERE consumer_id = $1 AND batch_id = $2`, [
      id,
      batch.batchId,
    ]);
    const again = await claimBatches(env.pool, opts);
    expect(again.batches).toHaveLength(1);
    expect(again.batches[0]).toMatchObject({ batchId: batch.batchId, attempt: 2, lsns: batch.lsns });
    expect(again.batches[0].token).not.toBe(batch.token);
  });
});
