// app/api/webhooks/route.ts: a Next.js App Router route handler for Sluice webhooks.
import { verifyRequest, WebhookVerificationError } from 'sluice/webhooks';
import { handleDelivery, log, rejection } from '../../../../shared/handler.js';

// verifyRequest needs nothing but WebCrypto, so 'edge' works as well. Either way
// each instance has its own memory: on serverless, keep the seen-sets of
// shared/handler.ts in your database.
export const runtime = 'nodejs';
// A webhook endpoint is never cached or pre-rendered.
export const dynamic = 'force-dynamic';

export async function POST(request: Request): Promise<Response> {
  // Read per request: Next only inlines NEXT_PUBLIC_ variables at build time.
  const secrets = (process.env.SLUICE_WEBHOOK_SECRET ?? '').split(/\s+/).filter(Boolean);
  if (secrets.length === 0) {
    log({ event: 'misconfigured', message: 'SLUICE_WEBHOOK_SECRET is not set' });
    return Response.json({ error: 'not_configured' }, { status: 500 });
  }
  try {
    // verifyRequest reads the raw bytes (request.arrayBuffer()). Never call
    // request.json() or request.text() before it: the body can be read once.
    const webhook = await verifyRequest(request, secrets);
    return Response.json(handleDelivery(webhook), { status: 200 });
  } catch (err) {
    if (err instanceof WebhookVerificationError) return Response.json(rejection(err), { status: 400 });
    throw err; // Next answers 500; Sluice retries
  }
}
