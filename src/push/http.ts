// One POST to an endpoint, over a keep-alive undici Pool per origin (and per
// SSRF allow-list, since the guard lives in the pool's connector). Redirects
// are never followed (undici only follows them with an interceptor we don't
// add). The response body is read up to max_response_bytes and then dropped:
// only its first bytes are kept, for the attempt log.
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
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

/** Something in flight that can be cut short. */
interface Abortable {
  abort(reason: Error): void;
}

/** Aborts every request it tracks at once (shutdown). */
export class StopSwitch {
  private readonly live = new Set<Abortable>();
  stopped = false;

  track(request: Abortable): void {
    if (this.stopped) request.abort(reason('AbortError', 'the gateway is stopping'));
    else this.live.add(request);
  }

  untrack(request: Abortable): void {
    this.live.delete(request);
  }

  stopAll(): void {
    this.stopped = true;
    for (const request of this.live) request.abort(reason('AbortError', 'the gateway is stopping'));
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

/**
 * One exchange, as an undici dispatch handler: the status and headers, then the
 * body counted up to max_response_bytes with its first EXCERPT_BYTES kept. No
 * response stream, promise chain or async iterator per request, as request()
 * makes: `bench/http.ts` puts an exchange at 37-42 µs of CPU (both sides)
 * this way against 44-50 µs through request() + dump(). Settles exactly once: the first of
 * the response's end, an error, the deadline or a shutdown wins, and aborts the
 * rest of the exchange.
 */
class Exchange implements Dispatcher.DispatchHandler, Abortable {
  private controller: Dispatcher.DispatchController | null = null;
  private settled = false;
  private status = 0;
  private retryAfter: string | null = null;
  private kept: Buffer[] = [];
  private keptBytes = 0;
  private total = 0;
  private abortedBy: Error | null = null;

  constructor(
    private readonly maxResponseBytes: number,
    private readonly timeoutMs: number,
    private readonly done: (result: HttpResult) => void,
  ) {}

  get isSettled(): boolean {
    return this.settled;
  }

  /** The deadline or a shutdown: settles now, and cuts the exchange wherever it is. */
  abort(why: Error): void {
    if (this.settled) return;
    this.abortedBy = why;
    // Cut off while reading the body: the status still counts, as below.
    if (this.status >= 200) this.succeed();
    else this.fail(why);
    // Before onRequestStart (still queued or connecting), onRequestStart aborts it.
    this.controller?.abort(why);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortedBy) controller.abort(this.abortedBy);
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: the real answer follows
    this.status = statusCode;
    const retryAfter = headers['retry-after'];
    this.retryAfter = Array.isArray(retryAfter) ? (retryAfter[0] ?? null) : (retryAfter ?? null);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    if (this.keptBytes < EXCERPT_BYTES) {
      const part = chunk.subarray(0, EXCERPT_BYTES - this.keptBytes);
      this.kept.push(part);
      this.keptBytes += part.length;
    }
    this.total += chunk.length;
    if (this.total >= this.maxResponseBytes) {
      // Enough read: the status counts, the rest is never read.
      this.succeed();
      controller.abort(reason('AbortError', 'response body past max_response_bytes'));
    }
  }

  onResponseEnd(): void {
    this.succeed();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    // A body that breaks off after the status arrived: the status still counts.
    if (this.status >= 200) this.succeed();
    else this.fail(err);
  }

  private succeed(): void {
    if (this.settled) return;
    this.settled = true;
    // toString('utf8') replaces a character cut in half; NULs are not valid in Postgres text.
    const excerpt = this.keptBytes === 0 ? '' : Buffer.concat(this.kept).toString('utf8').replace(/\u0000/g, '');
    this.done({ status: this.status, retryAfter: this.retryAfter, excerpt, error: null, transient: false });
  }

  private fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.done({ status: null, retryAfter: null, excerpt: null, ...describe(err, this.timeoutMs) });
  }
}

export function postOnce(pool: Pool, url: URL, headers: Record<string, string>, body: Buffer, opts: PostOptions): Promise<HttpResult> {
  return new Promise<HttpResult>((resolve) => {
    const exchange = new Exchange(opts.maxResponseBytes, opts.timeoutMs, (result) => {
      clearTimeout(deadline);
      opts.stop?.untrack(exchange);
      resolve(result);
    });
    // The whole exchange, body included, has timeoutMs: undici's own timeouts are
    // per silence, so a body trickling a byte a second would never end.
    const deadline = setTimeout(() => exchange.abort(reason('TimeoutError', 'timeout')), opts.timeoutMs);
    opts.stop?.track(exchange);
    // Already stopping: settled by track(), nothing to send.
    if (exchange.isSettled) return;
    pool.dispatch(
      { origin: url.origin, path: url.pathname + url.search, method: 'POST', headers, body, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs },
      exchange,
    );
  });
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
