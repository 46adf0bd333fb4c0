// The composition root: config → buffer pool → migrations → config applied →
// activity sampler → consumer registry → capture per source → wake-ups → HTTP →
// dispatcher → jobs.
// stop() undoes it in reverse order. Nothing else in the code base wires
// subsystems together.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { ConfigListener } from './buffer/config-listener.js';
import { ConsumerRegistry } from './buffer/consumers.js';
import { closeTransforms, retainTransforms } from './render/transforms.js';
import { Wakeup } from './buffer/wakeup.js';
import { Jobs } from './jobs/scheduler.js';
import { Dispatcher } from './push/dispatcher.js';
import { Captures } from './capture/captures.js';
import { Metrics } from './metrics/metrics.js';
import { ActivitySampler } from './metrics/sampler.js';
import type { SourceCapture } from './capture/source-capture.js';
import { applyConfig } from './config/apply.js';
import type { SluiceConfig } from './config/types.js';
import { createPool, type Pool } from './db/pool.js';
import { migrate } from './db/migrate.js';
import { checkSecretsAtRest, isProductionMode } from './secrets/startup.js';
import type { SourceStatus } from './http/deps.js';
import type { Logger } from './log.js';

export interface Stoppable {
  stop(): Promise<void>;
}

export interface GatewayOptions {
  config: SluiceConfig;
  /** The buffer database (resolved: config, DATABASE_URL or the embedded server). */
  bufferUrl: string;
  log: Logger;
  /** Listen for HTTP (default true). */
  http?: boolean;
  /** Run the webhook dispatcher (default true). */
  dispatch?: boolean;
  /** Extra things to stop last (the embedded Postgres). */
  onStopped?: () => Promise<void>;
  /** Called once config is applied and HTTP listens, before webhooks are dispatched (the demo receiver starts here). */
  beforeDispatch?: (gateway: Gateway) => Promise<(() => Promise<void>) | void>;
  /** A signing secret generated for a new webhook consumer: shown to the operator once, never logged. */
  onGeneratedSecret?: (consumer: string, secret: string) => void;
}

export class Gateway {
  readonly instanceId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  pool!: Pool;
  /** This process's metrics (GET /metrics). */
  readonly metrics = new Metrics();
  consumers!: ConsumerRegistry;
  private capturesOwner: Captures | null = null;
  httpAddress: string | null = null;
  private stack: Array<{ name: string; stop: () => Promise<void> }> = [];
  private stopping: Promise<void> | null = null;

  constructor(private readonly opts: GatewayOptions) {}

  /** The running capture of each stored source. */
  get captures(): SourceCapture[] {
    return this.capturesOwner?.all() ?? [];
  }

  status(): SourceStatus[] {
    return this.capturesOwner?.status() ?? [];
  }

  async start(): Promise<void> {
    const { config, log } = this.opts;
    this.pool = createPool(this.opts.bufferUrl, { max: 20, name: 'sluice' });
    this.push('buffer pool', () => this.pool.end());

    const applied = await migrate(this.pool);
    if (applied.length) log.info({ migrations: applied }, 'migrations applied');
    await checkSecretsAtRest(this.pool, log, isProductionMode(process.env, config));
    const plan = await applyConfig(this.pool, config, {
      onGeneratedSecret: this.opts.onGeneratedSecret,
      onNote: (text) => log.warn({}, text),
    });
    if (plan.length) log.info({ changes: plan.map((p) => `${p.action} ${p.resource} ${p.name}`) }, 'config applied');

    // Started before anything that counts and stopped after all of it (the
    // stack unwinds in reverse), so its last sample holds everything counted.
    const sampler = new ActivitySampler({ pool: this.pool, totals: () => this.metrics.activityTotals(), process: this.instanceId, log });
    sampler.start();
    this.push('activity sampler', () => sampler.stop());

    this.consumers = new ConsumerRegistry(this.pool);
    await this.consumers.reload();
    // Function transforms hold a worker thread each: freed when their consumer
    // goes or drops its transform, and all of them when the gateway stops.
    const forget = this.consumers.onChange((all) => {
      void retainTransforms(new Set(all.filter((c) => c.config.transform).map((c) => c.id)));
    });
    this.push('transforms', async () => {
      forget();
      await closeTransforms();
    });
    const listener = new ConfigListener(this.opts.bufferUrl, this.consumers, (err) => log.warn({ err: err.message }, 'config listener'));
    await listener.start();
    this.push('config listener', () => listener.stop());

    // Every stored source, not only the file's: sources created through the API
    // are captured too, and changes to them take effect without a restart.
    const captures = new Captures({ bufferPool: this.pool, bufferUrl: this.opts.bufferUrl, consumers: this.consumers, log, metrics: this.metrics });
    this.capturesOwner = captures;
    this.push('capture', () => captures.stop());
    await captures.start();

    const wakeup = Wakeup.fromPool(this.pool, { onError: (err) => log.warn({ err: err.message }, 'wakeup listener') });
    await wakeup.start();
    this.push('wakeup', () => wakeup.stop());

    if (this.opts.http !== false) await this.startHttp(wakeup);
    const undo = await this.opts.beforeDispatch?.(this);
    if (undo) this.push('before-dispatch', undo);
    if (this.opts.dispatch !== false) await this.startDispatcher(wakeup);
    this.startJobs();
  }

  private startJobs(): void {
    const jobs = new Jobs({
      pool: this.pool,
      log: this.opts.log,
      reportSlotLag: () => {
        for (const s of this.status()) {
          if (s.lag_bytes !== null) this.opts.log.info({ source: s.name, slot: s.slot, lag_bytes: s.lag_bytes }, 'slot lag');
        }
      },
    });
    jobs.start();
    this.push('jobs', () => jobs.stop());
  }

  private async startHttp(wakeup: Wakeup): Promise<void> {
    const { config, log } = this.opts;
    const { buildApp } = await import('./http/app.js');
    const app = await buildApp({
      pool: this.pool,
      consumers: this.consumers,
      capture: { status: () => this.status() },
      backfillsCreated: (source) => this.captures.find((c) => c.source.name === source)?.pokeBackfills(),
      adminToken: config.auth.admin_token || undefined,
      metrics: this.metrics,
      metricsAccess: config.metrics,
      instanceId: this.instanceId,
      bodyLimitBytes: config.http.body_limit_bytes,
      console: config.http.console === false ? false : undefined,
      wakeup,
      logger: { level: process.env.LOG_LEVEL ?? 'info' },
    });
    this.httpAddress = await app.listen({ host: config.http.host, port: config.http.port });
    log.info({ address: this.httpAddress }, 'http listening');
    this.push('http', () => app.close());
  }

  private async startDispatcher(wakeup: Wakeup): Promise<void> {
    const dispatcher = new Dispatcher({ pool: this.pool, consumers: this.consumers, wakeup, instanceId: this.instanceId, log: this.opts.log, metrics: this.metrics });
    dispatcher.start();
    this.push('dispatcher', () => dispatcher.stop());
  }

  private push(name: string, stop: () => Promise<void>): void {
    this.stack.push({ name, stop });
  }

  /** Reverse order of start; each step bounded so a stuck one cannot hang shutdown. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      while (this.stack.length) {
        const { name, stop } = this.stack.pop()!;
        await Promise.race([
          stop().catch((err) => this.opts.log.warn({ err: (err as Error).message }, `stopping ${name}`)),
          new Promise((r) => setTimeout(r, 10_000).unref()),
        ]);
      }
      await this.opts.onStopped?.();
    })();
    return this.stopping;
  }
}
