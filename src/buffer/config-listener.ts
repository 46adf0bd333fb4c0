// Keeps a ConsumerRegistry current across processes: the management API and
// `sluice config apply` NOTIFY sluice_config after every change; each gateway
// LISTENs on a dedicated connection and reloads. A periodic reload covers a
// notification missed while reconnecting.
import pg from 'pg';
import type { ConsumerRegistry } from './consumers.js';

export const CONFIG_CHANNEL = 'sluice_config';

export class ConfigListener {
  private client: pg.Client | null = null;
  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private backoffMs = 250;

  constructor(
    private readonly url: string,
    private readonly registry: ConsumerRegistry,
    private readonly onError: (err: Error) => void = () => {},
    private readonly safetyReloadMs = 30_000,
  ) {}

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.timer = setInterval(() => void this.reload(), this.safetyReloadMs).unref();
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => {});
  }

  private async reload(): Promise<void> {
    try {
      await this.registry.reload();
    } catch (err) {
      this.onError(err as Error);
    }
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.url, application_name: 'sluice-config-listener' });
    const retry = (err?: Error) => {
      if (err) this.onError(err);
      if (this.client === client) this.client = null;
      client.removeAllListeners();
      void client.end().catch(() => {});
      if (this.stopped) return;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
      setTimeout(() => void this.connect(), delay).unref();
    };
    client.on('error', retry);
    client.on('end', () => retry());
    client.on('notification', () => void this.reload());
    try {
      await client.connect();
      await client.query(`LISTEN ${CONFIG_CHANNEL}`);
      this.client = client;
      this.backoffMs = 250;
      // Anything changed while we were not listening.
      await this.reload();
    } catch (err) {
      retry(err as Error);
    }
  }
}
