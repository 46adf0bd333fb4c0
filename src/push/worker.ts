// One webhook consumer's dispatch loop in this process: keeps up to
// max_in_flight batches in flight, claiming the next ones while others are
// still out, and sleeps until something can have changed: a NOTIFY on
// sluice_messages (new messages, nack, dead-letter retry), a batch finishing
// here, the next lease or backoff ending, or the safety poll.
import type { ConsumerRecord } from '../buffer/consumers.js';
import type { ClaimFaults } from '../buffer/faults.js';
import type { Wakeup } from '../buffer/wakeup.js';
import type { WebhookSettings } from '../config/types.js';
import type { Pool } from '../db/pool.js';
import { runReplays } from '../log/replay.js';
import { consumerFilter } from '../pipeline/filter/consumer-filter.js';
import { WalkAhead } from '../pipeline/filter/walk.js';
import { rendererFor, TransformUnavailable, type Renderer } from '../render/render.js';
import { AckQueue } from './ack-queue.js';
import { baseHeaders, buildBody, deliver, webhookId, type DeliveryResult, type Endpoint } from './deliver.js';
import { StopSwitch, type EndpointClients } from './http.js';
import { claimBatches, deadLetterBatchKeys, ensureHealthRow, recordFailure, type AttemptFacts, type ClaimedBatch } from './queries.js';
import { DEFAULT_DISABLE_AFTER_MS, exhausted, retryDelayMs, verdict } from './schedule.js';
import { groupCount, isolationParts, mayBeAboutContent, partition, splitInto, splitMode } from './split.js';
import { committedAtMs, responseClass, type ConsumerMeters, type Metrics } from '../metrics/metrics.js';
import { loadExpiries, signingState, storedSecrets, type SigningState } from './secrets.js';

export interface Log {
  info(obj: Record<string, unknown>, msg?: string): void;
  warn(obj: Record<string, unknown>, msg?: string): void;
  error(obj: Record<string, unknown>, msg?: string): void;
  debug?(obj: Record<string, unknown>, msg?: string): void;
}

export interface WorkerDeps {
  pool: Pool;
  clients: EndpointClients;
  wakeup?: Wakeup;
  instanceId: string;
  log: Log;
  /** Where failing claims are reported, so the consumer shows as failing rather than active. */
  faults: ClaimFaults;
  /** The consumer was paused or disabled by a delivery outcome. */
  onStateChange(): void;
  metrics?: Metrics;
}

/**
 * The groups a log line names: the first few (a batch may hold hundreds), and
 * how many. Group keys are table and key values, or a message's key: no secret.
 */
function groupsOf(groups: ReadonlyArray<string | null>): { groups: string[]; group_count: number } {
  const distinct = [...new Set(groups.map((g) => g ?? '(ungrouped)'))];
  return { groups: distinct.slice(0, 5), group_count: distinct.length };
}

/** Re-check the table at least this often, whatever notifications say. */
export const SAFETY_POLL_MS = 1000;
/**
 * After this many failed attempts in a row (no success between), the endpoint
 * counts as down: only batches due again are retried, and new batches are
 * formed at most once per probe interval. During an outage every group soon
 * has a batch out, and scanning the whole backlog for a free group on every
 * wake-up would cost the database for nothing.
 */
const CIRCUIT_AFTER_FAILURES = 3;
/**
 * A failed batch of several groups is sent again at once, split, to isolate
 * the group the endpoint refuses (src/push/split.ts), until this many requests
 * of several groups have failed with no success between: then the endpoint
 * looks down, not picky, and splitting at once would only multiply requests it
 * fails. The count leaves out a lone group's own retries, so a group failing
 * on its schedule does not stop its next neighbours from being isolated; and
 * each isolating round adds one, so three rounds (8^3 groups) always go through
 * (in practice the healthy parts' successes reset it on the way).
 */
