// From the YAML shape (already schema-valid) to the typed config of types.ts:
// defaults applied, durations in ms, sizes in bytes, table names qualified. Also
// the checks a schema cannot express: which block fits which kind, references
// between resources, duplicates that only appear once names are qualified.
import { didYouMean, issue, type PathSegment, type RawIssue } from './errors.js';
import { DEFAULTS, MAXIMA, MINIMA, type YamlConfig, type YamlConsumer, type YamlPull, type YamlSource, type YamlStream, type YamlWebhook } from './schema.js';
import type { ConsumerConfig, PullSettings, SluiceConfig, SourceConfig, StreamConfig, WebhookSettings } from './types.js';
import { parseDuration, parseSize } from './units.js';
import { checkWebhookTarget } from './webhook-target.js';
import { FilterError, parseWhere } from '../pipeline/filter/compile.js';
import { checkTransform, TransformError, type TransformSpec } from '../pipeline/transform/compile.js';
import { patternError } from '../pipeline/route/subjects.js';

// Headers Sluice sets itself: overriding them would break signing or framing.
const RESERVED_HEADERS = new Set([
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
  'content-type',
  'content-length',
  'transfer-encoding',
  'host',
]);

/** "orders" → "public.orders": unqualified names are in the public schema. */
export function qualifyTable(name: string): string {
  return name.includes('.') ? name : `public.${name}`;
}

/** Default publication and slot: slot names may not contain "-". */
export function defaultReplicationName(sourceName: string): string {
  return `sluice_${sourceName.replace(/-/g, '_')}`;
}

/**
 * Milliseconds (or bytes) of a schema-valid duration (or size) at `at`, checked
 * against its maximum: above it, or an integer no timer holds (1e300 passes
 * `type: integer`), is an issue, and the maximum stands in so normalising goes on.
 */
function bounded(
  parse: (v: unknown) => number | undefined,
  value: unknown,
  fallback: string | number,
  max: string,
  at: PathSegment[],
  issues: RawIssue[],
  min?: string,
): number {
  const limit = parse(max)!;
  const out = parse(value ?? fallback);
  if (out === undefined || out > limit) {
    issues.push(issue(at, `must be at most ${max}`));
    return limit;
  }
  if (min !== undefined && out < parse(min)!) {
    issues.push(issue(at, `must be at least ${min}`));
    return parse(min)!;
  }
  return out;
}
type Value = string | number | undefined;
const ms = (value: Value, fallback: string | number, max: string, at: PathSegment[], issues: RawIssue[], min?: string) =>
  bounded(parseDuration, value, fallback, max, at, issues, min);
const bytes = (value: Value, fallback: string | number, max: string, at: PathSegment[], issues: RawIssue[], min?: string) =>
  bounded(parseSize, value, fallback, max, at, issues, min);

/** An empty string in an optional URL or token means "unset" (so ${VAR:-} can switch it off). */
const optional = (value: string | undefined) => (value === undefined || value === '' ? undefined : value);

/** Qualifies a list of table names, reporting names that collide once qualified. */
function qualifyAll(names: string[], at: PathSegment[], issues: RawIssue[]): string[] {
  const out: string[] = [];
  names.forEach((name, i) => {
    const q = qualifyTable(name);
    if (out.includes(q)) issues.push(issue([...at, i], `lists "${q}" twice`));
    else out.push(q);
  });
  return out;
}

/** Annotations ride in every message's metadata: kept small and shallow. */
export const ANNOTATIONS_MAX_DEPTH = 32;
export const ANNOTATIONS_MAX_BYTES = 64 * 1024;

/** Levels of objects and lists in `value`, counted up to `cap + 1` (so the walk stays bounded). */
function nesting(value: unknown, cap: number): number {
  if (value === null || typeof value !== 'object') return 0;
  if (cap < 0) return 1;
  let deepest = 0;
  for (const child of Object.values(value)) deepest = Math.max(deepest, nesting(child, cap - 1));
  return deepest + 1;
}

