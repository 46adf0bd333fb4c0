// End to end: a running Sluice (capture on an embedded Postgres + the push
// Dispatcher) captures real inserts, updates and deletes and POSTs them, signed,
// to every example receiver running as a real process. Each example must verify
// and process every change once, in commit order per row, and Sluice must see
// every batch acked. One more consumer signs with a secret the receiver does
// not know: its deliveries are refused with 400, and Sluice records that.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsumerConfig, WebhookSettings } from '../src/config/types.js';
import { Dispatcher } from '../src/push/dispatcher.js';
import { generateSecret } from '../src/signing/index.js';
import { consumerConfig, eventually, quietLog, sourceConfig, sql, startCapture, type CaptureFixture } from './helpers/capture.js';
import { EXAMPLES, startExample, type LogLine, type RunningExample } from './helpers/deliveries.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

const secrets = new Map(EXAMPLES.map((e) => [e.name, generateSecret()]));
const running = new Map<string, RunningExample>();
let pg: TestPg | undefined;
let fx: CaptureFixture | undefined;
let dispatcher: Dispatcher | undefined;

function webhook(url: string, secret: string, batched: boolean): WebhookSettings {
  return {
    url,
    headers: { 'x-sluice-test': 'examples-e2e' },
    secrets: [secret],
    batch_size: batched ? 10 : 1,
    batched,
    batch_timeout_ms: 20,
    max_in_flight: 2,
    timeout_ms: 5_000,
    max_response_bytes: 65_536,
    retry: { initial_ms: 100, factor: 2, cap_ms: 500, max_attempts: 3 },
    allow_private_ranges: ['127.0.0.0/8'],
  };
}

const hook = (name: string, w: WebhookSettings): ConsumerConfig =>
  consumerConfig(`${name}-hook`, 'shop', ['public.orders'], { kind: 'webhook', pull: undefined, webhook: w });

beforeAll(async () => {
  // Postgres and the example processes start side by side.
  const [started, testPg] = await Promise.all([
    Promise.allSettled(EXAMPLES.map((spec) => startExample(spec, { SLUICE_WEBHOOK_SECRET: secrets.get(spec.name)! }))),
    startTestPg(),
  ]);
  pg = testPg;
  started.forEach((r, i) => r.status === 'fulfilled' && running.set(EXAMPLES[i].name, r.value));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;

  const url = await pg.createDatabase('examples_e2e');
  await sql(
    url,
    `CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id int8 NOT NULL, status text NOT NULL,
       amount numeric(14,2) NOT NULL, note text, tags jsonb)`,
  );
  // Half the examples get batches, half the bare message (batching off).
  const consumers = EXAMPLES.map((e, i) => hook(e.name, webhook(running.get(e.name)!.url, secrets.get(e.name)!, i % 2 === 0)));
  consumers.push(hook('wrong-secret', webhook(running.get('express')!.url, generateSecret(), true)));
  fx = await startCapture(url, sourceConfig('shop', ['public.orders']), consumers);
  dispatcher = new Dispatcher({ pool: fx.pool, consumers: fx.consumers, instanceId: 'examples-e2e', log: quietLog });
  dispatcher.start();

  // Values whose JSON text a parse + re-serialise would change (int8 > 2^53,
  // numeric scale, non-ASCII, jsonb): the examples must verify the raw bytes.
  await sql(
    url,
    `BEGIN;
     INSERT INTO public.orders VALUES
       (1, 9007199254740993, 'pending', 19.90, 'café ☕', '{"gift": true, "lines": [1, 2]}'),
       (2, 2, 'pending', 5.00, 'ünïcödé', null),
       (3, 3, 'pending', 0.10, null, '[]'),
       (4, 4, 'pending', 12345678901.99, '"quoted"', '{}'),
       (5, 5, 'pending', 1.00, 'to delete', null);
     COMMIT;
     UPDATE public.orders SET status = 'paid' WHERE id IN (1, 2);
     DELETE FROM public.orders WHERE id = 5;`,
  );
}, 120_000);

afterAll(async () => {
  await dispatcher?.stop();
  await fx?.stop();
  await Promise.all([...running.values()].map((r) => r.stop()));
  await pg?.stop();
});

const processed = (ex: RunningExample): LogLine[] => ex.lines.filter((l) => l.event === 'processed' && l.table === 'public.orders');

describe.each(EXAMPLES.map((e) => e.name))('%s example, fed by a running Sluice', (name) => {
  it('verifies and processes every captured change once, in commit order per row', async () => {
    const ex = running.get(name)!;
    await eventually(async () => processed(ex).length >= 8, 30_000);
    const lines = processed(ex);
    expect(lines).toHaveLength(8);
    expect(new Set(lines.map((l) => l.idempotency_key)).size).toBe(8);
    const actionsOf = (pk: string) => lines.filter((l) => (l.record_pks as string[])[0] === pk).map((l) => l.action);
    expect(actionsOf('1')).toEqual(['insert', 'update']);
    expect(actionsOf('2')).toEqual(['insert', 'update']);
    expect(actionsOf('5')).toEqual(['insert', 'delete']);
    expect(lines.every((l) => String(l.webhook_id).startsWith('msg_'))).toBe(true);
    // Batched consumers sent several changes per delivery; bare ones one each.
    const deliveries = new Set(lines.map((l) => l.webhook_id)).size;
    if (EXAMPLES.findIndex((e) => e.name === name) % 2 === 0) expect(deliveries).toBeLessThan(8);
    else expect(deliveries).toBe(8);
    // Sluice got a 2xx for every batch: nothing of this consumer is left in the buffer.
    await eventually(async () => {
      const { rows } = await fx!.pool.query(
        `SELECT count(*)::int AS n FROM sluice.messages m JOIN sluice.consumers c ON c.id = m.consumer_id WHERE c.name = $1`,
        [`${name}-hook`],
      );
      return rows[0].n === 0;
    }, 10_000);
  });
});

describe('a consumer signing with a secret the receiver does not have', () => {
  it('is refused with 400 no_matching_signature, and Sluice records the failed attempts', async () => {
    const ex = running.get('express')!;
    await ex.waitFor((l) => l.event === 'rejected' && l.code === 'no_matching_signature', 30_000);
    const attempts = await eventually(async () => {
      const { rows } = await fx!.pool.query<{ status: number | null }>(
        `SELECT a.status FROM sluice.webhook_attempts a JOIN sluice.consumers c ON c.id = a.consumer_id WHERE c.name = 'wrong-secret-hook'`,
      );
      return rows.length > 0 ? rows : null;
    }, 10_000);
    expect(attempts!.every((a) => a.status === 400)).toBe(true);
  });
});