const ISOLATE_UNTIL_FAILURES = 3;
/**
 * A claim costs the database about a millisecond whatever it forms (the
 * function call, the blocked-group read, the walk past batches that are out),
 * so with small batches it should serve many slots at once: it waits, up to
 * GATHER_MS from the first slot freeing, for enough free slots to carry about
 * GATHER_MESSAGES messages (at most three quarters of max_in_flight). Measured
 * at batch size 1 and 128 in flight: 10-15% less Postgres CPU per message
 * than claiming as soon as a quarter of the slots was free. Batches of
 * GATHER_MESSAGES or more never wait for more than that quarter.
 */
const GATHER_MS = 8;
const GATHER_MESSAGES = 96;
const WAIT_OVER = new Error('wait over');
/** How long stop() lets in-flight requests finish before aborting them. */
const STOP_GRACE_MS = 5000;
// A lease covers the request timeout plus time to record the outcome.
const leaseFor = (timeoutMs: number) => timeoutMs + 2000 + Math.round(timeoutMs / 10);

export class ConsumerWorker {
  private running = false;
  private loopDone: Promise<void> | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopSwitch = new StopSwitch();
  private completions = 0;
  private wake: (() => void) | null = null;
  private readonly settings: WebhookSettings;
  private readonly batchSize: number;
  private readonly leaseMs: number;
  private readonly renderer: Renderer;
  private readonly acks: AckQueue;
  /** This consumer's delivery meters (src/metrics/), when the process keeps metrics. */
  private readonly meters: ConsumerMeters | undefined;
  /** Where-filtered: the next walk of the log runs while the claimed batches are out. */
  private readonly walks: WalkAhead;
  private endpoint: Endpoint | null = null;
  private signing: SigningState | null = null;
  private warnedUnsigned = false;
  /** When a batch of this consumer was last acked here (ms). */
  private lastSuccessAt = 0;
  private consecutiveFailures = 0;
  /** Failed requests holding several groups since the last success (see ISOLATE_UNTIL_FAILURES). */
  private mixedFailures = 0;
  private nextFreshProbeAt = 0;
  private readonly probeMs: number;
  private readonly claimChunk: number;
  private readonly claimWanted: number;
  /**
   * Acks committed and failures recorded here. After a claim that came up
   * short, these (not a response arriving) are what can make more claimable:
   * the acked or rescheduled batch's groups are free, or its parts are due.
   */
  private outcomes = 0;
  /** What the current wait, if any, is woken by besides notifications and its timer. */
  private waitingFor: 'slot' | 'outcome' = 'slot';
  /** When the oldest slot that is free now became free (0: none since the last claim). */
  private slotFreeSince = 0;

  constructor(
    readonly consumer: ConsumerRecord,
    private readonly deps: WorkerDeps,
  ) {
    this.settings = consumer.config.webhook!;
    const batched = this.settings.batched ?? true;
    this.batchSize = batched ? this.settings.batch_size : 1;
    this.leaseMs = leaseFor(this.settings.timeout_ms);
    this.probeMs = Math.min(30_000, Math.max(1000, this.settings.retry.initial_ms));
    this.claimChunk = Math.max(1, Math.floor(this.settings.max_in_flight / 4));
    const enough = Math.min(Math.floor((this.settings.max_in_flight * 3) / 4), Math.ceil(GATHER_MESSAGES / this.batchSize));
    this.claimWanted = Math.max(this.claimChunk, enough);
    this.renderer = rendererFor(consumer);
    this.acks = new AckQueue(deps.pool, consumer.id, deps.instanceId);
    this.walks = new WalkAhead(deps.pool);
    this.meters = deps.metrics?.forConsumer(consumer.name);
    this.meters?.circuitOpen.set(0);
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  start(): void {
    if (this.running || this.loopDone) return;
    this.running = true;
    this.loopDone = this.loop().catch((err) => this.deps.log.error({ consumer: this.consumer.name, err: String(err) }, 'webhook dispatch loop failed'));
  }

  /** Stops claiming; in-flight requests get STOP_GRACE_MS, then are aborted (their leases hand them to others). */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loopDone;
    const grace = setTimeout(() => this.stopSwitch.stopAll(), STOP_GRACE_MS);
    await Promise.allSettled([...this.inFlight]);
    clearTimeout(grace);
    await this.acks.idle();
  }