function checkAnnotations(annotations: Record<string, unknown>, at: PathSegment[], issues: RawIssue[]): void {
  if (nesting(annotations, ANNOTATIONS_MAX_DEPTH) > ANNOTATIONS_MAX_DEPTH) {
    issues.push(issue(at, `must not nest deeper than ${ANNOTATIONS_MAX_DEPTH} levels of maps and lists`));
  } else if (Buffer.byteLength(JSON.stringify(annotations)) > ANNOTATIONS_MAX_BYTES) {
    issues.push(issue(at, `must be at most ${ANNOTATIONS_MAX_BYTES / 1024} KiB as JSON`));
  }
}

export function normaliseSource(y: YamlSource, at: PathSegment[], issues: RawIssue[]): SourceConfig {
  if (y.annotations !== undefined) checkAnnotations(y.annotations, [...at, 'annotations'], issues);
  const tables = qualifyAll(y.tables ?? [], [...at, 'tables'], issues);
  const schemas = y.schemas ?? [];
  if (tables.length === 0 && schemas.length === 0) {
    issues.push(issue([...at, 'tables'], 'is empty and so is schemas: a source must capture some tables'));
  }
  const derived = defaultReplicationName(y.name);
  for (const key of ['publication', 'slot'] as const) {
    if (y[key] === undefined && derived.length > 63) {
      issues.push(issue([...at, key], `is required: the default "${derived}" is longer than 63 characters`));
    }
  }
  const S = DEFAULTS.source;
  const M = MAXIMA.source;
  const url = optional(y.url);
  return {
    name: y.name,
    ...(url !== undefined && { url }),
    tables,
    schemas,
    publication: y.publication ?? derived,
    slot: y.slot ?? derived,
    create_if_missing: y.create_if_missing ?? S.create_if_missing,
    heartbeat_interval_ms: ms(y.heartbeat_interval, S.heartbeat_interval, M.heartbeat_interval, [...at, 'heartbeat_interval'], issues),
    lag_warning_bytes: bytes(y.lag_warning, S.lag_warning, M.lag_warning, [...at, 'lag_warning'], issues),
    max_batch_changes: y.max_batch_changes ?? S.max_batch_changes,
    // Only when given, so sources that do not mention them store and export as before.
    ...(y.annotations !== undefined && { annotations: y.annotations }),
    retention: normaliseRetention(y.retention ?? {}, [...at, 'retention'], issues),
  };
}

/** The default retention in the units the code uses (rows stored by hand, tests and benches). */
export const DEFAULT_RETENTION: SourceConfig['retention'] = {
  max_age_ms: parseDuration(DEFAULTS.retention.max_age)!,
  max_size_bytes: parseSize(DEFAULTS.retention.max_size)!,
};

export function normaliseStream(y: YamlStream, at: PathSegment[], issues: RawIssue[]): StreamConfig {
  // The outbox's prefix "sluice:<stream>" would be a backfill's watermark (src/capture/outbox.ts).
  if (y.name === 'backfill') issues.push(issue([...at, 'name'], '"backfill" is reserved (Sluice\'s own messages use it): choose another name'));
  if (y.annotations !== undefined) checkAnnotations(y.annotations, [...at, 'annotations'], issues);
  return {
    name: y.name,
    retention: normaliseRetention(y.retention ?? {}, [...at, 'retention'], issues),
    ...(y.annotations !== undefined && { annotations: y.annotations }),
  };
}

function normaliseRetention(y: NonNullable<YamlSource['retention']>, at: PathSegment[], issues: RawIssue[]): SourceConfig['retention'] {
  const [D, MAX, MIN] = [DEFAULTS.retention, MAXIMA.retention, MINIMA.retention];
  return {
    max_age_ms: ms(y.max_age, D.max_age, MAX.max_age, [...at, 'max_age'], issues, MIN.max_age),
    max_size_bytes: bytes(y.max_size, D.max_size, MAX.max_size, [...at, 'max_size'], issues, MIN.max_size),
  };
}

