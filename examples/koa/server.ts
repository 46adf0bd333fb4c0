// Receiving Sluice webhooks with Koa 3.
import Koa from 'koa';
import getRawBody from 'raw-body';
import { verifyWebhook, WebhookVerificationError } from 'sluice/webhooks';
import { readSettings } from '../shared/env.js';
import { handleDelivery, log, rejection } from '../shared/handler.js';

const { port, host, secrets } = readSettings();
const app = new Koa();

// Kept ahead of any body parser (koa-bodyparser, @koa/bodyparser): whichever
// reads ctx.req first consumes the stream, and a parser keeps only an object
// (or a decoded string), not the bytes that were signed.
app.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/webhooks') return next();
  // raw-body enforces the limit and the Content-Length, answering 413/400 itself.
  const body = await getRawBody(ctx.req, { length: ctx.get('content-length') || undefined, limit: '10mb' });
  try {
    const webhook = verifyWebhook(body, ctx.headers, secrets);
    ctx.status = 200;
    ctx.body = handleDelivery(webhook);
  } catch (err) {
    if (!(err instanceof WebhookVerificationError)) throw err; // Koa answers 500; Sluice retries
    ctx.status = 400;
    ctx.body = rejection(err);
  }
});

const server = app.listen(port, host, () => {
  const addr = server.address();
  log({ event: 'listening', url: `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}/webhooks` });
});
