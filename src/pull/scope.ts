// Which consumer a pull request names, and whether its token may use it. The
// auth hook (src/http/auth.ts) sets request.principal; this module only reads
// it, so the pull routes don't depend on how tokens are stored.
import type { FastifyRequest } from 'fastify';
import type { ConsumerRecord, ConsumerRegistry } from '../buffer/consumers.js';
import { PullError } from './errors.js';

export type PullPrincipal = { admin: true } | { admin: false; consumers: string[] };

function principalOf(request: FastifyRequest): PullPrincipal | undefined {
  return (request as FastifyRequest & { principal?: PullPrincipal }).principal;
}

/** May this principal pull from the consumer named `requested` (a name or an id)? */
export function mayPull(p: PullPrincipal | undefined, requested: string, consumer?: ConsumerRecord): boolean {
  if (!p) return false;
  if (p.admin) return true;
  return p.consumers.includes(requested) || (!!consumer && (p.consumers.includes(consumer.name) || p.consumers.includes(consumer.id)));
}

/**
 * The pull consumer the route names. The scope check comes first, so a scoped
 * token learns nothing about consumers outside its list (403 whether or not
 * they exist); webhook consumers are not pull consumers (404).
 */
export function resolvePullConsumer(request: FastifyRequest, registry: ConsumerRegistry, requested: string): ConsumerRecord {
  const consumer = registry.get(requested);
  const principal = principalOf(request);
  if (!principal) throw new PullError(401, 'Missing bearer token: send "Authorization: Bearer <token>".');
  if (!mayPull(principal, requested, consumer)) {
    throw new PullError(403, `This token may not use consumer "${requested}".`);
  }
  if (!consumer || consumer.kind !== 'pull') {
    throw new PullError(404, `No pull consumer named "${requested}".`);
  }
  return consumer;
}
