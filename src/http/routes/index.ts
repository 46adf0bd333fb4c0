// The management API, mounted under /api by app.ts (behind the token hook;
// every route here is admin-only, which the hook enforces, but for the reads
// marked `config: SCOPED_READ`, which scoped tokens may make for their own
// consumers: see src/http/auth.ts).
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import type { TokenVerifier } from '../auth.js';
import type { AppDeps } from '../deps.js';
import { backfillRoutes } from './backfills.js';
import { consumerRoutes } from './consumers.js';
import { deadLetterRoutes } from './dead-letters.js';
import { meRoutes } from './me.js';
import { messagesRoutes } from './messages.js';
import { overviewRoutes } from './overview.js';
import { sourceRoutes } from './sources.js';
import { streamRoutes } from './streams.js';
import { publishRoutes } from './publish.js';
import { tokenRoutes } from './tokens.js';
import { transformTestRoutes } from './transform-test.js';

export interface ManagementOptions {
  deps: AppDeps;
  verifier: TokenVerifier;
  compiler: FastifySchemaCompiler<unknown>;
}

export async function managementRoutes(app: FastifyInstance, opts: ManagementOptions) {
  await app.register(sourceRoutes, opts);
  await app.register(streamRoutes, opts);
  await app.register(publishRoutes, opts);
  await app.register(consumerRoutes, opts);
  await app.register(backfillRoutes, opts);
  await app.register(deadLetterRoutes, opts);
  await app.register(transformTestRoutes, opts);
  await app.register(tokenRoutes, opts);
  await app.register(meRoutes);
  await app.register(overviewRoutes, opts);
  await app.register(messagesRoutes, opts);
}
