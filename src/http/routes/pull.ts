// The pull API, wire-compatible with Sequin Stream (shared/spec/pull-api.md):
//   GET|POST {prefix}/:name/receive, POST {prefix}/:name/ack | nack | modify-visibility
// under /api/http_pull_consumers and its alias /api/sequin_streams. The app
// registers this plugin inside its authenticated context; each route checks
// the consumer against the token's scope itself.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Wakeup } from '../../buffer/wakeup.js';
import type { AckOutcome } from '../../buffer/claim.js';
import type { ConsumerRecord } from '../../buffer/consumers.js';
import { pullErrorHandler, pullValidatorCompiler } from '../../pull/http-errors.js';
import { parseReceiveParams, parseVisibilityMs } from '../../pull/params.js';
import { PullService } from '../../pull/receive.js';
import * as schemas from '../../pull/schemas.js';
import { resolvePullConsumer } from '../../pull/scope.js';
import { safeError } from '../../log.js';
import type { AppDeps } from '../deps.js';
import { errorResponses } from '../schemas/common.js';

export const PULL_PREFIXES = ['/api/http_pull_consumers', '/api/sequin_streams'] as const;

const DEFAULT_BODY_LIMIT = 1024 * 1024;

export interface PullRoutesOptions {
  deps: AppDeps;
  /** Overrides deps.wakeup; with neither, one is made (and closed) here. */
  wakeup?: Wakeup;
  /** For tests and the composition root; otherwise one is made here. */
  service?: PullService;
}

type Params = { name: string };
type WithIds = { ack_ids: string[]; visibility_timeout_ms?: number | string };

export async function pullRoutes(app: FastifyInstance, opts: PullRoutesOptions): Promise<void> {
  const { deps } = opts;
  const service = opts.service ?? (await ownService(app, opts));
  // Before the server stops accepting and waits for requests in flight: end the
  // long-polls, or a shutdown would wait for up to wait_for (5 minutes).
  app.addHook('preClose', async () => service.close());

  app.setValidatorCompiler(pullValidatorCompiler());
  app.setErrorHandler(pullErrorHandler);

  const bodyLimit = deps.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;
  const errors = errorResponses;
  const consumerOf = (request: FastifyRequest) =>
    resolvePullConsumer(request, deps.consumers, (request.params as Params).name);

  const receive = async (request: FastifyRequest, reply: FastifyReply) => {
    const consumer = consumerOf(request);
    const params = parseReceiveParams(
      request.query as Record<string, unknown>,
      (request.body ?? undefined) as Record<string, unknown> | undefined,
    );
    // A client that hangs up ends its long-poll (reply.raw closes early only then).
    const abort = new AbortController();
    const onClose = () => abort.abort();
    reply.raw.once('close', onClose);
    try {
      const result = await service.receive(consumer, { ...params, signal: abort.signal });
      return reply.type('application/json; charset=utf-8').send(result.body);
    } finally {
      reply.raw.off('close', onClose);
    }
  };

  const withAckIds = (op: (c: ConsumerRecord, body: WithIds) => Promise<AckOutcome>) =>
    async (request: FastifyRequest) => {
      const consumer = consumerOf(request);
      const out = await op(consumer, request.body as WithIds);
      return { success: true, applied: out.applied, ignored: out.ignored };
    };

  for (const prefix of PULL_PREFIXES) {
    const base = `${prefix}/:name`;
    const tags = ['pull'];
    app.get(`${base}/receive`, {
      bodyLimit,
      schema: { tags, params: schemas.consumerParams, querystring: schemas.receiveQuery, response: { 200: schemas.receiveResponse, ...errors } },
    }, receive);
    app.post(`${base}/receive`, {
      bodyLimit,
      schema: {
        tags,
        params: schemas.consumerParams,
        querystring: schemas.receiveQuery,
        body: schemas.receiveBody,
        response: { 200: schemas.receiveResponse, ...errors },
      },
    }, receive);
    const ackSchema = { tags, params: schemas.consumerParams, body: schemas.ackBody, response: { 200: schemas.ackResponse, ...errors } };
    app.post(`${base}/ack`, { bodyLimit, schema: ackSchema }, withAckIds(async (c, b) => {
      const out = await service.ack(c, b.ack_ids);
      if (deps.metrics) {
        deps.metrics.delivered.inc({ consumer: c.name }, out.applied);
        for (const age of out.ages) deps.metrics.commitToAck.observe({ consumer: c.name }, age);
      }
      return { applied: out.applied, ignored: out.ignored };
    }));
    app.post(`${base}/nack`, { bodyLimit, schema: ackSchema }, withAckIds(async (c, b) => {
      const out = await service.nack(c, b.ack_ids);
      deps.metrics?.failed.inc({ consumer: c.name }, out.applied);
      return out;
    }));
    app.post(`${base}/modify-visibility`, {
      bodyLimit,
      schema: { ...ackSchema, body: schemas.modifyVisibilityBody },
    }, withAckIds((c, b) => service.modifyVisibility(c, b.ack_ids, parseVisibilityMs(b.visibility_timeout_ms))));
  }
}

async function ownService(app: FastifyInstance, opts: PullRoutesOptions): Promise<PullService> {
  const { deps } = opts;
  let wakeup = opts.wakeup ?? deps.wakeup;
  if (!wakeup) {
    const own = Wakeup.fromPool(deps.pool, { onError: (err) => app.log.warn({ error: safeError(err) }, 'wake-up connection lost') });
    await own.start();
    app.addHook('onClose', async () => own.stop());
    wakeup = own;
  }
  return new PullService({
    pool: deps.pool,
    consumers: deps.consumers,
    wakeup,
    instanceId: deps.instanceId,
    // One line per claim that made dead letters, as the webhook dispatcher logs its own.
    onDeadLetters: (c, letters) => {
      const groups = [...new Set(letters.map((l) => l.groupKey ?? '(ungrouped)'))];
      app.log.warn(
        { consumer: c.name, groups: groups.slice(0, 5), group_count: groups.length, dead_lettered: letters.length, reason: letters[0].reason },
        'pull messages became dead letters',
      );
      deps.metrics?.deadLettered.inc({ consumer: c.name }, letters.length);
    },
  });
}
