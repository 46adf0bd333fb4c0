// The way back: a normalised config (ms, bytes) in the YAML shape people write
// (durations as "30s", sizes as "64KB"). Every setting is written out, defaults
// included, so an exported config keeps its behaviour even if a default changes.
import { stringify } from 'yaml';
import type { YamlConfig, YamlConsumer, YamlSource, YamlStream } from './schema.js';
import type { ConsumerConfig, SluiceConfig, SourceConfig, StreamConfig } from './types.js';
import { formatDuration, formatSize } from './units.js';

export function toYamlSource(s: SourceConfig): YamlSource {
  return {
    name: s.name,
    ...(s.url !== undefined && { url: s.url }),
    tables: [...s.tables],
    schemas: [...s.schemas],
    publication: s.publication,
    slot: s.slot,
    create_if_missing: s.create_if_missing,
    heartbeat_interval: formatDuration(s.heartbeat_interval_ms),
    lag_warning: formatSize(s.lag_warning_bytes),
    max_batch_changes: s.max_batch_changes,
    ...(s.annotations !== undefined && { annotations: { ...s.annotations } }),
    retention: { max_age: formatDuration(s.retention.max_age_ms), max_size: formatSize(s.retention.max_size_bytes) },
  };
}

export function toYamlStream(s: StreamConfig): YamlStream {
  return {
    name: s.name,
    retention: { max_age: formatDuration(s.retention.max_age_ms), max_size: formatSize(s.retention.max_size_bytes) },
    ...(s.annotations !== undefined && { annotations: { ...s.annotations } }),
  };
}

export function toYamlConsumer(c: ConsumerConfig): YamlConsumer {
  const out: YamlConsumer = {
    name: c.name,
    ...(c.stream !== undefined ? { stream: c.stream, subjects: [...(c.subjects ?? ['>'])] } : { source: c.source }),
    kind: c.kind,
    ...(c.stream === undefined && { tables: [...c.tables] }),
    ...(c.stream === undefined && c.subjects !== undefined && { subjects: [...c.subjects] }),
    ...(c.outbox !== undefined && { outbox: [...c.outbox] }),
    group_by: typeof c.group_by === 'object' ? { ...c.group_by } : c.group_by,
    dead_letter_blocks_group: c.dead_letter_blocks_group,
    message_kind: c.message_kind ?? 'change',
    ...(c.filter && {
      filter: {
        ...(c.filter.actions !== undefined && { actions: [...c.filter.actions] }),
        ...(c.filter.where !== undefined && { where: { ...c.filter.where } }),
      },
    }),
    ...(c.transform !== undefined && { transform: structuredClone(c.transform) }),
    ...(c.start !== undefined && { start: c.start }),
    annotations: { ...c.annotations },
  };
  if (c.pull) {
    out.pull = {
      ack_wait: formatDuration(c.pull.ack_wait_ms),
      max_ack_pending: c.pull.max_ack_pending,
      max_waiting: c.pull.max_waiting,
      ...(c.pull.max_deliver !== undefined && { max_deliver: c.pull.max_deliver }),
    };
  }
  if (c.webhook) {
    const w = c.webhook;
    out.webhook = {
      url: w.url,
      headers: { ...w.headers },
      secrets: [...w.secrets],
      batch_size: w.batch_size,
      batch_timeout: formatDuration(w.batch_timeout_ms),
      max_in_flight: w.max_in_flight,
      timeout: formatDuration(w.timeout_ms),
      max_response_bytes: formatSize(w.max_response_bytes),
      retry: {
        initial: formatDuration(w.retry.initial_ms),
        factor: w.retry.factor,
        cap: formatDuration(w.retry.cap_ms),
        ...(w.retry.max_attempts !== undefined && { max_attempts: w.retry.max_attempts }),
        ...(w.retry.max_age_ms !== undefined && { max_age: formatDuration(w.retry.max_age_ms) }),
      },
      allow_private_ranges: [...w.allow_private_ranges],
      ...(w.batched !== undefined && { batched: w.batched }),
      ...(w.disable_after_ms !== undefined && { disable_after: formatDuration(w.disable_after_ms) }),
    };
  }
  return out;
}

export function toYamlShape(config: SluiceConfig): YamlConfig {
  return {
    buffer: { ...config.buffer },
    http: {
      host: config.http.host,
      port: config.http.port,
      body_limit: formatSize(config.http.body_limit_bytes),
      ...(config.http.console === false && { console: false }),
    },
    auth: { ...config.auth },
    // Only when not the default: configs without it export as before.
    ...(config.metrics && (config.metrics.access !== 'token' || config.metrics.token) && { metrics: { ...config.metrics } }),
    sources: config.sources.map(toYamlSource),
    // Only when there are some: configs without streams export as before.
    ...(config.streams.length > 0 && { streams: config.streams.map(toYamlStream) }),
    consumers: config.consumers.map(toYamlConsumer),
  };
}

/** "${" in a value must survive a later loadConfig as text, not as a reference. */
function escapeReferences(value: unknown): unknown {
  // A replacer function: in a replacement string "$$" would itself mean "$".
  if (typeof value === 'string') return value.replaceAll('${', () => '$${');
  if (Array.isArray(value)) return value.map(escapeReferences);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeReferences(v)]));
  }
  return value;
}

/** YAML text that loadConfig reads back to the same config. */
export function stringifyConfig(config: SluiceConfig): string {
  return stringify(escapeReferences(toYamlShape(config)), { lineWidth: 0 });
}
