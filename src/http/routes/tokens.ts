// /api/tokens: create (secret shown once), list (hints only), revoke.
import type { FastifyInstance } from 'fastify';
import { listConsumerNames } from '../../api/consumers.js';
import { deleteToken, insertToken, listTokens, type TokenRow } from '../../api/tokens.js';
import { generateToken, type TokenVerifier } from '../auth.js';
import type { AppDeps } from '../deps.js';
import { invalid, notFound } from '../errors.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { createTokenSchema, deleteTokenSchema, listTokensSchema } from '../schemas/tokens.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const present = (row: TokenRow) => ({
  id: row.id,
  name: row.name,
  admin: row.consumers === null,
  consumers: row.consumers,
  hint: row.hint,
  created_at: row.created_at.toISOString(),
  last_used_at: row.last_used_at?.toISOString() ?? null,
});

export async function tokenRoutes(parent: FastifyInstance, opts: { deps: AppDeps; verifier: TokenVerifier }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { pool } = opts.deps;

  app.post('/tokens', { schema: createTokenSchema }, async (request, reply) => {
    const { name, consumers } = request.body;
    if (consumers) {
      const known = new Set(await listConsumerNames(pool, consumers));
      const unknown = consumers.filter((c) => !known.has(c));
      if (unknown.length) invalidConsumers(unknown);
    }
    const secret = generateToken();
    const row = await insertToken(pool, { name, hash: secret.hash, hint: secret.hint, consumers: consumers ?? null });
    return reply.status(201).send({ ...present(row), token: secret.token });
  });

  app.get('/tokens', { schema: listTokensSchema }, async () => ({ data: (await listTokens(pool)).map(present) }));

  app.delete('/tokens/:id', { schema: deleteTokenSchema }, async (request, reply) => {
    const { id } = request.params;
    // Not a uuid: it cannot exist (and must not reach Postgres as a bad cast).
    if (!UUID_RE.test(id) || !(await deleteToken(pool, id))) throw notFound(`Token ${id}`);
    opts.verifier.evict(id.toLowerCase());
    return reply.status(204).send(null);
  });
}

function invalidConsumers(unknown: string[]): never {
  throw invalid({ consumers: unknown.map((c) => `names unknown consumer "${c}"`) });
}
