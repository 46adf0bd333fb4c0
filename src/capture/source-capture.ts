// Captures one source: setup, stream, reconnect with backoff, heartbeat, lag.
import type { ConsumerRecord, ConsumerRegistry } from '../buffer/consumers.js';
import { clearTail, readPosition, readSourceNo } from '../buffer/writer.js';
import type { SourceConfig } from '../config/types.js';
import { createPool, type Pool } from '../db/pool.js';
import type { SourceStatus } from '../http/deps.js';
import type { Metrics } from '../metrics/metrics.js';
import { ChangeDecoder, type Route } from './decoder.js';
import { lsnToBigInt } from './lsn.js';
import { ReplicationStream } from './replication.js';
import { CaptureSession } from './session.js';
import { ensureSource, SetupError } from './setup.js';
import * as q from './setup-queries.js';
import { TypeCatalog } from './types-catalog.js';
import { BackfillRunner } from '../backfill/runner.js';
import { StagedChunks } from '../backfill/staged.js';
import { ChunkStore } from '../backfill/chunk-store.js';

export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export interface SourceCaptureDeps {
  bufferPool: Pool;
  /** Connection string of the source (resolved: the buffer's when the source has none). */
  sourceUrl: string;
  consumers: ConsumerRegistry;
  log: Logger;
  /** Test-only: passed to each CaptureSession (see SessionDeps.writeDelayMs). */
  writeDelayMs?: number;
  metrics?: Metrics;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;
const LAG_POLL_MS = 10_000;

export function routesFor(consumers: ConsumerRecord[], sourceName: string, table: string): Route[] {
  const routes: Route[] = [];
  for (const c of consumers) {
    if (c.source_name !== sourceName || !c.config.tables.includes(table)) continue;
    const g = c.config.group_by;
    const groupColumns = g === false ? false : g === true || g === undefined ? null : (g[table] ?? null);
    routes.push({ consumerId: c.id, groupColumns });
  }
  return routes;
}

/**
 * How much time of WAL a new log partition covers: a 24th of the retention's
 * max_age, between 1 s and an hour. Retention drops whole partitions, so this
 * is how finely it can cut.
 */
export function partitionSeconds(source: SourceConfig): number {
  // Optional chaining: a source row written by hand (tests) may lack retention.
  const maxAgeMs = source.retention?.max_age_ms;
  if (!maxAgeMs) return 3600;
  return Math.min(3600, Math.max(1, maxAgeMs / 1000 / 24));
}

export class SourceCapture {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private stream: ReplicationStream | null = null;
  private session: CaptureSession | null = null;
  private decoder: ChangeDecoder | null = null;
  private sourcePool: Pool;
  private timers: NodeJS.Timeout[] = [];
  private wake: (() => void) | null = null;
  /** This source's backfills, run while this process streams the slot. */
  private readonly backfills: BackfillRunner;
  /** Chunks read by the backfills, held for capture to store at their watermark. */
  private readonly staged = new StagedChunks();
  /** Stores sealed backfill chunks beside capture's writes; a stored chunk wakes the worker waiting for it. */
  private readonly chunkStore: ChunkStore;
  private readonly backfillPool: Pool;
  private state: SourceStatus;
  private unsubscribe: (() => void) | null = null;
  /** Changes written to the buffer by this process (for status and tests). */
  written = 0;
  truncatesNotCaptured = 0;
  private standingBy = false;
  private warnedOutboxFunction = false;
  private settledFirst!: () => void;
  /** Resolves once the first attempt streams, stands by or fails (see firstAttempt). */
  private readonly firstAttemptDone = new Promise<void>((resolve) => (this.settledFirst = resolve));

  constructor(
    readonly source: SourceConfig,
    private readonly deps: SourceCaptureDeps,
  ) {
    this.sourcePool = createPool(deps.sourceUrl, { max: 2, name: 'sluice-capture-meta' });
    // Its own connections: a chunk read must not wait behind capture's catalog reads.
    this.backfillPool = createPool(deps.sourceUrl, { max: 2, name: 'sluice-backfill' });
    this.chunkStore = new ChunkStore(deps.bufferPool, deps.log, () => this.staged.written());
    this.backfills = new BackfillRunner({
      sourceName: source.name,
      bufferPool: deps.bufferPool,
      sourcePool: this.backfillPool,
      log: deps.log,
      staged: this.staged,
      chunkStore: this.chunkStore,
      streaming: () => this.state.running && !this.stopped,
    });
    this.state = { name: source.name, running: false, standing_by: false, slot: source.slot, lag_bytes: null, last_error: null };
  }

  /** A backfill of this source was created: start on it now. */
  pokeBackfills(): void {
    this.backfills.poke();
  }

  status(): SourceStatus {
    return { ...this.state };
  }

  /**
   * The first attempt's outcome is known: streaming (the slot exists, so every
   * change committed from now on is captured), standing by, or failed (and
   * retrying). `sluice start` waits for it before it says it is running.
   */
  firstAttempt(): Promise<void> {
    return this.firstAttemptDone;
  }

  start(): void {
    this.unsubscribe = this.deps.consumers.onChange(() => this.decoder?.refreshRoutes());
    this.loop = this.run();
    this.backfills.start();
    this.timers.push(setInterval(() => void this.heartbeat(), this.source.heartbeat_interval_ms).unref());
    this.timers.push(setInterval(() => void this.refreshLag(), LAG_POLL_MS).unref());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.settledFirst();
    for (const t of this.timers) clearInterval(t);
    this.unsubscribe?.();
    this.wake?.();
    await this.backfills.stop();
    await this.backfillPool.end().catch(() => {});
    // Stop reading first, then let queued buffer writes finish; what they store
    // is confirmed on the next start (the position is read back from the buffer).
    await this.stream?.stop();
    await this.session?.drain().catch(() => {});
    // A chunk being stored finishes (or rolls back); those queued are read again on the next start.
    await this.chunkStore.stop();
    await this.loop?.catch(() => {});
    await this.sourcePool.end().catch(() => {});
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      const startedAt = Date.now();
      try {
        await this.streamOnce();
      } catch (err) {
        this.settledFirst();
        if (this.stopped) break;
        const e = err as Error & { code?: string };
        // Another process (or the walsender of a killed one) holds the slot:
        // retry at a steady pace, which is also how a standby gateway takes over.
        this.state.running = false;
        if (e.code === '55006') {
          attempt = Math.min(attempt, 2);
          // Normal for a second gateway: said once, not at every retry.
          if (!this.standingBy) this.deps.log.info({ source: this.source.name, slot: this.source.slot }, 'slot in use by another process; standing by to take over');
          this.standingBy = true;
          this.state.standing_by = true;
          this.state.last_error = `slot ${this.source.slot} is in use by another process (standing by)`;
        } else {
          this.standingBy = false;
          this.state.standing_by = false;
          this.state.last_error = e.message;
          this.deps.log.error({ source: this.source.name, err: e.message }, e instanceof SetupError ? 'capture setup failed' : 'capture stream failed; reconnecting');
          this.deps.metrics?.captureReconnects.inc({ source: this.source.name });
        }
      }
      this.state.running = false;
      if (this.stopped) break;
      // A stream that ran for a while resets the backoff.
      attempt = Date.now() - startedAt > 30_000 ? 0 : attempt + 1;
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  private async streamOnce(): Promise<void> {
    const setup = await ensureSource(this.sourcePool, this.source);
    if (setup.createdPublication || setup.createdSlot || setup.addedTables.length || setup.createdOutboxFunction) {
      this.deps.log.info({ source: this.source.name, ...setup }, 'capture setup created what was missing');
    }
    if (setup.outboxFunctionProblem && !this.warnedOutboxFunction) {
      this.warnedOutboxFunction = true;
      this.deps.log.warn(
        { source: this.source.name, err: setup.outboxFunctionProblem },
        'could not install sluice.publish (the outbox function) on the source; run the SQL of `sluice setup --print`, or publish with pg_logical_emit_message',
      );
    }
    const sourceNo = await readSourceNo(this.deps.bufferPool, this.source.name);
    // Captures follow the stored sources; one deleted meanwhile is stopped soon.
    if (sourceNo === null) throw new Error(`source ${this.source.name} is not stored in the buffer (sluice.sources)`);
    const stored = await readPosition(this.deps.bufferPool, this.source.name);
    const slotLsn = setup.slotConfirmedLsn ? lsnToBigInt(setup.slotConfirmedLsn) : 0n;
    // Resume from the buffer's own position: Postgres starts at the later of this
    // and the slot's confirmed position.
    const startLsn = stored !== null && stored > slotLsn ? stored : slotLsn;
    const types = new TypeCatalog((sql, params) => this.sourcePool.query(sql, params));
    const decoder = new ChangeDecoder({
      databaseName: setup.database,
      types,
      primaryKey: (oid) => q.primaryKeyColumns(this.sourcePool, oid),
      routesFor: (table) => routesFor(this.deps.consumers.all(), this.source.name, table),
    });
    let stream: ReplicationStream | null = null;
    const session = new CaptureSession({
      sourceName: this.source.name,
      sourceNo,
      // The stored source as last reloaded: a retention change does not restart
      // capture (src/capture/captures.ts), so read its current value here.
      partitionSeconds: () =>
        partitionSeconds(this.deps.consumers.sources().find((s) => s.name === this.source.name)?.config ?? this.source),
      bufferPool: this.deps.bufferPool,
      staged: this.staged,
      chunkStore: this.chunkStore,
      decoder,
      maxBatch: this.source.max_batch_changes,
      durableLsn: startLsn,
      writeDelayMs: this.deps.writeDelayMs,
      confirm: (lsn) => stream?.confirm(lsn),
      onFatal: (err) => stream?.abort(new Error(`buffer write failed: ${err.message}`)),
      onTruncate: (oids) => {
        this.truncatesNotCaptured += oids.length;
        this.deps.log.warn({ source: this.source.name, relations: oids }, 'TRUNCATE is not captured as messages; consumers are not told');
      },
      awaitConfig: (version) => this.deps.consumers.ensureVersion(version),
      onBadAnnotations: (reason) => {
        this.deps.log.warn({ source: this.source.name, reason }, 'transaction annotations ignored: pg_logical_emit_message(true, \'sequin:transaction_annotations.set\', …) needs a JSON object as content');
      },
      streamWake: (stream) => this.deps.consumers.all().filter((c) => c.config.stream === stream).map((c) => c.id),
      outboxWake: (stream) =>
        this.deps.consumers.all().filter((c) => c.config.source === this.source.name && c.config.outbox?.includes(stream)).map((c) => c.id),
      onOutboxRefused: (stream, reason, count) => {
        this.state.outbox_refused = { count: (this.state.outbox_refused?.count ?? 0) + count, last_reason: `stream "${stream}": ${reason}` };
        this.deps.log.warn({ source: this.source.name, stream, reason, messages: count }, 'outbox message not stored');
      },
      onWritten: (rows, _checkpoint, seconds) => {
        if (this.deps.metrics) {
          this.deps.metrics.changesCaptured.inc({ source: this.source.name }, rows);
          this.deps.metrics.captureWriteSeconds.observe({ source: this.source.name }, seconds);
        }
        this.written += rows;
      },
    });
    stream = new ReplicationStream({
      url: this.deps.sourceUrl,
      slot: this.source.slot,
      publication: this.source.publication,
      startLsn,
      onEvent: session.onEvent,
      durableLsn: () => session.durableLsn(),
      idle: () => session.idle(),
      onStreaming: () => {
        // Only now is the slot ours: a process that held it until a moment ago
        // may have stored more since the position was read above. Read it again,
        // and clear what lies past it, before any event is handled.
        session.resume(this.prepareResume(startLsn));
        this.standingBy = false;
        this.state.standing_by = false;
        this.state.running = true;
        this.state.last_error = null;
        this.deps.log.info({ source: this.source.name, slot: this.source.slot, from: startLsn.toString() }, 'capture streaming');
        this.settledFirst();
      },
    });
    this.stream = stream;
    this.session = session;
    this.decoder = decoder;
    try {
      await stream.run();
    } finally {
      this.state.running = false;
      // A write of this session may still be committing (two run at once): the
      // next session must read the position after it, or it would replay what
      // that write stores and trip over its rows.
      await session.settle();
    }
  }

  /** The position to resume from, with rows stored past it (a partly written transaction) removed. */
  private async prepareResume(requested: bigint): Promise<bigint> {
    const stored = (await readPosition(this.deps.bufferPool, this.source.name)) ?? 0n;
    const position = stored > requested ? stored : requested;
    const cleared = await clearTail(this.deps.bufferPool, this.source.name, position);
    if (cleared) this.deps.log.info({ source: this.source.name, rows: cleared, from: position.toString() }, 'removed a partly stored transaction; it is captured again');
    return position;
  }

  private async heartbeat(): Promise<void> {
    if (!this.state.running) return;
    try {
      await q.emitHeartbeat(this.sourcePool);
    } catch (err) {
      this.deps.log.warn({ source: this.source.name, err: (err as Error).message }, 'heartbeat failed (grant EXECUTE on pg_logical_emit_message, or the slot may not advance on a quiet database)');
    }
  }

  /**
   * Reads the slot's lag into status() (and warns past lag_warning) now; also
   * runs every 10 s. Returns the lag, or null when unknown.
   */
  async refreshLag(): Promise<number | null> {
    try {
      this.state.lag_bytes = await q.slotLagBytes(this.sourcePool, this.source.slot);
      if (this.state.lag_bytes !== null && this.state.lag_bytes > this.source.lag_warning_bytes) {
        this.deps.log.warn({ source: this.source.name, lag_bytes: this.state.lag_bytes }, 'replication slot lag above lag_warning');
      }
    } catch {
      // The source may be restarting; the stream loop reports that.
    }
    return this.state.lag_bytes;
  }
}
