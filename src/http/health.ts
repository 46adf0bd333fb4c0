// Liveness and readiness, unauthenticated (load balancers and orchestrators
// call them without tokens). They say as little as possible: a status and, when
// not ready, one coarse word for why — never a hostname, URL or error text.
import type { FastifyInstance } from 'fastify';
import { pingBuffer } from '../api/ping.js';
import type { AppDeps } from './deps.js';
import type { SchemaTypes } from './schemas/from-schema.js';

// Short: a readiness probe that hangs is worse than one that says "no".
const READY_TIMEOUT_MS = 2_000;

const healthSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['status'],
  properties: {
    // Not ready is a status >= 400, so it has the API's error shape as well.
    summary: { type: 'string' },
    status: { type: 'string', enum: ['ok', 'unavailable'] },
    reason: { type: 'string', enum: ['buffer', 'capture'] },
  },
} as const;

export async function healthRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { deps } = opts;

  app.get(
    '/health',
    {
      schema: {
        summary: 'Liveness: the process is up',
        tags: ['health'],
        security: [],
        response: { 200: healthSchema },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/ready',
    {
      schema: {
        summary: 'Readiness: the buffer answers and every capture source is running here or in another gateway process',
        tags: ['health'],
        security: [],
        response: { 200: healthSchema, 503: healthSchema },
      },
    },
    async (_request, reply) => {
      if (!(await pingBuffer(deps.pool, READY_TIMEOUT_MS))) {
        return reply.status(503).send({ summary: 'Not ready: the buffer database does not answer.', status: 'unavailable', reason: 'buffer' });
      }
      // A source streamed by another gateway process is captured: this one
      // stands by, and serves the API and dispatch meanwhile.
      const sources = deps.capture?.status() ?? [];
      if (sources.some((s) => !s.running && !s.standing_by)) {
        return reply.status(503).send({ summary: 'Not ready: a source is not being captured.', status: 'unavailable', reason: 'capture' });
      }
      return { status: 'ok' as const };
    },
  );
}
