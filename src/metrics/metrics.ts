// The gateway's Prometheus metrics (prom-client), one registry per gateway
// process (not prom-client's global one: tests run several gateways in one
// process). Counters and histograms are kept in process where the thing
// happens (capture writes, webhook attempts, pull acks); gauges of state that
// lives in the buffer (a consumer's pending, in flight, dead letters) are read
// by refresh() in one query for every consumer at scrape time
// (src/metrics/queries.ts). Labels are bounded: source, consumer and stream
// names and a few fixed words; never a message id, URL or token.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Pool } from '../db/pool.js';
import type { SourceStatus } from '../http/deps.js';
import { readConsumerGauges, readSourceGauges } from './queries.js';

/** Seconds: from a millisecond attempt to a slow receiver's timeout. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds: commit → ack, from a few milliseconds to a day of backlog. */
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400];

/** What a scrape reads besides the registry's own: this process's capture and buffer pool. */
export interface MetricsSources {
  pool: Pool;
  capture?: { status(): SourceStatus[] };
}

export class Metrics {
  readonly registry = new Registry();

  // Capture (per source, in the process that captures it).
  readonly changesCaptured = new Counter({
    name: 'sluice_source_changes_captured_total',
    help: 'Changes (and outbox messages) stored in the buffer by capture in this process',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly captureWriteSeconds = new Histogram({
    name: 'sluice_source_write_duration_seconds',
    help: 'Time to store one capture batch in the buffer (its commit included)',
    labelNames: ['source'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly captureReconnects = new Counter({
    name: 'sluice_source_reconnects_total',
    help: 'Capture streams that failed and were started again (standing by for another process not counted)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  // Delivery (per consumer, in the process that delivers).
  readonly delivered = new Counter({
    name: 'sluice_consumer_delivered_total',
    help: 'Messages delivered and acknowledged: a webhook 2xx, or a pull ack',
    labelNames: ['consumer'] as const,
    registers: [this.registry],
  });
  readonly failed = new Counter({
    name: 'sluice_consumer_failed_total',
    help: 'Messages of failed deliveries: a webhook attempt that was not a 2xx, or a pull nack',
    labelNames: ['consumer'] as const,
    registers: [this.registry],
  });
  readonly deadLettered = new Counter({
    name: 'sluice_consumer_dead_lettered_total',
    help: 'Messages that became dead letters here (retries exhausted, or refused by the transform)',
    labelNames: ['consumer'] as const,
    registers: [this.registry],
  });
  readonly webhookResponses = new Counter({
    name: 'sluice_webhook_responses_total',
    help: 'Webhook attempts by outcome: 2xx, 3xx, 4xx, 5xx, timeout or error (no response)',
    labelNames: ['consumer', 'class'] as const,
    registers: [this.registry],
  });
  readonly webhookSeconds = new Histogram({
    name: 'sluice_webhook_attempt_duration_seconds',
    help: 'Duration of one webhook attempt (its quick retries included)',
    labelNames: ['consumer'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly commitToAck = new Histogram({
    name: 'sluice_consumer_commit_to_ack_seconds',
    help: 'From a change\'s commit (a message\'s publish) to its webhook 2xx',
    labelNames: ['consumer'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly circuitOpen = new Gauge({
    name: 'sluice_webhook_circuit_open',
    help: '1 while the consumer\'s endpoint counts as down (3 failed attempts in a row): only due retries go out, new batches once per probe interval',
    labelNames: ['consumer'] as const,
    registers: [this.registry],
  });

  // Read at scrape time.
  private readonly sourcePosition = this.gauge('sluice_source_position_bytes', 'The source\'s durable capture position (an LSN as a byte offset)', ['source']);
  private readonly sourceLagBytes = this.gauge('sluice_source_slot_lag_bytes', 'WAL the source\'s replication slot retains past what capture confirmed (the capturing process only)', ['source']);
  private readonly sourceLagSeconds = this.gauge('sluice_source_lag_seconds', 'Now minus the commit time of the newest change stored for the source', ['source']);
  private readonly sourceCapturing = this.gauge('sluice_source_capturing', '1 when this process streams the source\'s slot, 0 when it stands by or fails', ['source']);
  private readonly consumerPending = this.gauge('sluice_consumer_pending_messages', 'Messages taken in from the log and waiting for delivery', ['consumer']);
  private readonly consumerInFlight = this.gauge('sluice_consumer_in_flight_messages', 'Messages out: received and not acked, or in a webhook batch (sent, or waiting for its retry)', ['consumer']);
  private readonly consumerDead = this.gauge('sluice_consumer_dead_letter_messages', 'Dead letters held', ['consumer']);
  private readonly consumerOldest = this.gauge('sluice_consumer_oldest_pending_age_seconds', 'Age (from its commit) of the oldest change the consumer has not yet acked or stepped over; 0 when none', ['consumer']);
  private readonly consumerState = this.gauge('sluice_consumer_state', '1 for the consumer\'s state (active, paused or disabled)', ['consumer', 'state']);
  private readonly poolWaiting = this.gauge('sluice_buffer_pool_waiting_clients', 'Queries waiting for a buffer connection in this process', []);
  private readonly poolTotal = this.gauge('sluice_buffer_pool_connections', 'Buffer connections open in this process', []);

  constructor() {
    // Event-loop lag, heap, GC, CPU, file descriptors: prom-client's standard set.
    collectDefaultMetrics({ register: this.registry });
  }

  private gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  /** Reads the scrape-time gauges: two queries, whatever the number of consumers. */
  async refresh(from: MetricsSources): Promise<void> {
    const [sources, consumers] = await Promise.all([readSourceGauges(from.pool), readConsumerGauges(from.pool)]);
    for (const g of [this.sourcePosition, this.sourceLagBytes, this.sourceLagSeconds, this.sourceCapturing]) g.reset();
    for (const s of sources) {
      if (s.position !== null) this.sourcePosition.set({ source: s.name }, s.position);
      if (s.lag_seconds !== null) this.sourceLagSeconds.set({ source: s.name }, s.lag_seconds);
    }
    for (const s of from.capture?.status() ?? []) {
      this.sourceCapturing.set({ source: s.name }, s.running ? 1 : 0);
      if (s.running && s.lag_bytes !== null) this.sourceLagBytes.set({ source: s.name }, s.lag_bytes);
    }
    for (const g of [this.consumerPending, this.consumerInFlight, this.consumerDead, this.consumerOldest, this.consumerState]) g.reset();
    for (const c of consumers) {
      const consumer = c.name;
      this.consumerPending.set({ consumer }, c.pending);
      this.consumerInFlight.set({ consumer }, c.in_flight);
      this.consumerDead.set({ consumer }, c.dead_lettered);
      this.consumerOldest.set({ consumer }, c.oldest_pending_age_seconds ?? 0);
      for (const state of ['active', 'paused', 'disabled']) this.consumerState.set({ consumer, state }, c.state === state ? 1 : 0);
    }
    this.poolWaiting.set(from.pool.waitingCount);
    this.poolTotal.set(from.pool.totalCount);
  }

  /**
   * One consumer's delivery meters, bound to its label once: a webhook worker
   * counts every attempt, and binding skips hashing the labels each time.
   */
  forConsumer(consumer: string): ConsumerMeters {
    const labels = { consumer };
    const classes = new Map<string, { inc(n?: number): void }>();
    return {
      delivered: this.delivered.labels(labels),
      failed: this.failed.labels(labels),
      deadLettered: this.deadLettered.labels(labels),
      attemptSeconds: this.webhookSeconds.labels(labels),
      commitToAck: this.commitToAck.labels(labels),
      circuitOpen: this.circuitOpen.labels(labels),
      response: (cls) => {
        let c = classes.get(cls);
        if (!c) classes.set(cls, (c = this.webhookResponses.labels({ consumer, class: cls })));
        c.inc();
      },
    };
  }

  /**
   * Every change captured per source and message delivered per consumer in
   * this process so far (the two counters' values by label), for the
   * activity sampler (src/metrics/sampler.ts), which stores what they grew by.
   */
  async activityTotals(): Promise<ActivityTotals> {
    const [captured, delivered] = await Promise.all([this.changesCaptured.get(), this.delivered.get()]);
    return {
      captured: new Map(captured.values.map((v) => [String(v.labels.source), v.value])),
      delivered: new Map(delivered.values.map((v) => [String(v.labels.consumer), v.value])),
    };
  }

  /** The text a scrape is answered with. */
  async text(from: MetricsSources): Promise<string> {
    await this.refresh(from);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Running totals by source (captured) and consumer (delivered). */
export interface ActivityTotals {
  captured: Map<string, number>;
  delivered: Map<string, number>;
}

export interface ConsumerMeters {
  delivered: { inc(n?: number): void };
  failed: { inc(n?: number): void };
  deadLettered: { inc(n?: number): void };
  attemptSeconds: { observe(seconds: number): void };
  commitToAck: { observe(seconds: number): void };
  circuitOpen: { set(value: number): void };
  /** Counts one webhook attempt under its class (responseClass). */
  response(cls: string): void;
}

/** The class a webhook attempt's outcome is counted under. */
export function responseClass(status: number | null, error: string | null): string {
  if (status !== null) return status >= 200 && status < 600 ? `${Math.floor(status / 100)}xx` : 'error';
  return error !== null && /timed? ?out|timeout/i.test(error) ? 'timeout' : 'error';
}

/**
 * When a stored message was committed (a change's commit_timestamp, a
 * stream message's published_at), read from its text without parsing it;
 * NaN when it has neither.
 */
export function committedAtMs(payload: string): number {
  let at = payload.indexOf('"commit_timestamp":"');
  let skip = 20;
  if (at < 0) {
    at = payload.indexOf('"published_at":"');
    skip = 16;
  }
  if (at < 0) return NaN;
  const start = at + skip;
  return Date.parse(payload.slice(start, payload.indexOf('"', start)));
}
