// What the fastify app needs from the composition root (src/gateway.ts).
// The app itself never opens pools or listens; tests build it with real pools
// and drive it with app.inject or a real listen on 127.0.0.1:0.
import type { ConsumerRegistry } from '../buffer/consumers.js';
import type { Wakeup } from '../buffer/wakeup.js';
import type { Pool } from '../db/pool.js';
import type { Metrics } from '../metrics/metrics.js';

export interface SourceStatus {
  name: string;
  /** Capture connected and streaming. */
  running: boolean;
  /**
   * Another gateway process streams this source's slot; this one retries and
   * takes over when it stops (the normal state of a second gateway).
   */
  standing_by: boolean;
  slot: string;
  lag_bytes: number | null;
  last_error: string | null;
  /** Outbox messages this process met but did not store (refused content, unknown stream), and the last reason. */
  outbox_refused?: { count: number; last_reason: string };
}

export interface AppDeps {
  /** The buffer database. */
  pool: Pool;
  consumers: ConsumerRegistry;
  /** Running capture, for /ready and status; absent when this process does not capture. */
  capture?: { status(): SourceStatus[] };
  /** Bootstrap admin token (env SLUICE_ADMIN_TOKEN or config auth.admin_token). */
  adminToken?: string;
  /** Unique per gateway process (host:pid:random), for leases and logs. */
  instanceId: string;
  bodyLimitBytes?: number;
  /** The process's LISTEN connection for new-message wake-ups (pull long-polls, dispatcher). */
  wakeup?: Wakeup;
  logger?: boolean | Record<string, unknown>;
  /** The process's metrics: GET /metrics, and the pull routes' counters. Absent: no /metrics. */
  metrics?: Metrics;
  /** Who may scrape /metrics (config `metrics`); default: admin tokens. */
  metricsAccess?: { access: 'token' | 'open'; token?: string };
  /** Backfills of this source were created: its capture (if this process runs it) starts on them now. */
  backfillsCreated?(sourceName: string): void;
  /** The built web console's folder (tests); false: serve no console. Default: dist/console. */
  console?: string | false;
}