function normalisePull(y: YamlPull, at: PathSegment[], issues: RawIssue[]): PullSettings {
  const P = DEFAULTS.pull;
  return {
    ack_wait_ms: ms(y.ack_wait, P.ack_wait, MAXIMA.pull.ack_wait, [...at, 'ack_wait'], issues),
    max_ack_pending: y.max_ack_pending ?? P.max_ack_pending,
    max_waiting: y.max_waiting ?? P.max_waiting,
    ...(y.max_deliver !== undefined && { max_deliver: y.max_deliver }),
  };
}

function normaliseWebhook(y: YamlWebhook, at: PathSegment[], issues: RawIssue[]): WebhookSettings {
  const headers = y.headers ?? {};
  const seen = new Map<string, string>();
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower)) issues.push(issue([...at, 'headers', name], 'is set by Sluice and cannot be overridden'));
    const earlier = seen.get(lower);
    if (earlier) issues.push(issue([...at, 'headers', name], `repeats "${earlier}" (header names ignore case)`));
    seen.set(lower, name);
  }
  const W = DEFAULTS.webhook;
  const R = DEFAULTS.retry;
  const M = MAXIMA.webhook;
  const MR = MAXIMA.retry;
  const r = y.retry ?? {};
  const ra = [...at, 'retry'];
  const retry: WebhookSettings['retry'] = {
    initial_ms: ms(r.initial, R.initial, MR.initial, [...ra, 'initial'], issues),
    factor: r.factor ?? R.factor,
    cap_ms: ms(r.cap, R.cap, MR.cap, [...ra, 'cap'], issues),
    ...(r.max_attempts !== undefined && { max_attempts: r.max_attempts }),
    max_age_ms: ms(r.max_age, R.max_age, MR.max_age, [...ra, 'max_age'], issues),
  };
  if (retry.cap_ms < retry.initial_ms) issues.push(issue([...at, 'retry', 'cap'], 'must not be shorter than retry.initial'));
  checkWebhookTarget(y, at, issues);
  return {
    url: y.url,
    headers,
    secrets: y.secrets ?? [],
    batch_size: y.batch_size ?? W.batch_size,
    batch_timeout_ms: ms(y.batch_timeout, W.batch_timeout, M.batch_timeout, [...at, 'batch_timeout'], issues),
    max_in_flight: y.max_in_flight ?? W.max_in_flight,
    timeout_ms: ms(y.timeout, W.timeout, M.timeout, [...at, 'timeout'], issues),
    max_response_bytes: bytes(y.max_response_bytes, W.max_response_bytes, M.max_response_bytes, [...at, 'max_response_bytes'], issues),
    retry,
    allow_private_ranges: y.allow_private_ranges ?? [],
    // Only when given, so configs that do not mention them store and export as before.
    ...(y.batched !== undefined && { batched: y.batched }),
    ...(y.disable_after !== undefined && { disable_after_ms: ms(y.disable_after, 0, M.disable_after, [...at, 'disable_after'], issues) }),
  };
}

/** A consumer of a stream: its subjects checked, and what only a source's consumer may have refused. */
function normaliseStreamSide(y: YamlConsumer, at: PathSegment[], issues: RawIssue[]): { stream: string; subjects: string[] } {
  const only = "is for a consumer of a source; a consumer of a stream selects messages with subjects";
  if (y.source !== undefined) issues.push(issue([...at, 'source'], 'give either source (and tables) or stream (and subjects), not both'));
  if (y.tables !== undefined) issues.push(issue([...at, 'tables'], only));
  if (y.filter !== undefined) issues.push(issue([...at, 'filter'], only));
  if (y.backfill !== undefined) issues.push(issue([...at, 'backfill'], 'is for a consumer of a source (a stream has no table to read)'));
  if (y.outbox !== undefined) issues.push(issue([...at, 'outbox'], "is for a consumer of a source (reading a stream's outbox messages among the source's changes); this consumer reads the stream itself"));
  if (y.message_kind === 'row') issues.push(issue([...at, 'message_kind'], 'row is for a consumer of a source (a stream message is no row)'));
  if (typeof y.group_by === 'object') issues.push(issue([...at, 'group_by'], "a stream's messages are grouped by their key: true or false"));
  return { stream: y.stream!, subjects: checkedPatterns(y.subjects ?? ['>'], at, issues) };
}

