// GET /metrics: Prometheus text (src/metrics/metrics.ts). Behind a token by
// default: an admin token (as for the API) or the dedicated metrics.token, so
// a scraper needs no admin rights; with metrics.access "open", no token.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics/metrics.js';
import type { AppDeps } from './deps.js';
import { ApiError } from './errors.js';
import { bearerToken, sha256, type TokenVerifier } from './auth.js';

export async function metricsRoutes(app: FastifyInstance, opts: { deps: AppDeps; metrics: Metrics; verifier: TokenVerifier }) {
  const { deps, metrics, verifier } = opts;
  const access = deps.metricsAccess ?? { access: 'token' as const };
  const scraperDigest = access.token ? sha256(access.token) : null;

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
        const token = bearerToken(request);
        if (!token) {
          reply.header('www-authenticate', 'Bearer');
          throw new ApiError(401, 'Missing bearer token: send "Authorization: Bearer <token>" (metrics.token or an admin token).');
        }
        // Same-length digests: the comparison says nothing of the token.
        const isScraper = scraperDigest !== null && timingSafeEqual(sha256(token), scraperDigest);
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
