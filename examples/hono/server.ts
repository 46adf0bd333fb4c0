// Receiving Sluice webhooks with Hono, on Node through @hono/node-server. The
// route itself is runtime-neutral: the same code runs on Workers, Deno and Bun.
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { verifyRequest, WebhookVerificationError } from 'sluice/webhooks';
import { readSettings } from '../shared/env.js';
import { handleDelivery, log, rejection } from '../shared/handler.js';

const { port, host, secrets } = readSettings();
const app = new Hono();

// Node's adapter sets no body size limit of its own.
app.post('/webhooks', bodyLimit({ maxSize: 10 * 1024 * 1024 }), async (c) => {
  try {
    // c.req.raw is the Web Request; verifyRequest reads its bytes (arrayBuffer)
    // and checks them with WebCrypto. Do not call c.req.json() first: use the
    // parsed data verifyRequest returns.
    const webhook = await verifyRequest(c.req.raw, secrets);
    return c.json(handleDelivery(webhook), 200);
  } catch (err) {
    if (err instanceof WebhookVerificationError) return c.json(rejection(err), 400);
    throw err; // Hono answers 500; Sluice retries
  }
});

serve({ fetch: app.fetch, port, hostname: host }, (info) => {
  log({ event: 'listening', url: `http://${host}:${info.port}/webhooks` });
});
