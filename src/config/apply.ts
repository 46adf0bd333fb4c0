// Config as code: make the buffer database's sources and consumers match a
// loaded config. Plan first (what would change), apply in one transaction, and
// only touch rows that really change, so applying the same file twice is a no-op
// (no writes, updated_at unchanged, no reload signal).
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { parseLogPoint } from '../log/points.js';
import { currentWal, setStartPosition } from '../log/positions.js';
import { planBackfills } from '../backfill/create.js';
import { insertBackfills } from '../backfill/queries.js';
import { ConfigError, formatPath } from './errors.js';
import { normaliseConfig } from './normalise.js';
import { diffConfig, type ConfigPlan, type StoredConfig } from './plan.js';
import * as q from './queries.js';
import type { ConsumerConfig, SluiceConfig, SourceConfig } from './types.js';
import { captureChanged } from '../capture/setup.js';
import { generateSecret } from '../signing/secrets.js';
import { checkWhereFilters } from '../pipeline/filter/save-check.js';

export { formatPlan, maskSecret, type ConfigPlan, type FieldChange, type PlanChange } from './plan.js';

export interface ApplyOptions {
  /** Delete sources and consumers that the config does not list (default: keep them). */
  prune?: boolean;
  /** Told once of each signing secret generated for a new webhook consumer (to show it once). */
  onGeneratedSecret?: (consumer: string, secret: string) => void;
  /**
   * Called for each source created or changed in what it captures (`sluice
   * config apply` sets up its publication and slot here, so the tables are
   * captured from the moment it returns; a failure applies nothing). Called
   * before the transaction (a replication slot cannot be created while one is
   * open), and inside it with `slot: false` for a source that changed meanwhile.
   */
  prepareSource?: (source: SourceConfig, opts: { slot: boolean }) => Promise<void>;
  /** Told of what the config asks that is not applied (a changed `start` of an existing consumer). */
  onNote?: (text: string) => void;
}

/** `backfill`, like `start`, is read once: an existing consumer keeps the stored value. */
function keepBackfill(c: ConsumerConfig, old: ConsumerConfig | undefined, onNote?: (text: string) => void): ConsumerConfig {
  if (!old || old.backfill === c.backfill) return c;
  if (c.backfill) onNote?.(`consumer ${c.name}: backfill is not applied: it is read only when a consumer is created (to backfill it now: sluice backfill ${c.name})`);
  const { backfill: _ignored, ...rest } = c;
  return old.backfill === undefined ? rest : { ...rest, backfill: old.backfill };
}

/**
 * `start` is read once, when a consumer is created: an existing consumer keeps
 * the stored value (so the plan shows no change), and a different declared
 * one is noted.
 */
function keepStart(config: SluiceConfig, stored: StoredConfig, onNote?: (text: string) => void): SluiceConfig {
  const storedByName = new Map(stored.consumers.map((c) => [c.name, c]));
  const consumers = config.consumers.map((c) => {
    const old = storedByName.get(c.name);
    if (!old || old.start === c.start) return c;
    if (c.start !== undefined) {
      onNote?.(`consumer ${c.name}: start "${c.start}" is not applied: start is read only when a consumer is created (to deliver retained changes again: sluice rewind ${c.name} --to …)`);
    }
    const { start: _ignored, ...rest } = c;
    return old.start === undefined ? rest : { ...rest, start: old.start };
  });
  return { ...config, consumers: consumers.map((c) => keepBackfill(c, storedByName.get(c.name), onNote)) };
}

/**
 * A webhook consumer declared without secrets keeps the ones it has (generated
 * on its first apply, or rotated through the API), so applying the same file
 * again changes nothing; a new one gets a generated secret.
 */
function fillSecrets(config: SluiceConfig, stored: StoredConfig, generate: boolean): { config: SluiceConfig; generated: Array<[string, string]> } {
  const storedByName = new Map(stored.consumers.map((c) => [c.name, c]));
  const generated: Array<[string, string]> = [];
  const consumers = config.consumers.map((c) => {
    if (c.kind !== 'webhook' || !c.webhook || c.webhook.secrets.length > 0) return c;
    const kept = storedByName.get(c.name)?.webhook?.secrets ?? [];
    if (kept.length) return { ...c, webhook: { ...c.webhook, secrets: kept } };
    if (!generate) return c;
    const secret = generateSecret();
    generated.push([c.name, secret]);
    return { ...c, webhook: { ...c.webhook, secrets: [secret] } };
  });
  return { config: { ...config, consumers }, generated };
}

/**
 * The stored resources. A consumer's name, source, kind and annotations come
 * from their columns, which win over the copy inside `config`: other writers
 * (the management API) may update a column alone.
 */
