// Receiving Sluice webhooks with nothing but node:http.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { verifyWebhook, WebhookVerificationError } from 'sluice/webhooks';
import { readSettings } from '../shared/env.js';
import { handleDelivery, log, rejection } from '../shared/handler.js';

const { port, host, secrets } = readSettings();
const MAX_BODY_BYTES = 10 * 1024 * 1024;

class TooLarge extends Error {}

/** The request's bytes, exactly as received; refuses to buffer more than MAX_BODY_BYTES. */
async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new TooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const server = createServer(async (req, res) => {
  // The path without its query: a webhook URL may carry one (?source=sluice).
  if (req.method !== 'POST' || req.url?.split('?')[0] !== '/webhooks') return send(res, 404, { error: 'not_found' });
  try {
    const webhook = verifyWebhook(await readBody(req), req.headers, secrets);
    send(res, 200, handleDelivery(webhook));
  } catch (err) {
    if (err instanceof WebhookVerificationError) return send(res, 400, rejection(err));
    if (err instanceof TooLarge) {
      // Close the connection rather than read the rest of an oversized body.
      res.setHeader('connection', 'close');
      return send(res, 413, { error: 'body_too_large' });
    }
    console.error(err);
    send(res, 500, { error: 'internal' }); // Sluice retries
  }
});

server.listen(port, host, () => {
  const addr = server.address();
  log({ event: 'listening', url: `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}/webhooks` });
});
