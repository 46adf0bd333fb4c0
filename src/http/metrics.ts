// GET /metrics: Prometheus text (src/metrics/metrics.ts). Behind a token by
// default: an admin token (as for the API) or the dedicated metrics.token, so
// a scraper needs no admin rights; with metrics.access "open", no token.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Metrics } from '../metrics/metrics.js';
import type { AppDeps } from './deps.js';
import { ApiError } from './errors.js';
import type { TokenVerifier } from './auth.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function bearer(request: FastifyRequest): string | undefined {
  return /^Bearer[ ]+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
}

export async function metricsRoutes(app: FastifyInstance, opts: { deps: AppDeps; metrics: Metrics; verifier: TokenVerifier }) {
  const { deps, metrics, verifier } = opts;
  const access = deps.metricsAccess ?? { access: 'token' as const };
  const scraperDigest = access.token ? digest(access.token) : null;

  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics (text exposition format); see docs/operations.md',
        tags: ['health'],
        ...(access.access === 'open' && { security: [] }),
        response: { 200: { type: 'string' } },
      },
    },
    async (request, reply) => {
      if (access.access === 'token') {
        const token = bearer(request);
        if (!token) {
          reply.header('www-authenticate', 'Bearer');
          throw new ApiError(401, 'Missing bearer token: send "Authorization: Bearer <token>" (metrics.token or an admin token).');
        }
        // Same-length digests: the comparison says nothing of the token.
        const isScraper = scraperDigest !== null && timingSafeEqual(digest(token), scraperDigest);
        if (!isScraper) {
          const principal = await verifier.verify(token);
          if (!principal) {
            reply.header('www-authenticate', 'Bearer error="invalid_token"');
            throw new ApiError(401, 'Unknown or revoked token.');
          }
          if (!principal.admin) throw new ApiError(403, 'This token may only call the pull routes of its consumers; use metrics.token or an admin token.');
        }
      }
      const text = await metrics.text({ pool: deps.pool, capture: deps.capture });
      return reply.type(metrics.contentType).send(text);
    },
  );
}