async function readStored(db: q.Db): Promise<StoredConfig> {
  // One after the other: a transaction's client runs one query at a time.
  const sources = await q.selectSources(db);
  const streams = await q.selectStreams(db);
  const consumers = await q.selectConsumers(db);
  return {
    sources: sources.map((row) => ({ ...row.config, name: row.name })),
    streams: streams.map((row) => ({ ...row.config, name: row.name })),
    consumers: consumers.map(
      (row): ConsumerConfig => ({
        ...row.config,
        name: row.name,
        source: row.source_name,
        kind: row.kind,
        annotations: row.annotations,
      }),
    ),
  };
}

/**
 * A consumer keeps its kind. Its messages' delivery state is kind-specific (a
 * pull lease on the row, a webhook batch in sluice.webhook_batches), so a
 * switch would strand messages the other kind never hands out; the API refuses
 * it the same way.
 */
function refuseKindChanges(declared: SluiceConfig, stored: StoredConfig): void {
  const kinds = new Map(stored.consumers.map((c) => [c.name, c.kind]));
  const issues = declared.consumers.flatMap((c, i) => {
    const was = kinds.get(c.name);
    return was && was !== c.kind
      ? [{ path: `consumers[${i}].kind`, reason: `consumer "${c.name}" is a ${was} consumer and cannot become ${c.kind}; give the ${c.kind} consumer a new name (and delete this one, e.g. with --prune, once it has drained)` }]
      : [];
  });
  if (issues.length > 0) throw new ConfigError(issues);
}

/** What applyConfig would change, without changing anything. Secrets are masked. */
export async function planConfig(pool: Pool, config: SluiceConfig, opts: ApplyOptions = {}): Promise<ConfigPlan> {
  const stored = await readStored(pool);
  refuseKindChanges(config, stored);
  return diffConfig(fillSecrets(keepStart(config, stored, opts.onNote), stored, false).config, stored, opts);
}

/** The sources a plan creates or changes in what they capture. */
function sourcesToPrepare(plan: ConfigPlan, config: SluiceConfig, stored: StoredConfig): SourceConfig[] {
  const before = new Map(stored.sources.map((s) => [s.name, s]));
  const declared = new Map(config.sources.map((s) => [s.name, s]));
  return plan
    .filter((c) => c.resource === 'source' && c.action !== 'delete')
    .map((c) => declared.get(c.name)!)
    .filter((s) => captureChanged(before.get(s.name), s));
}

/** Places a new consumer where its `start` says (see src/log/positions.ts); a refusal names consumers[i].start. */
async function startConsumer(db: PoolClient, c: { id: string; config: ConsumerConfig }, source: SourceConfig | undefined, index: number, pool: Pool): Promise<void> {
  const point = parseLogPoint(c.config.start ?? 'now')!;
  // A source the config does not declare (applyConfig called without loadConfig's checks): the log's tail.
  const now = point.kind === 'now' && source ? await currentWal(source, String(pool.options.connectionString)) : null;
  await setStartPosition(db, { id: c.id, source: c.config.source }, point, now, `consumers[${index}].start`);
}

/** `backfill: true` on a new consumer: a backfill of each table, started with it (a refusal names consumers[i].backfill). */
async function backfillNew(db: PoolClient, c: { id: string; config: ConsumerConfig }, source: SourceConfig | undefined, index: number, pool: Pool): Promise<void> {
  const planned = await planBackfills(c, {}, source?.url || String(pool.options.connectionString));
  if (!planned.ok) {
    throw new ConfigError(Object.values(planned.issues).flat().map((reason) => ({ path: formatPath(['consumers', index, 'backfill']), reason })));
  }
  await insertBackfills(db, planned.backfills);
}

/**
 * A consumer's where filters checked against its source's columns (refused at
 * consumers[i].filter.where["<table>"]), and the types stored with it.
 */
async function storeFilterColumns(db: PoolClient, c: ConsumerConfig, source: SourceConfig | undefined, index: number, pool: Pool): Promise<void> {
  const url = source?.url || String(pool.options.connectionString);
  const check = await checkWhereFilters(c, url);
  if (!check.ok) {
    throw new ConfigError(check.issues.map((i) => ({ path: formatPath(['consumers', index, 'filter', 'where', i.table]), reason: i.reason })));
  }
  await q.setFilterColumns(db, c.name, check.columns);
}

/** A source and a stream never share a name, counting those stored and kept (a consumer names one or the other). */
function refuseNameClashes(config: SluiceConfig, stored: StoredConfig, plan: ConfigPlan): void {
  const deleted = (resource: string, name: string) => plan.some((c) => c.action === 'delete' && c.resource === resource && c.name === name);
  const sources = new Set([...config.sources.map((s) => s.name), ...stored.sources.filter((s) => !deleted('source', s.name)).map((s) => s.name)]);
  const issues = config.streams.flatMap((s, i) =>
    sources.has(s.name) ? [{ path: formatPath(['streams', i, 'name']), reason: `"${s.name}" is already the name of a source` }] : [],
  );
  const streams = new Set(stored.streams.filter((s) => !deleted('stream', s.name)).map((s) => s.name));
  config.sources.forEach((s, i) => {
    if (streams.has(s.name)) issues.push({ path: formatPath(['sources', i, 'name']), reason: `"${s.name}" is already the name of a stream` });
  });
  if (issues.length > 0) throw new ConfigError(issues);
}

