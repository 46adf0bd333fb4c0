// A webhook consumer of a stream, through the whole gateway: messages
// published over the HTTP API reach a real receiver on 127.0.0.1, signed,
// filtered by subject, in order per key.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/log.js';
import { verifyWebhook } from '../src/receive/index.js';
import { eventually } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';
import { TEST_SECRET } from './helpers/receiver.js';

const TOKEN = 'test-admin-token-0123456789';
let pgh: TestPg;
let gateway: Gateway;
let receiver: http.Server;
const received: Array<{ body: string; headers: http.IncomingHttpHeaders }> = [];

beforeAll(async () => {
  pgh = await startTestPg();
  const url = await pgh.createDatabase('stream_webhook');
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString(), headers: req.headers });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const port = (receiver.address() as { port: number }).port;
  const config = loadConfig(
    {
      text: `
http: { host: 127.0.0.1, port: 0 }
auth: { admin_token: ${TOKEN} }
streams:
  - name: events
consumers:
  - name: orders-hook
    stream: events
    subjects: ["orders.*"]
    kind: webhook
    webhook:
      url: http://127.0.0.1:${port}/hook
      secrets: ["${TEST_SECRET}"]
      batch_timeout: 0ms
      allow_private_ranges: ["127.0.0.0/8"]
`,
    },
    {},
  );
  gateway = new Gateway({ config, bufferUrl: url, log: createLogger('silent') });
  await gateway.start();
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  receiver?.close();
  await pgh?.stop();
});

describe('a webhook consumer of a stream', () => {
  it('gets the matching messages published over HTTP, signed, in order per key', async () => {
    const publish = (body: object) =>
      fetch(`${gateway.httpAddress}/api/streams/events/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const messages = Array.from({ length: 60 }, (_, i) => ({ subject: i % 3 === 2 ? 'users.new' : `orders.${i % 2 ? 'paid' : 'new'}`, data: { i }, key: `order-${i % 5}` }));
    for (let i = 0; i < messages.length; i += 20) {
      const r = await publish({ messages: messages.slice(i, i + 20) });
      expect(r.status).toBe(200);
    }
    const wanted = messages.filter((m) => m.subject.startsWith('orders.'));
    const got = () => received.flatMap((r) => verifyWebhook<any>(r.body, r.headers, TEST_SECRET).data as any[]);
    await eventually(async () => got().length >= wanted.length, 20_000);
    const delivered = got();
    expect(delivered.map((m) => m.data.i).sort((a, b) => a - b)).toEqual(wanted.map((m) => m.data.i));
    for (let k = 0; k < 5; k++) {
      const mine = delivered.filter((m) => m.metadata.key === `order-${k}`).map((m) => m.data.i);
      expect(mine).toEqual([...mine].sort((a, b) => a - b));
    }
    expect(delivered[0].metadata).toMatchObject({ stream: 'events', consumer: { name: 'orders-hook' } });
  }, 60_000);
});
