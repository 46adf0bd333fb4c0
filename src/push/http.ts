// One POST to an endpoint, over a keep-alive undici Pool per origin (and per
// SSRF allow-list, since the guard lives in the pool's connector). Redirects
// are never followed (undici only follows them with an interceptor we don't
// add). The response body is read up to max_response_bytes and then dropped:
// only its first bytes are kept, for the attempt log.
import { EventEmitter } from 'node:events';
import { Pool } from 'undici';
import { AddressGuard, guardedConnector, SsrfRefusedError, type Lookup } from './ssrf.js';

export const EXCERPT_BYTES = 4096;
const CONNECT_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_MS = 30_000;

export interface HttpResult {
  /** Null when no response arrived. */
  status: number | null;
  retryAfter: string | null;
  /** The first EXCERPT_BYTES of the body as text (null without a response). */
  excerpt: string | null;
  /** What went wrong when no response arrived. */
  error: string | null;
  /** A socket fault mid-request that an immediate retry is likely to get past. */
  transient: boolean;
}

export interface PostOptions {
  timeoutMs: number;
  maxResponseBytes: number;
  /** Aborts the request (gateway shutting down). */
  stop?: StopSwitch;
}

/**
 * One request's abort signal. undici takes an EventEmitter with `aborted` and
 * `reason` as well as an AbortSignal, and this is far cheaper to create: at a
 * few thousand requests a second AbortController construction was ~7% of the
 * dispatcher's CPU (AbortSignal.any/timeout, before that, ~3% more).
 */
export class RequestSignal extends EventEmitter {
  aborted = false;
  reason: Error | undefined;

  abort(reason: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

/** Aborts every request it tracks at once (shutdown). */
export class StopSwitch {
  private readonly live = new Set<RequestSignal>();
  stopped = false;

  track(signal: RequestSignal): void {
    if (this.stopped) signal.abort(reason('AbortError', 'the gateway is stopping'));
    else this.live.add(signal);
  }

  untrack(signal: RequestSignal): void {
    this.live.delete(signal);
  }

  stopAll(): void {
    this.stopped = true;
    for (const signal of this.live) signal.abort(reason('AbortError', 'the gateway is stopping'));
    this.live.clear();
  }
}

const reason = (name: string, message: string) => Object.assign(new Error(message), { name });

// Fault codes worth one quick in-process retry: the peer dropped a connection
// (typically a keep-alive socket it had just closed) rather than refusing work.
const TRANSIENT_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ECONNABORTED']);

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function codes(err: unknown): string[] {
  const out: string[] = [];
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; e = e.cause as typeof e, i++) {
    if (typeof e.code === 'string') out.push(e.code);
  }
  return out;
}

function describe(err: unknown, timeoutMs: number): { error: string; transient: boolean } {
  if (err instanceof SsrfRefusedError) return { error: err.message, transient: false };
  const e = err as Error & { code?: string };
  const cs = codes(err);
  if (e?.name === 'TimeoutError' || cs.some((c) => TIMEOUT_CODES.has(c))) {
    return { error: `timeout: no complete response within ${timeoutMs} ms`, transient: false };
  }
  if (cs.includes('UND_ERR_CONNECT_TIMEOUT')) return { error: 'timeout: could not connect', transient: false };
  if (e?.name === 'AbortError') return { error: 'aborted: the gateway is stopping', transient: false };
  const code = cs.find((c) => c !== 'UND_ERR_SOCKET') ?? cs[0];
  const message = e?.message ?? String(err);
  return { error: code && !message.includes(code) ? `${code}: ${message}` : message, transient: cs.some((c) => TRANSIENT_CODES.has(c)) };
}

/** Reads at most `max` bytes of the body, keeps the first EXCERPT_BYTES. Never throws. */
async function readCapped(body: AsyncIterable<Buffer> & { destroy?: () => void }, max: number): Promise<string> {
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let total = 0;
  try {
    for await (const chunk of body) {
      if (keptBytes < EXCERPT_BYTES) {
        const part = chunk.subarray(0, EXCERPT_BYTES - keptBytes);
        kept.push(part);
        keptBytes += part.length;
      }
      total += chunk.length;
      // Leaving the loop destroys the stream: the rest is never read.
      if (total >= max) break;
    }
  } catch {
    // A body that breaks off after the status arrived: the status still counts.
  }
  // toString('utf8') replaces a character cut in half; NULs are not valid in Postgres text.
  return Buffer.concat(kept).toString('utf8').replace(/\u0000/g, '');
}

export async function postOnce(pool: Pool, url: URL, headers: Record<string, string>, body: Buffer, opts: PostOptions): Promise<HttpResult> {
  const signal = new RequestSignal();
  // The whole exchange, body included, has timeoutMs: undici's own timeouts are
  // per silence, so a body trickling a byte a second would never end.
  const deadline = setTimeout(() => signal.abort(reason('TimeoutError', 'timeout')), opts.timeoutMs);
  opts.stop?.track(signal);
  try {
    const res = await pool.request({
      path: url.pathname + url.search,
      method: 'POST',
      headers,
      body,
      signal,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
    const retryAfter = res.headers['retry-after'];
    // Most receivers answer with an empty body: release the connection without
    // the async iteration (measurable at thousands of requests a second).
    const excerpt = res.headers['content-length'] === '0' ? (await res.body.dump(), '') : await readCapped(res.body, opts.maxResponseBytes);
    return {
      status: res.statusCode,
      retryAfter: Array.isArray(retryAfter) ? (retryAfter[0] ?? null) : (retryAfter ?? null),
      excerpt,
      error: null,
      transient: false,
    };
  } catch (err) {
    // signal.reason tells a deadline from a shutdown when undici reports both as aborts.
    const cause = signal.aborted ? signal.reason : err;
    return { status: null, retryAfter: null, excerpt: null, ...describe(cause, opts.timeoutMs) };
  } finally {
    clearTimeout(deadline);
    opts.stop?.untrack(signal);
  }
}

/** Pools by origin + allow-list, shared by every consumer that posts there. */
export class EndpointClients {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly lookup?: Lookup) {}

  private static key(url: URL, allow: readonly string[]): string {
    return `${url.origin} ${[...allow].sort().join(',')}`;
  }

  get(url: URL, allowPrivateRanges: readonly string[]): Pool {
    const key = EndpointClients.key(url, allowPrivateRanges);
    let pool = this.pools.get(key);
    if (!pool) {
      const guard = new AddressGuard(allowPrivateRanges, this.lookup);
      pool = new Pool(url.origin, {
        connect: guardedConnector(guard, { timeout: CONNECT_TIMEOUT_MS }),
        keepAliveTimeout: KEEP_ALIVE_MS,
        pipelining: 1,
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes pools no consumer in `inUse` (url + allow lists) needs any more. */
  async retain(inUse: ReadonlyArray<{ url: URL; allow: readonly string[] }>): Promise<void> {
    const keep = new Set(inUse.map((u) => EndpointClients.key(u.url, u.allow)));
    const closing: Promise<void>[] = [];
    for (const [key, pool] of this.pools) {
      if (keep.has(key)) continue;
      this.pools.delete(key);
      closing.push(pool.close().catch(() => {}));
    }
    await Promise.all(closing);
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    // destroy, not close: a request that outlived stop() must not hold shutdown.
    await Promise.all(all.map((p) => p.destroy().catch(() => {})));
  }
}