/** Applies the config in one transaction and returns what it changed. */
export async function applyConfig(pool: Pool, declared: SluiceConfig, opts: ApplyOptions = {}): Promise<ConfigPlan> {
  let generated: Array<[string, string]> = [];
  const prepared = new Set<string>();
  if (opts.prepareSource) {
    const stored = await readStored(pool);
    refuseKindChanges(declared, stored);
    for (const source of sourcesToPrepare(diffConfig(declared, stored, opts), declared, stored)) {
      await opts.prepareSource(source, { slot: true });
      prepared.add(JSON.stringify(source));
    }
  }
  const plan = await withTransaction(pool, async (client) => {
    // Plan under the lock, so a concurrent apply cannot slip in between.
    await q.lockConfigApply(client);
    const stored = await readStored(client);
    refuseKindChanges(declared, stored);
    const filled = fillSecrets(keepStart(declared, stored, opts.onNote), stored, true);
    const config = filled.config;
    generated = filled.generated;
    const sources = new Map(config.sources.map((s) => [s.name, s]));
    const consumers = new Map(config.consumers.map((c) => [c.name, c]));
    const plan = diffConfig(config, stored, opts);
    refuseNameClashes(config, stored, plan);
    // Consumers are deleted before sources and created after them, the order a
    // reader of the tables (a reloading gateway) can always make sense of.
    for (const change of plan.filter((c) => c.resource === 'consumer' && c.action === 'delete')) {
      await q.deleteConsumer(client, change.name);
    }
    for (const change of plan.filter((c) => c.resource === 'source')) {
      if (change.action === 'create') await q.insertSource(client, sources.get(change.name)!);
      if (change.action === 'update') await q.updateSource(client, sources.get(change.name)!);
    }
    const streams = new Map(config.streams.map((s) => [s.name, s]));
    for (const change of plan.filter((c) => c.resource === 'stream')) {
      if (change.action === 'create') await q.insertStream(client, streams.get(change.name)!);
      if (change.action === 'update') await q.updateStream(client, streams.get(change.name)!);
      if (change.action === 'delete') await q.deleteStream(client, change.name);
    }
    for (const change of plan.filter((c) => c.resource === 'consumer')) {
      const consumer = consumers.get(change.name)!;
      if (change.action === 'create') {
        const id = await q.insertConsumer(client, consumer);
        const index = declared.consumers.findIndex((c) => c.name === consumer.name);
        await startConsumer(client, { id, config: consumer }, sources.get(consumer.source), index, pool);
        if (consumer.backfill) await backfillNew(client, { id, config: consumer }, sources.get(consumer.source), index, pool);
      }
      if (change.action === 'update') await q.updateConsumer(client, consumer);
      // Checked again only when it changed: an unrelated edit needs no source.
      const before = stored.consumers.find((c) => c.name === change.name);
      const whereChanged = change.action === 'update' && JSON.stringify(consumer.filter?.where) !== JSON.stringify(before?.filter?.where);
      if (change.action === 'create' || whereChanged) {
        const index = declared.consumers.findIndex((c) => c.name === consumer.name);
        await storeFilterColumns(client, consumer, sources.get(consumer.source), index, pool);
      }
    }
    for (const change of plan.filter((c) => c.resource === 'source' && c.action === 'delete')) {
      await q.deleteSource(client, change.name);
    }
    for (const source of opts.prepareSource ? sourcesToPrepare(plan, config, stored) : []) {
      if (!prepared.has(JSON.stringify(source))) await opts.prepareSource!(source, { slot: false });
    }
    if (plan.length > 0) await q.notifyConfigChanged(client);
    return plan;
  });
  // After commit: a secret is shown only once it is really stored.
  for (const [consumer, secret] of generated) opts.onGeneratedSecret?.(consumer, secret);
  return plan;
}

/**
 * The database's sources and consumers as a config that loadConfig accepts once
 * serialised (stringifyConfig). Only sources and consumers live in the database;
 * buffer, http and auth are the defaults. Secrets are in full: redactExport
 * (export.ts) takes them out before the config is printed.
 */
export async function exportConfig(pool: Pool): Promise<SluiceConfig> {
  const stored = await readStored(pool);
  return { ...normaliseConfig({}, new Set(), []), sources: stored.sources, streams: stored.streams, consumers: stored.consumers };
}
