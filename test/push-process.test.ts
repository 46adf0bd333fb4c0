// Dispatchers in real child processes: the retry schedule and the webhook-id
// survive kill -9, a killed process's in-flight batch passes to another only
// when its lease ends, and two processes on one consumer share the work
// without sending a batch twice or breaking per-group order.
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from './helpers/capture.js';
import { insertMessages, insertWebhookConsumer, messagesFor, seqsByGroup, usePushEnv, webhookSettings } from './helpers/receiver.js';

const env = usePushEnv('push_process');
const FIXTURE = 'test/fixtures/push-dispatcher.ts';

interface ChildDispatcher {
  output: string[];
  ready: Promise<void>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

const children: ChildDispatcher[] = [];

// node --import tsx, not the tsx CLI: the CLI runs the script in a grandchild
// that a SIGKILL to the CLI would leave running.
function startDispatcher(instanceId: string): ChildDispatcher {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: { ...process.env, BUFFER_URL: env.url, INSTANCE_ID: instanceId, MAX_LIFETIME_MS: '60000' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`dispatcher ${instanceId} not ready: ${output.join('\n')}`)), 20_000);
    const onData = (d: Buffer) => {
      output.push(...d.toString().split('\n').filter(Boolean));
      if (output.includes('dispatching')) {
        clearTimeout(t);
        resolve();
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
  });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const child: ChildDispatcher = {
    output,
    ready,
    kill9: async () => {
      if (alive()) proc.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (alive()) proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      await child.kill9();
    },
  };
  children.push(child);
  return child;
}

afterEach(async () => {
  for (const c of children.splice(0)) await c.stop();
});

const dueAt = async (id: string) =>
  (await env.pool.query<{ due_at: Date }>('SELECT due_at FROM sluice.webhook_batches WHERE consumer_id = $1', [id])).rows[0]?.due_at;

describe('push across processes', () => {
  it('keeps the retry schedule and the webhook-id through a kill -9 during backoff', async () => {
    const r = await env.receiver((d) => ({ status: d.n === 1 ? 500 : 200 }));
    const retry = { initial_ms: 3000, factor: 2, cap_ms: 10_000, max_attempts: 5 };
    const id = await insertWebhookConsumer(env.pool, 'survivor', webhookSettings(r.url, { retry }));
    const a = startDispatcher('A');
    await a.ready;
    await insertMessages(env.pool, id, messagesFor(['a'], 1));
    await eventually(async () => (await env.attempts(id)).length === 1);
    const scheduled = (await dueAt(id)).getTime();
    // Equal jitter on 3 s: between 1.5 and 3 s after the failure.
    expect(scheduled - r.deliveries[0].receivedAt).toBeGreaterThanOrEqual(1400);
    expect(scheduled - r.deliveries[0].receivedAt).toBeLessThanOrEqual(3100);

    await a.kill9();
    const b = startDispatcher('B');
    await b.ready;
    expect(r.deliveries).toHaveLength(1);
    await eventually(async () => r.accepted().length === 1 && (await env.remaining(id)) === 0, 15_000);
    const [first, second] = r.deliveries;
    expect(second.id).toBe(first.id);
    // Neither reset (sooner) nor lost (much later): the persisted time, give or take the safety poll.
    expect(second.receivedAt).toBeGreaterThanOrEqual(scheduled - 50);
    expect(second.receivedAt).toBeLessThan(scheduled + 1500);
    const attempts = await env.attempts(id);
    expect(attempts.map((x) => [x.attempt, x.outcome, x.instance_id])).toEqual([
      [1, 'retry', 'A'],
      [2, 'delivered', 'B'],
    ]);
  });

  it('hands a killed process\'s in-flight batch to another process only when its lease ends', async () => {
    const r = await env.receiver((d) => (d.n === 1 ? { hang: true } : { status: 200 }));
    // Lease = timeout + 2 s + 10%: 5.3 s. A is killed well within its 3 s timeout.
    const id = await insertWebhookConsumer(env.pool, 'leased', webhookSettings(r.url, { timeout_ms: 3000 }));
    const a = startDispatcher('A');
    await a.ready;
    await insertMessages(env.pool, id, messagesFor(['a'], 2));
    await eventually(async () => r.deliveries.length === 1);
    // The lease runs from A's claim, which a loaded machine can put well
    // before the request arrives: read it from the batch row.
    const { rows: [lease] } = await env.pool.query<{ claimed: Date; due: Date }>(
      'SELECT last_attempt_at AS claimed, due_at AS due FROM sluice.webhook_batches WHERE consumer_id = $1', [id]);
    expect(lease.due.getTime() - lease.claimed.getTime()).toBeGreaterThanOrEqual(5000);
    expect(lease.due.getTime() - lease.claimed.getTime()).toBeLessThan(5600);
    const b = startDispatcher('B');
    await b.ready;
    await a.kill9();
    await eventually(async () => r.accepted().length === 2 && (await env.remaining(id)) === 0, 15_000);
    const [first, second] = r.deliveries;
    expect(second.id).toBe(first.id);
    expect(second.receivedAt).toBeGreaterThanOrEqual(lease.due.getTime() - 50);
    expect(second.receivedAt).toBeLessThan(lease.due.getTime() + 2500);
    expect((await env.attempts(id)).map((x) => [x.attempt, x.outcome, x.instance_id])).toEqual([[2, 'delivered', 'B']]);
  });

  it('shares one consumer between two processes without double sends, keeping per-group order', async () => {
    const inFlight = new Map<string, number>();
    let overlaps = 0;
    const r = await env.receiver(async (d) => {
      inFlight.set(d.id, (inFlight.get(d.id) ?? 0) + 1);
      if (inFlight.get(d.id)! > 1) overlaps++;
      await new Promise((s) => setTimeout(s, Math.random() * 15));
      inFlight.set(d.id, inFlight.get(d.id)! - 1);
      return { status: 200 };
    });
    const id = await insertWebhookConsumer(env.pool, 'shared', webhookSettings(r.url, { batch_size: 10, max_in_flight: 4 }));
    const groups = Array.from({ length: 50 }, (_, i) => `g${i}`);
    const [a, b] = [startDispatcher('A'), startDispatcher('B')];
    await Promise.all([a.ready, b.ready]);
    await insertMessages(env.pool, id, messagesFor(groups, 2000));
    await eventually(async () => (await env.remaining(id)) === 0, 40_000);

    expect(overlaps).toBe(0);
    expect(new Set(r.deliveries.map((d) => d.id)).size).toBe(r.deliveries.length);
    const accepted = r.accepted();
    expect(accepted).toHaveLength(2000);
    expect(new Set(accepted.map((m) => m.metadata.commit_lsn)).size).toBe(2000);
    for (const [, seqs] of seqsByGroup(accepted)) expect(seqs).toEqual(seqs.map((_, i) => i));
    const { rows } = await env.pool.query('SELECT DISTINCT instance_id FROM sluice.webhook_attempts WHERE consumer_id = $1', [id]);
    expect(rows.map((x) => x.instance_id).sort()).toEqual(['A', 'B']);
  });
});
