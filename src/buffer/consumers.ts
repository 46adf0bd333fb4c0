// Consumers as stored in sluice.consumers: the one list capture, pull and push
// route by, with the sources they read. A registry caches both and reloads
// when 'sluice_config' is notified (config apply and the management API notify
// after every change).
import { parse as parseConnectionString } from 'pg-connection-string';
import type { ConsumerConfig, ConsumerKind, SourceConfig } from '../config/types.js';
import type { Pool } from '../db/pool.js';
import { openConsumer, openSource } from '../secrets/fields.js';
import type { SourceDatabase } from './message.js';

export type ConsumerState = 'active' | 'paused' | 'disabled';

export interface ConsumerRecord {
  id: string;
  name: string;
  source_name: string;
  kind: ConsumerKind;
  config: ConsumerConfig;
  state: ConsumerState;
  state_reason: string | null;
  annotations: Record<string, unknown>;
  /** Its source, served as metadata.database (null if the source row is gone). */
  database: SourceDatabase | null;
  /** The column types its where filters were checked against when saved (src/pipeline/filter/save-check.ts). */
  filter_columns: Record<string, Record<string, string>> | null;
}

const SELECT_CONSUMERS = `
  SELECT id, name, source_name, kind, config, state, state_reason, annotations, filter_columns
  FROM sluice.consumers ORDER BY name`;

const SELECT_VERSION = 'SELECT version FROM sluice.config_version';
const SELECT_SOURCES = 'SELECT id, name, config FROM sluice.sources ORDER BY name';

/**
 * metadata.database of a source: its database and host come from its URL, or
 * from the buffer's when it has none (the buffer's own database is captured).
 */
export function sourceDatabase(row: { id: string; name: string; config: SourceConfig }, bufferUrl: string): SourceDatabase {
  const conn = parseConnectionString(row.config.url || bufferUrl);
  return {
    id: row.id,
    name: row.name,
    annotations: row.config.annotations ?? {},
    database: conn.database ?? conn.user ?? '',
    hostname: conn.host ?? '',
  };
}

export interface SourceRecord {
  id: string;
  name: string;
  config: SourceConfig;
}

/**
 * Sources and consumers as stored, read together so they agree with each
 * other. Secrets are opened once per load (see src/config/queries.ts), so the
 * hot path signs with plain values and a reload that fails to open one (a key
 * this process lacks) throws, leaving the registry as it was: never unsigned.
 */
export async function loadResources(pool: Pool): Promise<{ version: number; sources: SourceRecord[]; consumers: ConsumerRecord[] }> {
  // One after the other: the pool may be a single connection. The version
  // first: what is read after it includes at least the changes it counts.
  const version = Number((await pool.query<{ version: string }>(SELECT_VERSION)).rows[0]?.version ?? 0);
  const { rows } = await pool.query<Omit<ConsumerRecord, 'database'>>(SELECT_CONSUMERS);
  const sources = (await pool.query<SourceRecord>(SELECT_SOURCES)).rows.map((s) => ({ ...s, config: openSource(s.name, s.config) }));
  const bufferUrl = String(pool.options.connectionString ?? '');
  const byName = new Map(sources.map((s) => [s.name, sourceDatabase(s, bufferUrl)]));
  return { version, sources, consumers: rows.map((c) => ({ ...c, config: openConsumer(c.name, c.config), database: byName.get(c.source_name) ?? null })) };
}

export async function loadConsumers(pool: Pool): Promise<ConsumerRecord[]> {
  return (await loadResources(pool)).consumers;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class ConsumerRegistry {
  private byName = new Map<string, ConsumerRecord>();
  private byId = new Map<string, ConsumerRecord>();
  private storedSources: SourceRecord[] = [];
  /** The config version (sluice.config_version) the registry holds. */
  private loadedVersion = -1;
  private listeners = new Set<(all: ConsumerRecord[]) => void>();

  constructor(private readonly pool: Pool) {}

  async reload(): Promise<ConsumerRecord[]> {
    const { version, sources, consumers: all } = await loadResources(this.pool);
    // A slower reload that started earlier must not undo a newer one.
    if (version < this.loadedVersion) return this.all();
    this.loadedVersion = version;
    this.storedSources = sources;
    this.byName = new Map(all.map((c) => [c.name, c]));
    this.byId = new Map(all.map((c) => [c.id, c]));
    for (const l of this.listeners) l(all);
    return all;
  }

  get version(): number {
    return this.loadedVersion;
  }

  /**
   * Resolves once the registry holds config `version` or later, reloading if
   * needed: capture calls it on reading a 'sluice_config' marker, so changes
   * written after a config call returned are routed by that call's config.
   */
  async ensureVersion(version: number): Promise<void> {
    for (let attempt = 0; this.loadedVersion < version; attempt++) {
      // The marker is written after the commit, so one reload is enough; the
      // loop only covers a reload racing this one.
      if (attempt >= 5) throw new Error(`config version ${version} was written but cannot be read (at ${this.loadedVersion})`);
      await this.reload();
    }
  }

  /** The sources as stored at the last reload (what the gateway captures). */
  sources(): SourceRecord[] {
    return this.storedSources;
  }

  all(): ConsumerRecord[] {
    return [...this.byName.values()];
  }

  /** By name or by id, as the pull API's {name} allows. */
  get(nameOrId: string): ConsumerRecord | undefined {
    return this.byName.get(nameOrId) ?? (UUID_RE.test(nameOrId) ? this.byId.get(nameOrId.toLowerCase()) : undefined);
  }

  onChange(fn: (all: ConsumerRecord[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