function checkedPatterns(subjects: string[], at: PathSegment[], issues: RawIssue[]): string[] {
  subjects.forEach((p, i) => {
    const why = patternError(p);
    if (why) issues.push(issue([...at, 'subjects', i], `"${p}" ${why}`));
  });
  return subjects;
}

export function normaliseConsumer(y: YamlConsumer, at: PathSegment[], issues: RawIssue[]): ConsumerConfig {
  checkAnnotations(y.annotations ?? {}, [...at, 'annotations'], issues);
  const streamSide = y.stream !== undefined ? normaliseStreamSide(y, at, issues) : null;
  if (!streamSide) {
    if (y.source === undefined) issues.push(issue([...at, 'source'], 'is required (or stream, for a consumer of a stream)'));
    if (y.tables === undefined) issues.push(issue([...at, 'tables'], 'is required'));
  }
  const tables = streamSide ? [] : qualifyAll(y.tables ?? [], [...at, 'tables'], issues);
  // A source's consumer may narrow its tables' changes by subject too (<database>.<schema>.<table>.<action>).
  const sourceSubjects = !streamSide && y.subjects !== undefined ? checkedPatterns(y.subjects, at, issues) : undefined;
  let groupBy: ConsumerConfig['group_by'] = y.group_by ?? DEFAULTS.consumer.group_by;
  if (typeof groupBy === 'object') {
    const byTable: Record<string, string[]> = {};
    for (const [table, columns] of Object.entries(groupBy)) {
      const q = qualifyTable(table);
      if (!tables.includes(q)) issues.push(issue([...at, 'group_by', table], `"${q}" is not one of this consumer's tables`));
      else if (byTable[q]) issues.push(issue([...at, 'group_by', table], `repeats "${q}"`));
      byTable[q] = columns;
    }
    groupBy = byTable;
  }
  if (y.kind === 'webhook' && !y.webhook) issues.push(issue([...at, 'webhook'], 'is required for a webhook consumer'));
  if (y.kind !== 'webhook' && y.webhook) issues.push(issue([...at, 'webhook'], 'is only allowed when kind is webhook'));
  if (y.kind !== 'pull' && y.pull) issues.push(issue([...at, 'pull'], 'is only allowed when kind is pull'));
  return {
    name: y.name,
    source: streamSide ? streamSide.stream : (y.source ?? ''),
    kind: y.kind,
    tables,
    ...streamSide,
    ...(sourceSubjects && { subjects: sourceSubjects }),
    // Only when given, so configs without it store and export as before.
    ...(!streamSide && y.outbox !== undefined && y.outbox.length > 0 && { outbox: [...y.outbox] }),
    group_by: groupBy,
    dead_letter_blocks_group: y.dead_letter_blocks_group ?? DEFAULTS.consumer.dead_letter_blocks_group,
    message_kind: y.message_kind ?? DEFAULTS.consumer.message_kind,
    ...normaliseFilter(y.filter, tables, [...at, 'filter'], issues),
    ...normaliseTransform(y.transform, [...at, 'transform'], issues),
    // Only when given: it is read once, at creation, and "now" is the default.
    ...(y.start !== undefined && { start: y.start }),
    ...(y.backfill !== undefined && { backfill: y.backfill }),
    annotations: y.annotations ?? {},
    ...(y.kind === 'pull' && { pull: normalisePull(y.pull ?? {}, [...at, 'pull'], issues) }),
    ...(y.kind === 'webhook' && y.webhook && { webhook: normaliseWebhook(y.webhook, [...at, 'webhook'], issues) }),
  };
}

/**
 * Checked as it will run (the form, its paths, the function's syntax), without
 * starting a sandbox; a function's syntax error is named by line and column.
 */
function normaliseTransform(y: YamlConsumer['transform'], at: PathSegment[], issues: RawIssue[]): { transform?: TransformSpec } {
  if (y === undefined) return {};
  try {
    checkTransform(y);
  } catch (e) {
    if (!(e instanceof TransformError)) throw e;
    const where = e.line !== undefined ? `line ${e.line}, column ${e.column}: ` : '';
    issues.push(issue(e.line !== undefined ? [...at, 'function'] : at, where + e.message));
  }
  return { transform: y };
}