  private log(level: 'info' | 'warn' | 'error', obj: Record<string, unknown>, msg: string) {
    this.deps.log[level]({ consumer: this.consumer.name, ...obj }, msg);
  }

  private async loop(): Promise<void> {
    const { pool, wakeup } = this.deps;
    const id = this.consumer.id;
    let dbErrors = 0;
    while (this.running) {
      const free = this.settings.max_in_flight - this.inFlight.size;
      // With many batches out, wait until a quarter of the slots are free:
      // one claim round trip (serialised per consumer) then serves several
      // batches instead of one per completion; then gather (GATHER_MS).
      if (free <= 0 || (this.inFlight.size > 0 && free < this.claimChunk)) {
        await this.nextEvent(SAFETY_POLL_MS, undefined, this.completions);
        continue;
      }
      const gathered = Date.now() - this.slotFreeSince;
      if (this.inFlight.size > 0 && free < this.claimWanted && gathered < GATHER_MS) {
        await this.nextEvent(GATHER_MS - gathered, undefined, this.completions);
        continue;
      }
      this.slotFreeSince = 0;
      const epoch = wakeup?.epoch(id);
      const seen = this.outcomes;
      const down = this.consecutiveFailures >= CIRCUIT_AFTER_FAILURES;
      const fresh = !down || Date.now() >= this.nextFreshProbeAt;
      if (down && fresh) this.nextFreshProbeAt = Date.now() + this.probeMs;
      let claimed: Awaited<ReturnType<typeof claimBatches>>;
      try {
        if (!this.endpoint) await this.prepare();
        // A running replay takes in its next matching changes first (src/log/replay.ts).
        if (fresh) await runReplays(pool, id, free * this.batchSize);
        // A where filter is tested here, on a walk of the log, before the claim takes in what passes.
        const filter = fresh ? consumerFilter(this.consumer) : null;
        // As many as the free slots can carry: keys beyond them would only wait.
        const walked = filter ? await this.walks.take(id, free * this.batchSize, filter) : null;
        if (filter && walked) this.walks.chain(id, walked, { want: free * this.batchSize, filter });
        claimed = await claimBatches(pool, {
          walked,
          consumerId: id,
          batches: free,
          batchSize: this.batchSize,
          leaseMs: this.leaseMs,
          deadLetterBlocksGroup: this.consumer.config.dead_letter_blocks_group,
          fresh,
          deferPayloads: true,
        });
        dbErrors = 0;
        this.deps.faults.succeeded(id);
        if (filter && walked) {
          const taken = new Set<string>();
          for (const b of claimed.batches) for (let i = 0; i < b.lsns.length; i++) taken.add(`${b.lsns[i]}:${b.idxs[i]}`);
          // Every slot got a batch and the walk was full: more is likely; the
          // next walk runs while these batches are out, as big as this claim.
          const more = claimed.batches.length === free && walked.lsns.length >= free * this.batchSize;
          this.walks.claimed(id, walked, taken, more ? { want: free * this.batchSize, filter } : null);
        }
      } catch (err) {
        dbErrors++;
        this.deps.faults.failed(id, err);
        this.walks.drop(id);
        this.log('warn', { err: String(err) }, 'claiming webhook batches failed; retrying');
        await this.nextEvent(Math.min(5000, 100 * 2 ** Math.min(dbErrors, 6)), undefined, -1);
        continue;
      }
      for (const b of claimed.batches) this.launch(b, claimed.loaded);
      // Every free slot got a batch: there may be more; the top of the loop waits for a slot.
      if (claimed.batches.length === free) continue;
      let dueIn = claimed.nextDueAt ? Math.max(0, claimed.nextDueAt.getTime() - Date.now()) : Infinity;
      if (!fresh) dueIn = Math.min(dueIn, Math.max(0, this.nextFreshProbeAt - Date.now()));
      // Nothing more was claimable: a slot freeing changes nothing, an outcome
      // may (a group's next messages wait for its batch's ack to commit, which
      // comes after the response), so wait for one, from before the claim.
      const why = await this.nextEvent(Math.min(SAFETY_POLL_MS, dueIn), epoch, seen, 'outcome');
      // New messages after a quiet spell: give the batch batch_timeout to fill.
      if (why === 'notified' && this.settings.batch_timeout_ms > 0 && this.running) {
        await this.nextEvent(this.settings.batch_timeout_ms, undefined, -1);
      }
    }
  }

