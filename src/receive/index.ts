// `sluice/webhooks`: verify Sluice deliveries in your own app. Self-contained on
// purpose (no imports outside this folder, no top-level node: imports) so it
// runs on Node, Bun, Deno, Cloudflare Workers and edge runtimes.

export { verifyRequest, verifyWebhook, verifyWebhookAsync } from './verify.js';
export { WebhookVerificationError, type WebhookVerificationErrorCode } from './errors.js';
export { DEFAULT_TOLERANCE_SECONDS } from './headers.js';
export type {
  Action,
  HeaderRecord,
  HeadersLike,
  Message,
  MessageMetadata,
  RequestLike,
  RowMessage,
  VerifiedWebhook,
  VerifyKeys,
  VerifyOptions,
  WebhookBatch,
  WebhookBody,
  WebhookHeadersInput,
} from './types.js';
