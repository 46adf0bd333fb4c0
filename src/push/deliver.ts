// Building and sending one batch: the body as a string spliced from stored
// payloads (never parsed: int8/numeric digits stay exact and the hot path stays
// cheap), the Standard Webhooks headers signed over those exact bytes, and up to
// two quick in-process retries of a dropped connection before the durable
// schedule takes over.
import { readFileSync } from 'node:fs';
import pRetry from 'p-retry';
import type { Pool } from 'undici';
import type { Signer } from '../signing/sign.js';
import { postOnce, type HttpResult, type StopSwitch } from './http.js';

function readVersion(): string {
  try {
    // src/push → package.json, and dist/push → package.json alike.
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
export const USER_AGENT = `sluice/${readVersion()}`;

const QUICK_RETRIES = 2;
const QUICK_RETRY_MS = 50;
// A quick retry must finish inside the batch's lease, or another process may
// already be resending it: one timeout plus this margin must still fit.
const LEASE_SAFETY_MS = 500;

export interface Endpoint {
  url: URL;
  pool: Pool;
  /** content-type, user-agent and the consumer's own headers. */
  headers: Record<string, string>;
  /** Null when the consumer has no live secret: no webhook-signature header. */
  sign: Signer | null;
  timeoutMs: number;
  maxResponseBytes: number;
}

export interface DeliveryResult extends HttpResult {
  startedAt: Date;
  durationMs: number;
  /** HTTP requests made for this attempt (1 + quick retries). */
  tries: number;
}

/** Headers every request to this endpoint carries; the consumer's own headers cannot replace Sluice's. */
export function baseHeaders(custom: Record<string, string>): Record<string, string> {
  return { ...custom, 'content-type': 'application/json', 'user-agent': USER_AGENT };
}

/** The delivery id: stable for a batch, so receivers can drop a redelivery. */
export function webhookId(batchId: string): string {
  return 'msg_' + batchId.replace(/-/g, '');
}

/** `{"data":[m1,m2,…]}`, or the bare message when batching is off and there is one. Messages as served (src/render/render.ts). */
export function buildBody(messages: readonly string[], batched: boolean): Buffer {
  if (!batched && messages.length === 1) return Buffer.from(messages[0]);
  let text = '{"data":[';
  for (let i = 0; i < messages.length; i++) {
    if (i > 0) text += ',';
    text += messages[i];
  }
  return Buffer.from(text + ']}');
}

class TransientFault extends Error {
  constructor(readonly result: HttpResult) {
    super(result.error ?? 'transient fault');
  }
}

export async function deliver(
  ep: Endpoint,
  batchId: string,
  body: Buffer,
  opts: { leaseEndsAt: number; stop?: StopSwitch },
): Promise<DeliveryResult> {
  const id = webhookId(batchId);
  const startedAt = new Date();
  let tries = 0;
  const once = async (): Promise<HttpResult> => {
    tries++;
    // A fresh timestamp per request: it says when this attempt was signed.
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = { ...ep.headers, 'webhook-id': id, 'webhook-timestamp': String(timestamp) };
    if (ep.sign) headers['webhook-signature'] = ep.sign({ id, timestamp, body });
    return postOnce(ep.pool, ep.url, headers, body, { timeoutMs: ep.timeoutMs, maxResponseBytes: ep.maxResponseBytes, stop: opts.stop });
  };
  let result = await once();
  // p-retry only once a transient fault happened: the common path stays a plain call.
  if (result.transient && mayRetryQuickly(ep, opts)) {
    try {
      result = await pRetry(
        async () => {
          const r = await once();
          if (r.transient) throw new TransientFault(r);
          return r;
        },
        {
          retries: QUICK_RETRIES - 1,
          minTimeout: QUICK_RETRY_MS,
          factor: 2,
          randomize: true,
          shouldRetry: ({ error }) => error instanceof TransientFault && mayRetryQuickly(ep, opts),
        },
      );
    } catch (err) {
      if (!(err instanceof TransientFault)) throw err;
      result = err.result;
    }
    if (result.transient) result = { ...result, error: `${result.error} (after ${tries} tries)` };
  }
  return { ...result, startedAt, durationMs: Date.now() - startedAt.getTime(), tries };
}

function mayRetryQuickly(ep: Endpoint, opts: { leaseEndsAt: number; stop?: StopSwitch }): boolean {
  return !opts.stop?.stopped && Date.now() + QUICK_RETRY_MS * 4 + ep.timeoutMs + LEASE_SAFETY_MS < opts.leaseEndsAt;
}