  /**
   * Resolves on a notification, stop(), after ms, or when the counter `on`
   * moves past `seen` (at once if it has already; -1: never): 'slot', a batch
   * finishing here; 'outcome', an ack committing or a failure recorded here.
   */
  private nextEvent(ms: number, epoch: number | undefined, seen: number, on: 'slot' | 'outcome' = 'slot'): Promise<'notified' | 'slot' | 'timeout'> {
    if (!this.running) return Promise.resolve('slot');
    if (seen >= 0 && (on === 'slot' ? this.completions : this.outcomes) !== seen) return Promise.resolve('slot');
    return new Promise((resolve) => {
      // Only a wait on notifications needs cancelling; waits for a slot (one
      // per completion under load) skip the AbortController.
      const cancel = epoch !== undefined && this.deps.wakeup ? new AbortController() : null;
      let settled = false;
      const finish = (why: 'notified' | 'slot' | 'timeout') => {
        if (settled) return;
        settled = true;
        if (this.wake === onWake) this.wake = null;
        clearTimeout(timer);
        // With a reason: abort() without one builds a DOMException.
        cancel?.abort(WAIT_OVER);
        resolve(why);
      };
      const onWake = () => finish('slot');
      this.wake = onWake;
      this.waitingFor = on;
      const timer = setTimeout(() => finish('timeout'), ms);
      if (cancel) {
        void this.deps.wakeup!.wait(this.consumer.id, ms, cancel.signal, epoch).then((r) => r === 'notified' && finish('notified'));
      }
    });
  }

  private async prepare(): Promise<void> {
    await ensureHealthRow(this.deps.pool, this.consumer.id);
    await this.refreshSigning();
    const url = new URL(this.settings.url);
    this.endpoint = {
      url,
      pool: this.deps.clients.get(url, this.settings.allow_private_ranges),
      headers: baseHeaders(this.settings.headers),
      sign: null,
      timeoutMs: this.settings.timeout_ms,
      maxResponseBytes: this.settings.max_response_bytes,
    };
  }

  private async refreshSigning(): Promise<void> {
    const expiries = await loadExpiries(this.deps.pool, this.consumer.id);
    this.signing = signingState(storedSecrets(this.settings.secrets, expiries));
    if (!this.signing.sign && !this.warnedUnsigned) {
      this.warnedUnsigned = true;
      this.log('warn', {}, 'webhook consumer has no live secret: deliveries are sent unsigned');
    }
  }

  private noteOutcome(): void {
    this.outcomes++;
    if (this.waitingFor === 'outcome') this.wake?.();
  }

  private launch(batch: ClaimedBatch, loaded: Promise<void>): void {
    const run = this.send(batch, loaded)
      .catch((err) => this.log('error', { batch: webhookId(batch.batchId), err: String(err) }, 'recording a webhook attempt failed'))
      .finally(() => {
        this.inFlight.delete(run);
        this.completions++;
        if (this.slotFreeSince === 0) this.slotFreeSince = Date.now();
        if (this.waitingFor === 'slot') this.wake?.();
      });
    this.inFlight.add(run);
  }

