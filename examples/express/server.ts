// Receiving Sluice webhooks with Express 5.
import express from 'express';
import { verifyWebhook, WebhookVerificationError, type VerifiedWebhook } from 'sluice/webhooks';
import { readSettings } from '../shared/env.js';
import { handleDelivery, log, rejection } from '../shared/handler.js';

const { port, host, secrets } = readSettings();
const app = express();

// express.raw, not express.json: the signature covers the exact bytes sent, and
// JSON.stringify(req.body) would not reproduce them. `limit`: Express's default
// of 100 kB is smaller than a full batch can be.
app.post('/webhooks', express.raw({ type: '*/*', limit: '10mb' }), (req, res) => {
  // Without a body express.raw leaves req.body undefined; '' then fails verification.
  const body: Buffer | string = Buffer.isBuffer(req.body) ? req.body : '';
  let webhook: VerifiedWebhook;
  try {
    webhook = verifyWebhook(body, req.headers, secrets);
  } catch (err) {
    if (err instanceof WebhookVerificationError) {
      res.status(400).json(rejection(err));
      return;
    }
    throw err; // anything else is our bug: Express answers 500 and Sluice retries
  }
  res.status(200).json(handleDelivery(webhook));
});

// Anything mounted with express.json() (app.use(express.json())) must come AFTER
// this route, or it consumes the body first.

const server = app.listen(port, host, () => {
  const addr = server.address();
  log({ event: 'listening', url: `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}/webhooks` });
});
