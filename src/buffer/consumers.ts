// Consumers as stored in sluice.consumers: the one list capture, pull and push
// route by. A registry caches them and reloads when 'sluice_config' is notified
// (config apply and the management API notify after every change).
import type { ConsumerConfig, ConsumerKind } from '../config/types.js';
import type { Pool } from '../db/pool.js';

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
}

const SELECT_CONSUMERS = `
  SELECT id, name, source_name, kind, config, state, state_reason, annotations
  FROM sluice.consumers ORDER BY name`;

export async function loadConsumers(pool: Pool): Promise<ConsumerRecord[]> {
  const { rows } = await pool.query<ConsumerRecord>(SELECT_CONSUMERS);
  return rows;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class ConsumerRegistry {
  private byName = new Map<string, ConsumerRecord>();
  private byId = new Map<string, ConsumerRecord>();
  private listeners = new Set<(all: ConsumerRecord[]) => void>();

  constructor(private readonly pool: Pool) {}

  async reload(): Promise<ConsumerRecord[]> {
    const all = await loadConsumers(this.pool);
    this.byName = new Map(all.map((c) => [c.name, c]));
    this.byId = new Map(all.map((c) => [c.id, c]));
    for (const l of this.listeners) l(all);
    return all;
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
