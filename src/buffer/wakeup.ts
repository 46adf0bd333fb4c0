// Wake-ups for readers of the buffer. One dedicated connection per process runs
// LISTEN sluice_messages; capture notifies in the statement that stores
// messages (payload: the consumer id), nack and dead-letter retry do too.
// Notifications only shorten waits: readers still re-check the table on their
// own schedule, so a lost notification (or a lost connection) delays a delivery,
// never loses it.
import pg from 'pg';
import type { Pool } from '../db/pool.js';

export const MESSAGES_CHANNEL = 'sluice_messages';

export type WakeReason = 'notified' | 'timeout' | 'aborted';

export interface WakeupOptions {
  /** Settings for the dedicated LISTEN connection. */
  connection: pg.ClientConfig;
  channel?: string;
  /** Reconnect backoff: doubles from min to max, with jitter. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (err: Error) => void;
}

interface Waiter {
  consumerId: string;
  finish(reason: WakeReason): void;
}

export class Wakeup {
  private readonly channel: string;
  private client: pg.Client | null = null;
  private running = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private readonly lost = new WeakSet<pg.Client>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  // Per-consumer counters of wake-ups, so a reader can tell whether one arrived
  // between its last check of the table and the start of its wait.
  private readonly epochs = new Map<string, number>();
  private globalEpoch = 0;

  constructor(private readonly opts: WakeupOptions) {
    this.channel = opts.channel ?? MESSAGES_CHANNEL;
    if (!/^[a-z_][a-z0-9_]*$/.test(this.channel)) throw new Error(`invalid channel name ${this.channel}`);
    this.backoffMs = opts.minBackoffMs ?? 100;
  }

  /** A Wakeup whose LISTEN connection uses the same server and credentials as the pool. */
  static fromPool(pool: Pool, opts: Omit<WakeupOptions, 'connection'> = {}): Wakeup {
    const o = pool.options;
    const connection: pg.ClientConfig = {
      connectionString: o.connectionString,
      host: o.host,
      port: o.port,
      user: o.user,
      password: o.password,
      database: o.database,
      ssl: o.ssl,
      connectionTimeoutMillis: o.connectionTimeoutMillis,
      application_name: 'sluice-wakeup',
    };
    return new Wakeup({ ...opts, connection });
  }

  get listening(): boolean {
    return this.client !== null;
  }

  /** Connects and listens. Idempotent; resolves after the first attempt (a failed one is retried in the background). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.connect();
  }

  /** Closes the connection and releases every waiter. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const c = this.client;
    this.client = null;
    if (c) {
      this.lost.add(c);
      await c.end().catch(() => {});
    }
    this.notifyAll();
  }

  epoch(consumerId: string): number {
    return this.globalEpoch + (this.epochs.get(consumerId) ?? 0);
  }

  /** Wakes this process's waiters on a consumer (other processes need a NOTIFY). */
  notify(consumerId: string): void {
    this.epochs.set(consumerId, (this.epochs.get(consumerId) ?? 0) + 1);
    const set = this.waiters.get(consumerId);
    if (set) for (const w of [...set]) w.finish('notified');
  }

  /** Wakes every waiter: after a reconnect (notifications may have been missed) or a consumer change. */
  notifyAll(): void {
    this.globalEpoch++;
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w.finish('notified');
  }

  /**
   * Resolves on a wake-up for the consumer, after `ms`, or when `signal` aborts.
   * With `sinceEpoch` (from epoch() before the caller's last check), a wake-up
   * that came in the meantime resolves at once instead of being missed.
   */
  wait(consumerId: string, ms: number, signal?: AbortSignal, sinceEpoch?: number): Promise<WakeReason> {
    if (signal?.aborted) return Promise.resolve('aborted');
    if (sinceEpoch !== undefined && this.epoch(consumerId) !== sinceEpoch) return Promise.resolve('notified');
    return new Promise<WakeReason>((resolve) => {
      let set = this.waiters.get(consumerId);
      if (!set) this.waiters.set(consumerId, (set = new Set()));
      const waiters = set;
      const onAbort = () => waiter.finish('aborted');
      const timer = setTimeout(() => waiter.finish('timeout'), Math.max(0, ms));
      const waiter: Waiter = {
        consumerId,
        finish: (reason) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          waiters.delete(waiter);
          if (waiters.size === 0 && this.waiters.get(consumerId) === waiters) this.waiters.delete(consumerId);
          resolve(reason);
        },
      };
      waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async connect(): Promise<void> {
    this.reconnectTimer = null;
    if (!this.running) return;
    const client = new pg.Client(this.opts.connection);
    client.on('notification', (m) => {
      if (m.channel !== this.channel) return;
      if (m.payload) this.notify(m.payload);
      else this.notifyAll();
    });
    client.on('error', (err) => this.onLost(client, err));
    client.on('end', () => this.onLost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch (err) {
      this.onLost(client, err as Error);
      return;
    }
    if (!this.running || this.lost.has(client)) {
      this.lost.add(client);
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.backoffMs = this.opts.minBackoffMs ?? 100;
    // Anything notified while we were not listening was missed: everyone re-checks.
    this.notifyAll();
  }

  private onLost(client: pg.Client, err?: Error): void {
    if (this.lost.has(client)) return;
    this.lost.add(client);
    if (this.client === client) this.client = null;
    client.on('error', () => {});
    client.end().catch(() => {});
    if (err) this.opts.onError?.(err);
    if (!this.running || this.reconnectTimer) return;
    const max = this.opts.maxBackoffMs ?? 10_000;
    const delay = Math.min(max, this.backoffMs) * (0.5 + Math.random() / 2);
    this.backoffMs = Math.min(max, this.backoffMs * 2);
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
    this.reconnectTimer.unref();
  }
}