/**
 * Only what selects something: an empty filter is no filter. A where's keys
 * are qualified and must be among the consumer's tables; its syntax is
 * checked here (the columns and types when it is saved, against the source).
 */
export function normaliseFilter(
  y: YamlConsumer['filter'],
  tables: string[],
  at: PathSegment[],
  issues: RawIssue[],
): { filter?: NonNullable<ConsumerConfig['filter']> } {
  const filter: NonNullable<ConsumerConfig['filter']> = {};
  if (y?.actions !== undefined) filter.actions = [...y.actions];
  const where: Record<string, string> = {};
  for (const [table, expression] of Object.entries(y?.where ?? {})) {
    const q = qualifyTable(table);
    if (!tables.includes(q)) issues.push(issue([...at, 'where', table], `"${q}" is not one of this consumer's tables`));
    else if (where[q] !== undefined) issues.push(issue([...at, 'where', table], `repeats "${q}"`));
    try {
      parseWhere(expression);
    } catch (e) {
      if (!(e instanceof FilterError)) throw e;
      issues.push(issue([...at, 'where', table], `at character ${e.position}: ${e.message}`));
    }
    where[q] = expression;
  }
  if (Object.keys(where).length > 0) filter.where = where;
  return Object.keys(filter).length > 0 ? { filter } : {};
}

/**
 * The consumer's source exists and captures every table it reads. `sources` maps
 * every declared source name to its config, or to undefined when that source is
 * itself invalid (then only its existence is checked, to avoid a second error).
 */
export function checkConsumerSource(
  c: ConsumerConfig,
  sources: Map<string, SourceConfig | undefined>,
  at: PathSegment[],
  issues: RawIssue[],
  streams: ReadonlySet<string> = new Set(),
): void {
  if (c.stream !== undefined) {
    if (!streams.has(c.stream)) issues.push(issue([...at, 'stream'], noStream(c.stream, streams)));
    return;
  }
  if (!sources.has(c.source)) {
    const known = [...sources.keys()];
    const hint = didYouMean(c.source, known) || (known.length ? ` (sources: ${known.join(', ')})` : ' (no sources are declared)');
    issues.push(issue([...at, 'source'], `no source named "${c.source}"${hint}`));
    return;
  }
  (c.outbox ?? []).forEach((stream, i) => {
    if (!streams.has(stream)) issues.push(issue([...at, 'outbox', i], noStream(stream, streams)));
  });
  const source = sources.get(c.source);
  if (!source) return;
  c.tables.forEach((table, i) => {
    if (source.tables.includes(table) || source.schemas.includes(table.split('.')[0])) return;
    issues.push(issue([...at, 'tables', i], `"${table}" is not captured by source "${source.name}" (add it to the source's tables or schemas)`));
  });
}

/** "no stream named …", with the likeliest name meant or the streams there are. */
function noStream(name: string, streams: ReadonlySet<string>): string {
  const known = [...streams];
  const hint = didYouMean(name, known) || (known.length ? ` (streams: ${known.join(', ')})` : ' (no streams are declared)');
  return `no stream named "${name}"${hint}`;
}

/** The smallest metrics token accepted: long enough not to be guessed. */
export const METRICS_TOKEN_MIN = 24;

function normaliseMetrics(y: NonNullable<YamlConfig['metrics']>, issues: RawIssue[]): SluiceConfig['metrics'] {
  const access = y.access ?? 'token';
  const token = optional(y.token);
  if (token !== undefined && access === 'open') {
    issues.push(issue(['metrics', 'token'], 'is only used with access: token (with access: open, /metrics takes no token); remove one of them'));
  } else if (token !== undefined && token.length < METRICS_TOKEN_MIN) {
    issues.push(issue(['metrics', 'token'], `must be at least ${METRICS_TOKEN_MIN} characters (it guards the metrics); e.g. slk_$(openssl rand -base64 32)`));
  }
  return { access, ...(token !== undefined && { token }) };
}

