// GET /api/me: who the calling token is, so the console can show only what
// the token may do (it never gains more: every other call is checked as usual).
import type { FastifyInstance } from 'fastify';
import { SCOPED_READ } from '../auth.js';
import { meSchema } from '../schemas/console.js';
import type { SchemaTypes } from '../schemas/from-schema.js';

export async function meRoutes(parent: FastifyInstance) {
  const app = parent.withTypeProvider<SchemaTypes>();
  app.get('/me', { schema: meSchema, config: SCOPED_READ }, async (request) => {
    // Set by the auth hook before any handler runs.
    const p = request.principal!;
    return { admin: p.admin, name: p.name, consumers: p.admin ? null : p.consumers };
  });
}
