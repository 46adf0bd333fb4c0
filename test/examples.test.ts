// Every receiving example (examples/*) runs as the real server process a user
// would start, and gets the same signed deliveries: accepted once, de-duplicated,
// and refused (400 + code) when tampered with, stale, or signed with another secret.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSecret } from '../src/signing/index.js';
import {
  batchOf,
  EXAMPLES,
  orderChange,
  post,
  signed,
  startExample,
  type LogLine,
  type RunningExample,
} from './helpers/deliveries.js';

const SECRET = generateSecret();
const running = new Map<string, RunningExample>();

beforeAll(async () => {
  // In parallel: a tsx start-up costs about a second, NestJS a little more.
  const started = await Promise.allSettled(EXAMPLES.map((spec) => startExample(spec, { SLUICE_WEBHOOK_SECRET: SECRET })));
  started.forEach((r, i) => r.status === 'fulfilled' && running.set(EXAMPLES[i].name, r.value));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}, 90_000);

afterAll(async () => {
  await Promise.all([...running.values()].map((r) => r.stop()));
});

const is = (event: string, fields: Record<string, unknown> = {}) => (l: LogLine) =>
  l.event === event && Object.entries(fields).every(([k, v]) => l[k] === v);

describe.each(EXAMPLES.map((e) => e.name))('%s example', (name) => {
  const ex = () => running.get(name)!;

  it('accepts a signed batch and processes every message', async () => {
    const messages = [orderChange('insert'), orderChange('update'), orderChange('delete')];
    const d = signed(batchOf(messages), [SECRET]);
    const reply = await post(ex().url, d);
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({ duplicate: false, processed: 3 });
    for (const m of messages) await ex().waitFor(is('processed', { webhook_id: d.id, idempotency_key: m.key }));
    const line = ex().lines.find(is('processed', { idempotency_key: messages[1].key }))!;
    expect(line).toMatchObject({ table: 'public.orders', action: 'update' });
  });

  it('accepts a bare message (batching off)', async () => {
    const m = orderChange('insert');
    const d = signed(m.text, [SECRET]);
    expect((await post(ex().url, d)).status).toBe(200);
    await ex().waitFor(is('processed', { webhook_id: d.id, idempotency_key: m.key }));
  });

  it('answers 2xx to a re-sent webhook-id without processing it again', async () => {
    const m = orderChange('insert');
    const first = signed(batchOf([m]), [SECRET]);
    expect((await post(ex().url, first)).status).toBe(200);
    // A retry: same id, a newer attempt timestamp, so a fresh signature.
    const retry = signed(first.body, [SECRET], { id: first.id, timestamp: first.timestamp + 1 });
    const reply = await post(ex().url, retry);
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({ duplicate: true, processed: 0 });
    await ex().waitFor(is('duplicate_delivery', { webhook_id: first.id }));
    // Lines come in order, so the duplicate line proves no second 'processed' preceded it.
    expect(ex().lines.filter(is('processed', { idempotency_key: m.key }))).toHaveLength(1);
  });

  it('applies a change once when it comes back inside another delivery', async () => {
    const old = orderChange('update');
    const fresh = orderChange('insert');
    expect((await post(ex().url, signed(batchOf([old]), [SECRET]))).status).toBe(200);
    const d = signed(batchOf([old, fresh]), [SECRET]);
    const reply = await post(ex().url, d);
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({ duplicate: false, processed: 1, skipped: 1 });
    await ex().waitFor(is('duplicate_change', { webhook_id: d.id, idempotency_key: old.key }));
    await ex().waitFor(is('processed', { webhook_id: d.id, idempotency_key: fresh.key }));
  });

  it('accepts a delivery signed by several secrets when one matches (rotation)', async () => {
    const d = signed(batchOf([orderChange()]), [generateSecret(), SECRET]);
    expect(d.headers['webhook-signature'].split(' ')).toHaveLength(2);
    expect((await post(ex().url, d)).status).toBe(200);
  });

  it('accepts a webhook URL that carries a query string', async () => {
    const d = signed(batchOf([orderChange()]), [SECRET]);
    expect((await post(`${ex().url}?source=sluice`, d)).status).toBe(200);
  });

  const rejects = async (reply: Promise<{ status: number; json: Record<string, unknown> | null }>, code: string) => {
    const r = await reply;
    expect(r.status).toBe(400);
    expect(r.json?.error).toBe(code);
    await ex().waitFor(is('rejected', { code }));
  };

  it('rejects a tampered body', async () => {
    const d = signed(batchOf([orderChange()]), [SECRET]);
    await rejects(post(ex().url, d, { body: d.body.replace('"19.90"', '"0.01"') }), 'no_matching_signature');
  });

  it('rejects a timestamp older than 5 minutes', async () => {
    const d = signed(batchOf([orderChange()]), [SECRET], { timestamp: Math.floor(Date.now() / 1000) - 6 * 60 });
    await rejects(post(ex().url, d), 'timestamp_too_old');
  });

  it('rejects a delivery signed with another secret', async () => {
    await rejects(post(ex().url, signed(batchOf([orderChange()]), [generateSecret()])), 'no_matching_signature');
  });

  it('rejects a delivery without the signature headers', async () => {
    const d = signed(batchOf([orderChange()]), [SECRET]);
    await rejects(post(ex().url, d, { headers: { 'content-type': 'application/json' } }), 'missing_header');
  });

  it('never processed a rejected delivery', () => {
    const processed = ex().lines.filter(is('processed')).length;
    // 3 + 1 + 1 + 1 (fresh) + 1 (old) + 1 (rotation) + 1 (query) accepted messages above.
    expect(processed).toBe(9);
  });
});
