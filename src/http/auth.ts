// Bearer-token authentication for everything under /api.
// Two kinds of token: admin (the bootstrap token from the environment, or a
// stored token with no consumer list) and scoped (a stored token naming the
// consumers whose pull routes it may call, and which it may read through the
// routes marked `config: {scoped: 'read'}`). The hook lives inside the /api
// context only, so /health and /ready stay open.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { findTokenByHash, touchToken } from '../api/tokens.js';
import type { Pool } from '../db/pool.js';
import { ApiError } from './errors.js';
import { PULL_PREFIXES } from './routes/pull.js';

/** Who calls: `name` is the stored token's (null for the bootstrap admin token, which has none). */
export type Principal = { admin: true; name: string | null } | { admin: false; name: string; consumers: string[] };

declare module 'fastify' {
  interface FastifyRequest {
    /** Who made the request; set by the /api auth hook before any handler runs. */
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /**
     * 'read': a scoped token may call this route too, for its own consumers
     * only. The path's `:name`, when it has one, must name a consumer (the
     * hook checks it against the token's list); a route without one filters
     * what it answers by the token itself (mayRead).
     */
    scoped?: 'read';
  }
}

export const TOKEN_PREFIX = 'slk_';

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** A new API token: `slk_` + 32 random bytes, base64url. */
export function generateToken(): { token: string; hash: Buffer; hint: string } {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  // Four characters after the prefix tell tokens apart without helping a guesser.
  return { token, hash: sha256(token), hint: `${token.slice(0, TOKEN_PREFIX.length + 4)}…` };
}

// Pull routes check the consumer in their path against the token's list
// themselves (src/pull/scope.ts), with their own error shape.
const PULL_ROUTE_PREFIXES = PULL_PREFIXES.map((p) => `${p}/`);

/** The route config that opens a read route to scoped tokens (see FastifyContextConfig.scoped). */
export const SCOPED_READ = { scoped: 'read' } as const;

/** May this principal read the consumer named `name` (the scoped-read routes, and the lists they filter)? */
export function mayRead(p: Principal | undefined, name: string): boolean {
  return !!p && (p.admin || p.consumers.includes(name));
}

/** Looks tokens up by digest, with a short-lived in-process cache so a busy pull client costs no query per call. */
export class TokenVerifier {
  // Stored tokens are re-read after this long, which bounds how long a token
  // revoked by another gateway process keeps working here (a revoke in this
  // process evicts at once, and config notifications clear the whole cache).
  static readonly CACHE_TTL_MS = 10_000;
  private static readonly CACHE_MAX = 1_000;
  static readonly TOUCH_EVERY_MS = 60_000;
  private cache = new Map<string, { principal: Principal | null; until: number; tokenId?: string }>();
  /** When this process last recorded each token's use (ms). */
  private readonly touched = new Map<string, number>();
  private readonly adminDigest?: Buffer;

  constructor(
    private readonly pool: Pool,
    adminToken?: string,
  ) {
    if (adminToken) this.adminDigest = sha256(adminToken);
  }

  async verify(token: string): Promise<Principal | null> {
    const digest = sha256(token);
    // Same-length digests, so timingSafeEqual never throws and timing says nothing of the admin token.
    if (this.adminDigest && timingSafeEqual(digest, this.adminDigest)) return { admin: true, name: null };
    const key = digest.toString('hex');
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) {
      if (hit.tokenId) this.touch(hit.tokenId);
      return hit.principal;
    }
    const row = await findTokenByHash(this.pool, digest);
    const principal: Principal | null = !row
      ? null
      : row.consumers === null
        ? { admin: true, name: row.name }
        : { admin: false, name: row.name, consumers: row.consumers };
    // Unknown tokens are cached too, so guessing costs no query; a new token's
    // digest can't be in the cache before it exists, so nothing valid is refused.
    if (this.cache.size >= TokenVerifier.CACHE_MAX) this.cache.clear();
    this.cache.set(key, { principal, until: Date.now() + TokenVerifier.CACHE_TTL_MS, tokenId: row?.id });
    if (row) this.touch(row.id);
    return principal;
  }

  /**
   * Records the token's use (last_used_at) at most once a minute from this
   * process, in the background: a request never waits for it, and a failed
   * write only leaves the time a little older.
   */
  private touch(tokenId: string): void {
    const now = Date.now();
    if ((this.touched.get(tokenId) ?? 0) > now - TokenVerifier.TOUCH_EVERY_MS) return;
    if (this.touched.size >= TokenVerifier.CACHE_MAX) this.touched.clear();
    this.touched.set(tokenId, now);
    touchToken(this.pool, tokenId).catch(() => this.touched.delete(tokenId));
  }

  /** Drop a revoked token from the cache. */
  evict(tokenId: string): void {
    for (const [key, entry] of this.cache) if (entry.tokenId === tokenId) this.cache.delete(key);
  }

  clear(): void {
    this.cache.clear();
  }
}

export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** Adds the auth hook to the (encapsulated) /api context it is called on. */
export function requireToken(app: FastifyInstance, verifier: TokenVerifier): void {
  app.addHook('onRequest', async (request, reply) => {
    const token = bearerToken(request);
    if (!token) {
      reply.header('www-authenticate', 'Bearer');
      throw new ApiError(401, 'Missing bearer token: send "Authorization: Bearer <token>".');
    }
    const principal = await verifier.verify(token);
    if (!principal) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw new ApiError(401, 'Unknown or revoked token.');
    }
    request.principal = principal;
    if (principal.admin) return;
    const url = request.routeOptions.url ?? '';
    if (PULL_ROUTE_PREFIXES.some((p) => url.startsWith(p))) return;
    if (request.routeOptions.config?.scoped !== 'read') {
      throw new ApiError(403, 'This token may only call the pull routes of its consumers and read those consumers; this route needs an admin token.');
    }
    // Before the handler looks anything up: a scoped token learns nothing of
    // other consumers (403 whether or not they exist), as on the pull routes.
    const name = (request.params as { name?: string } | undefined)?.name;
    if (name !== undefined && !mayRead(principal, name)) throw new ApiError(403, `This token may not use consumer "${name}".`);
  });
}
