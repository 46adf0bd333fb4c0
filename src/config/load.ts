// Reading config/sluice.yaml: YAML → ${VAR} substitution → schema → normalised
// SluiceConfig. Nothing here touches a database; apply.ts does that. The same
// per-resource checks are exported for the management API, so a consumer
// created over HTTP and one written in YAML are validated by the same code.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { ConfigError, placeIssues, type PathSegment, type RawIssue } from './errors.js';
import { checkConsumerSource, normaliseConfig, normaliseConsumer, normaliseSource, normaliseStream } from './normalise.js';
import type { YamlConfig, YamlConsumer, YamlSource, YamlStream } from './schema.js';
import { storableIssues } from './storable.js';
import { substituteVariables, type Env } from './substitute.js';
import type { ConsumerConfig, SluiceConfig, SourceConfig, StreamConfig } from './types.js';
import { schemaIssues, validators } from './validate.js';

export { ConfigError, type ConfigIssue } from './errors.js';
export { stringifyConfig, toYamlConsumer, toYamlShape, toYamlSource, toYamlStream } from './yaml-shape.js';
export { configSchema, consumerSchema, sourceSchema, streamSchema } from './schema.js';

export type ConfigSource = string | { text: string; origin?: string };

/** Levels of maps and lists in a config file: consumers[i].annotations (32 levels) sits at level 4. */
const MAX_CONFIG_DEPTH = 64;

/**
 * Loads and validates a config file (a path) or text. Throws ConfigError listing
 * every problem found, each with its path and, when known, its line.
 */
export function loadConfig(source: ConfigSource, env: Env = process.env): SluiceConfig {
  const origin = typeof source === 'string' ? source : source.origin;
  let text: string;
  try {
    text = typeof source === 'string' ? readFileSync(source, 'utf8') : source.text;
  } catch (err) {
    throw new ConfigError([{ path: '(file)', reason: `cannot be read: ${(err as Error).message}` }], origin);
  }

  const lines = new LineCounter();
  // uniqueKeys: a key written twice is an error, not "the last one wins".
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e) => ({
      path: '(yaml)',
      reason: e.message.split('\n')[0],
      line: lines.linePos(e.pos[0]).line,
    }));
    throw new ConfigError(issues, origin);
  }
  const lineOf = (segments: PathSegment[]) => lineOfPath(doc, lines, segments);

  // A failed substitution leaves a value nobody wrote; validating it would only
  // add confusing errors, so these are reported alone.
  const substitution = substituteVariables(doc, env);
  if (substitution.length > 0) throw new ConfigError(placeIssues(substitution, lineOf), origin);

  let data: unknown;
  try {
    // maxAliasCount: a file of nested aliases ("billion laughs") fails instead of exhausting memory.
    data = doc.toJS({ maxAliasCount: 1000 }) ?? {};
  } catch (err) {
    throw new ConfigError([{ path: '(yaml)', reason: (err as Error).message }], origin);
  }
  // A NUL character would reach Postgres (config apply), which cannot store it.
  const unstorable = storableIssues(data, [], MAX_CONFIG_DEPTH);
  if (unstorable.length > 0) throw new ConfigError(placeIssues(unstorable, lineOf), origin);
  const issues = schemaIssues(validators.config, data);
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(placeIssues(issues, lineOf), origin);

  const config = normaliseConfig(data as YamlConfig, invalidParts(issues), issues);
  if (issues.length > 0) throw new ConfigError(placeIssues(issues, lineOf), origin);
  return config;
}

/**
 * Validates one source in the YAML shape (durations as "30s") and returns it
 * normalised. Paths in errors are relative to the source ("tables[0]").
 */
export function validateSource(obj: unknown): SourceConfig {
  const issues = schemaIssues(validators.source, obj);
  if (issues.length > 0) throw new ConfigError(placeIssues(issues));
  const source = normaliseSource(obj as YamlSource, [], issues);
  if (issues.length > 0) throw new ConfigError(placeIssues(issues));
  return source;
}

/** Validates one stream in the YAML shape and returns it normalised (paths relative to it). */
export function validateStream(obj: unknown): StreamConfig {
  const issues = schemaIssues(validators.stream, obj);
  if (issues.length > 0) throw new ConfigError(placeIssues(issues));
  const stream = normaliseStream(obj as YamlStream, [], issues);
  if (issues.length > 0) throw new ConfigError(placeIssues(issues));
  return stream;
}

/**
 * Validates one consumer in the YAML shape and returns it normalised. With
 * `sources`, also checks that its source exists and captures its tables.
 */
export function validateConsumer(obj: unknown, context: { sources?: SourceConfig[]; streams?: string[] } = {}): ConsumerConfig {
  const issues = schemaIssues(validators.consumer, obj);
  if (issues.length > 0) throw new ConfigError(placeIssues(issues));
  const consumer = normaliseConsumer(obj as YamlConsumer, [], issues);
  if (context.sources) {
    const byName = new Map<string, SourceConfig | undefined>(context.sources.map((s) => [s.name, s]));
    checkConsumerSource(consumer, byName, [], issues, new Set(context.streams ?? []));
  }
  if (issues.length > 0) throw new ConfigError(placeIssues(issues));
  return consumer;
}

/**
 * Which parts the schema rejected: "sources.2", "consumers.0", or a whole
 * top-level section ("http"). normaliseConfig skips them so each mistake is
 * reported once.
 */
function invalidParts(issues: RawIssue[]): Set<string> {
  const out = new Set<string>();
  for (const { segments } of issues) {
    const [section, index] = segments;
    if (section === undefined) continue;
    if ((section === 'sources' || section === 'streams' || section === 'consumers') && typeof index === 'number') out.add(`${section}.${index}`);
    else out.add(String(section));
  }
  return out;
}

/** The line of the deepest node on the path that exists (a missing key: its parent's line). */
function lineOfPath(doc: Document, lines: LineCounter, segments: PathSegment[]): number | undefined {
  for (let n = segments.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(segments.slice(0, n), true);
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (range) return lines.linePos(range[0]).line;
  }
  return undefined;
}
