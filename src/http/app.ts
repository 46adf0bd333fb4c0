// The fastify app: built here, never listened on here (the server module adds
// listen, timeouts and graceful close; tests drive it with app.inject).
//   /health, /ready     open
//   /, /console         the web console's files (src/console/serve.ts), open
//   /api/...            bearer token (src/http/auth.ts); management routes are
//                       admin-only, pull routes and the reads of a consumer
//                       (SCOPED_READ) also take consumer-scoped tokens
//   /api/openapi.json   generated from the route schemas
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { TokenVerifier, requireToken } from './auth.js';
import type { AppDeps } from './deps.js';
import { clientErrorHandler, errorHandler, notFoundHandler, sendError } from './errors.js';
import { consoleRoutes } from '../console/serve.js';
import { healthRoutes } from './health.js';
import { metricsRoutes } from './metrics.js';
import { guardInput } from './input-guard.js';
import { attemptsRoutes } from './routes/attempts.js';
import { managementRoutes } from './routes/index.js';
import { pullRoutes } from './routes/pull.js';
import { schemaCompiler } from './schemas/validator.js';

const DEFAULT_BODY_LIMIT = 1024 * 1024;

// Never log a credential: tokens travel in Authorization; custom webhook
// headers in request bodies are not logged by fastify's serializers at all.
const REDACT = ['req.headers.authorization', 'req.headers.cookie'];

function loggerOptions(logger: AppDeps['logger']): FastifyServerOptions['logger'] {
  if (!logger) return false;
  const base = logger === true ? {} : logger;
  return { ...base, redact: { paths: REDACT, censor: '[redacted]' } };
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(deps.logger),
    bodyLimit: deps.bodyLimitBytes ?? DEFAULT_BODY_LIMIT,
    // Refusals before routing (a URL that does not decode) and before fastify
    // sees a request at all (Node's parser): the one error shape too.
    frameworkErrors: sendError,
    clientErrorHandler,
    // fastify's two info lines per request drown a busy gateway's log (a pull
    // worker alone makes several requests a second): one line at debug instead.
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.addHook('onResponse', async (request, reply) => {
    // The path only: a query string is the caller's, and may carry anything.
    request.log.debug(
      { method: request.method, path: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      'request',
    );
  });
  const compiler = schemaCompiler();
  app.setValidatorCompiler(compiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  // JSON bodies under the content types docs/api.md lists (Sequin clients
  // send form types or none), and no NUL or runaway nesting in any input.
  guardInput(app);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Sluice API',
        version: '1',
        description: 'Pull consumers over HTTP (Sequin-compatible) and the management API. See docs/api.md.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  await app.register(healthRoutes, { deps });
  if (deps.console !== false) await app.register(consoleRoutes, { dir: deps.console });

  const verifier = new TokenVerifier(deps.pool, deps.adminToken);
  // A config change anywhere (this process or another gateway, via the
  // 'sluice_config' notification that reloads the registry) may be a revoked
  // token: forget every cached lookup.
  const unsubscribe = deps.consumers.onChange(() => verifier.clear());
  app.addHook('onClose', async () => unsubscribe());

  if (deps.metrics) await app.register(metricsRoutes, { deps, metrics: deps.metrics, verifier });

  await app.register(
    async (api) => {
      requireToken(api, verifier);
      api.setNotFoundHandler(notFoundHandler);
      api.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
      await api.register(managementRoutes, { deps, verifier, compiler });
      await api.register(attemptsRoutes, { deps });
    },
    { prefix: '/api' },
  );
  // The pull routes carry their full /api/... paths, their own error handler
  // and their own scope check (request.principal); this context adds the token hook.
  await app.register(async (pull) => {
    requireToken(pull, verifier);
    await pull.register(pullRoutes, { deps, wakeup: deps.wakeup });
  });
  return app;
}