  private async send(claimed: ClaimedBatch, loaded: Promise<void>): Promise<void> {
    const leaseEndsAt = Date.now() + this.leaseMs;
    // New batches' payloads are read after the claim, off its lock.
    try {
      await loaded;
    } catch (err) {
      this.log('warn', { batch: webhookId(claimed.batchId), err: String(err) }, "reading a webhook batch's messages failed; it is sent again when its lease ends");
      return;
    }
    if (claimed.lsns.length === 0) return;
    if (this.signing && Date.now() >= this.signing.validUntil) await this.refreshSigning();
    const served = await this.serve(claimed);
    if ('unavailable' in served) {
      // Not the messages' fault: the batch is retried on its schedule, as if the endpoint had failed.
      const result: DeliveryResult = { status: null, retryAfter: null, excerpt: null, error: served.unavailable, transient: false, startedAt: new Date(), durationMs: 0, tries: 0 };
      const facts: AttemptFacts = { attempt: claimed.attempt, startedAt: result.startedAt, durationMs: 0, status: null, error: result.error, excerpt: null };
      await this.fail(claimed, result, facts, null, null);
      return;
    }
    const { batch, texts } = served;
    if (texts.length === 0) return;
    const body = buildBody(texts, this.settings.batched !== false);
    const ep: Endpoint = { ...this.endpoint!, sign: this.signing?.sign ?? null };
    const result = await deliver(ep, batch.batchId, body, { leaseEndsAt, stop: this.stopSwitch });
    const m = this.meters;
    m?.response(responseClass(result.status, result.error));
    m?.attemptSeconds.observe(result.durationMs / 1000);
    const facts: AttemptFacts = {
      attempt: batch.attempt,
      startedAt: result.startedAt,
      durationMs: result.durationMs,
      status: result.status,
      error: result.status !== null && result.status >= 300 && result.status < 400 ? 'redirect not followed' : result.error,
      excerpt: result.excerpt,
    };
    const v = verdict(result.status, result.retryAfter);
    if (v.kind === 'ack') {
      this.lastSuccessAt = Date.now();
      if (this.consecutiveFailures >= CIRCUIT_AFTER_FAILURES) this.meters?.circuitOpen.set(0);
      this.consecutiveFailures = 0;
      this.mixedFailures = 0;
      // The slot frees now, not when the ack commits: acks are coalesced and
      // written behind, and until one commits its rows still block their groups,
      // so order holds. A lost ack means a redelivery with the same webhook-id.
      this.acks.add({ batch, facts }).then(
        () => {
          if (m) {
            m.delivered.inc(batch.payloads.length);
            const now = Date.now();
            for (const p of batch.payloads) {
              const at = committedAtMs(p);
              if (at === at) m.commitToAck.observe(Math.max(0, now - at) / 1000);
            }
          }
          this.noteOutcome();
        },
        (err) => this.log('error', { batch: webhookId(batch.batchId), err: String(err) }, 'acking a delivered batch failed; it will be redelivered'),
      );
      return;
    }
    await this.fail(batch, result, facts, v.kind === 'pause' ? v.reason : null, v.kind === 'fail' ? v.retryAfterMs : null);
  }

  /**
   * The batch's messages as the consumer is served them. Those its transform
   * refuses leave the batch as dead letters, with the reason (the rest go out
   * as one request, under the same webhook-id); a batch left empty, or no
   * longer this delivery's, sends nothing.
   */
  private async serve(batch: ClaimedBatch): Promise<{ batch: ClaimedBatch; texts: string[] } | { unavailable: string }> {
    const r = this.renderer;
    if (!r.transformed) return { batch, texts: batch.payloads.map(r.envelope) };
    let rendered;
    try {
      rendered = await r.render(batch.payloads);
    } catch (err) {
      if (err instanceof TransformUnavailable) return { unavailable: err.message };
      throw err;
    }
    const refused: Array<{ index: number; error: string }> = [];
    rendered.forEach((x, index) => x.ok || refused.push({ index, error: x.error }));
    if (refused.length === 0) return { batch, texts: rendered.map((x) => (x as { text: string }).text) };
    const left = await deadLetterBatchKeys(this.deps.pool, this.consumer.id, batch, refused);
    this.meters?.deadLettered.inc(refused.length);
    this.log('warn', { batch: webhookId(batch.batchId), ...groupsOf(refused.map((r) => batch.groups[r.index])), dead_lettered: refused.length, reason: refused[0].error }, 'the transform refused messages; they are dead letters');
    // Groups may be free now: a wait for an outcome ends.
    this.noteOutcome();
    if (left <= 0) return { batch, texts: [] };
    const keep = rendered.map((x) => x.ok);
    const pick = <T>(xs: T[]) => xs.filter((_, i) => keep[i]);
    const kept: ClaimedBatch = { ...batch, lsns: pick(batch.lsns), idxs: pick(batch.idxs), groups: pick(batch.groups), payloads: pick(batch.payloads) };
    return { batch: kept, texts: rendered.flatMap((x) => (x.ok ? [x.text] : [])) };
  }

