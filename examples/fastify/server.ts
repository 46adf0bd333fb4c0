// Receiving Sluice webhooks with Fastify 5.
import Fastify, { type FastifyInstance } from 'fastify';
import { verifyWebhook, WebhookVerificationError } from 'sluice/webhooks';
import { readSettings } from '../shared/env.js';
import { handleDelivery, log, rejection } from '../shared/handler.js';

const { port, host, secrets } = readSettings();

// A plugin is its own encapsulation context: the parser change below applies to
// the routes registered in here only, and the rest of the app keeps parsing JSON.
async function webhookRoutes(scope: FastifyInstance): Promise<void> {
  // Fastify's own JSON parser would hand us an object; the signature covers the
  // bytes. Replace every parser in this scope with one that keeps the Buffer.
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  scope.post('/webhooks', async (request, reply) => {
    // request.body is undefined when the POST had no body; '' then fails verification.
    const body = Buffer.isBuffer(request.body) ? request.body : '';
    try {
      const webhook = verifyWebhook(body, request.headers, secrets);
      return reply.code(200).send(handleDelivery(webhook));
    } catch (err) {
      if (err instanceof WebhookVerificationError) return reply.code(400).send(rejection(err));
      throw err; // Fastify answers 500 and Sluice retries
    }
  });
}

// bodyLimit: Fastify's default (1 MiB) answers 413 to a larger batch.
const app = Fastify({ bodyLimit: 10 * 1024 * 1024 });
await app.register(webhookRoutes);
const address = await app.listen({ port, host });
log({ event: 'listening', url: `${address}/webhooks` });