/** Reports every name used more than once in a list of resources. */
function checkUnique(items: Array<{ name?: unknown }>, list: 'sources' | 'streams' | 'consumers', issues: RawIssue[]): void {
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    if (typeof item?.name !== 'string') return;
    const earlier = first.get(item.name);
    if (earlier === undefined) first.set(item.name, i);
    else issues.push(issue([list, i, 'name'], `"${item.name}" is already used by ${list}[${earlier}]`));
  });
}

/**
 * Normalises a whole config. `invalid` holds the resources the schema already
 * rejected ("sources.0"); they are skipped here so one mistake is reported once,
 * while the valid ones are still checked, so a run lists every problem.
 */
export function normaliseConfig(y: YamlConfig, invalid: Set<string>, issues: RawIssue[]): SluiceConfig {
  // A section the schema rejected as a whole (`sources: 3`) reads as empty.
  const section = <K extends keyof YamlConfig>(key: K): YamlConfig[K] | undefined => (invalid.has(key) ? undefined : y[key]);
  const rawSources = section('sources') ?? [];
  const rawConsumers = section('consumers') ?? [];
  const rawStreams = section('streams') ?? [];
  checkUnique(rawSources, 'sources', issues);
  checkUnique(rawStreams, 'streams', issues);
  checkUnique(rawConsumers, 'consumers', issues);

  const sourcesByName = new Map<string, SourceConfig | undefined>();
  const sources: SourceConfig[] = [];
  // Two sources on one database cannot share a replication slot.
  const slots = new Map<string, number>();
  rawSources.forEach((raw, i) => {
    // A repeated name is already reported; checking the copy would only echo it.
    if (typeof raw?.name === 'string' && sourcesByName.has(raw.name)) return;
    const source = invalid.has(`sources.${i}`) ? undefined : normaliseSource(raw, ['sources', i], issues);
    if (typeof raw?.name === 'string') sourcesByName.set(raw.name, source);
    if (!source) return;
    sources.push(source);
    const slotKey = `${source.url ?? ''}\0${source.slot}`;
    const other = slots.get(slotKey);
    if (other !== undefined) issues.push(issue(['sources', i, 'slot'], `"${source.slot}" is already used by sources[${other}] on the same database`));
    slots.set(slotKey, i);
  });

  // A consumer names a source or a stream: the two share one namespace.
  const streams: StreamConfig[] = [];
  rawStreams.forEach((raw, i) => {
    if (invalid.has(`streams.${i}`) || streams.some((s) => s.name === raw?.name)) return;
    if (sourcesByName.has(raw.name)) issues.push(issue(['streams', i, 'name'], `"${raw.name}" is already the name of a source`));
    streams.push(normaliseStream(raw, ['streams', i], issues));
  });

  const consumers: ConsumerConfig[] = [];
  rawConsumers.forEach((raw, i) => {
    if (invalid.has(`consumers.${i}`)) return;
    const c = normaliseConsumer(raw, ['consumers', i], issues);
    // With the sources list itself rejected, "no such source" would be noise.
    if (!invalid.has('sources') && !invalid.has('streams')) checkConsumerSource(c, sourcesByName, ['consumers', i], issues, new Set(streams.map((s) => s.name)));
    consumers.push(c);
  });

  const H = DEFAULTS.http;
  const http = section('http') ?? {};
  const bufferUrl = optional(section('buffer')?.url);
  const adminToken = optional(section('auth')?.admin_token);
  const metrics = normaliseMetrics(section('metrics') ?? {}, issues);
  return {
    buffer: bufferUrl !== undefined ? { url: bufferUrl } : {},
    http: {
      host: http.host ?? H.host,
      port: http.port ?? H.port,
      body_limit_bytes: bytes(http.body_limit, H.body_limit, MAXIMA.http.body_limit, ['http', 'body_limit'], issues),
      ...(http.console === false && { console: false }),
    },
    auth: adminToken !== undefined ? { admin_token: adminToken } : {},
    metrics,
    sources,
    streams,
    consumers,
  };
}