  private async fail(batch: ClaimedBatch, result: DeliveryResult, facts: AttemptFacts, pauseReason: string | null, retryAfterMs: number | null) {
    const retry = this.settings.retry;
    const lastError = result.status !== null ? `HTTP ${result.status}${result.excerpt ? ': ' + result.excerpt.slice(0, 200) : ''}` : result.error ?? 'failed';
    const stopping = this.stopSwitch.stopped;
    // Several groups, an answer that may be about one of them, and an endpoint
    // that does not refuse everything: send the groups again at once, apart,
    // as the same attempt (src/push/split.ts). A batch at its last attempt is
    // isolated too, so only the group the endpoint refuses becomes a dead letter.
    const several = groupCount(batch) > 1;
    const isolate =
      several && !pauseReason && !stopping && this.mixedFailures < ISOLATE_UNTIL_FAILURES && mayBeAboutContent(result.status, retryAfterMs);
    if (several) this.mixedFailures++;
    // A failure that is being isolated does not count towards the circuit: its
    // rounds would otherwise trip it while the other groups are being delivered.
    if (!isolate && ++this.consecutiveFailures === CIRCUIT_AFTER_FAILURES) this.meters?.circuitOpen.set(1);
    const outcome = pauseReason ? 'paused' : !isolate && !stopping && exhausted(retry, batch.attempt, batch.firstAttemptAt) ? 'dead_letter' : 'retry';
    // Not on the schedule: isolating, or aborted by shutdown (due at once, for whichever process runs next).
    const scheduled = outcome === 'retry' && !stopping && !isolate;
    const delayMs = scheduled ? retryDelayMs(retry, batch.attempt, retryAfterMs) : 0;
    // On the schedule, a batch with several groups is split too, so a group the
    // endpoint refuses cannot take the others down with it.
    const split = scheduled ? splitMode(batch, this.lastSuccessAt > batch.firstAttemptAt.getTime(), retry.max_attempts) : null;
    const ways = isolate ? isolationParts(batch, this.settings.max_in_flight) : 0;
    const note = isolate ? `split in ${ways} parts, sent again at once as the same attempt` : split ? `split (${split}) for the next attempt` : null;
    if (note) facts = { ...facts, error: `${facts.error ?? `HTTP ${result.status}`}; ${note}` };
    const out = await recordFailure(this.deps.pool, this.consumer.id, this.deps.instanceId, batch, {
      outcome,
      delayMs,
      parts: isolate ? splitInto(batch, ways) : partition(batch, split),
      sameAttempt: isolate,
      lastError,
      facts,
      pauseReason: pauseReason ? `${pauseReason} (${new Date().toISOString()})` : null,
      disableAfterMs: this.settings.disable_after_ms ?? DEFAULT_DISABLE_AFTER_MS,
    });
    this.noteOutcome();
    this.meters?.failed.inc(batch.payloads.length);
    if (outcome === 'dead_letter') this.meters?.deadLettered.inc(batch.payloads.length);
    const level = outcome === 'retry' ? 'warn' : 'error';
    // The status or the network error, never the body: a receiver that echoes
    // its request would put the consumer's own header values in the log.
    const reason = result.status !== null ? `HTTP ${result.status}` : (result.error ?? 'failed');
    this.log(level, { batch: webhookId(batch.batchId), ...groupsOf(batch.groups), attempt: batch.attempt, status: result.status, reason, outcome, messages: batch.payloads.length, delay_ms: delayMs, split: isolate ? `${ways} parts, at once` : split }, outcome === 'dead_letter' ? 'webhook delivery failed; the messages are dead letters' : 'webhook delivery failed');
    if (out.paused || out.disabled) {
      this.log('error', { state: out.paused ? 'paused' : 'disabled', reason: pauseReason ?? reason }, 'webhook consumer stopped by its endpoint\'s answers');
      this.running = false;
      this.wake?.();
      this.deps.onStateChange();
    }
  }
}
