// What applying a config would change: per source and consumer, create, update
// or delete, with a field-level diff. Pure (no database), so it can be tested and
// printed on its own. Secrets, header values and URL passwords are masked in the
// plan itself, because a plan is made to be printed, logged and pasted.
import { formatPath, type PathSegment } from './errors.js';
import type { ConsumerConfig, SluiceConfig, SourceConfig, StreamConfig } from './types.js';
import { maskSecret } from '../signing/secrets.js';
import { maskUrl } from '../log.js';

export interface FieldChange {
  /** Path in the normalised config, e.g. `webhook.timeout_ms`, `group_by["public.orders"]`. */
  path: string;
  /** Masked. Absent when the field is new. */
  before?: unknown;
  /** Masked. Absent when the field is removed. */
  after?: unknown;
}

export interface PlanChange {
  action: 'create' | 'update' | 'delete';
  resource: 'source' | 'stream' | 'consumer';
  name: string;
  fields: FieldChange[];
}

export type ConfigPlan = PlanChange[];

export interface StoredConfig {
  sources: SourceConfig[];
  streams: StreamConfig[];
  consumers: ConsumerConfig[];
}

/** Changes that turn `stored` into `desired`. Without prune, nothing is deleted. */
export function diffConfig(desired: SluiceConfig, stored: StoredConfig, opts: { prune?: boolean } = {}): ConfigPlan {
  return [
    ...diffResources('source', desired.sources, stored.sources, opts.prune ?? false),
    ...diffResources('stream', desired.streams, stored.streams, opts.prune ?? false),
    ...diffResources('consumer', desired.consumers, stored.consumers, opts.prune ?? false),
  ];
}

function diffResources<T extends { name: string }>(
  resource: PlanChange['resource'],
  desired: T[],
  stored: T[],
  prune: boolean,
): PlanChange[] {
  const before = new Map(stored.map((r) => [r.name, r]));
  const wanted = new Set(desired.map((r) => r.name));
  const out: PlanChange[] = [];
  for (const r of [...desired].sort(byName)) {
    const old = before.get(r.name);
    const fields = diffFields(old, r);
    if (!old) out.push({ action: 'create', resource, name: r.name, fields });
    else if (fields.length > 0) out.push({ action: 'update', resource, name: r.name, fields });
  }
  if (prune) {
    for (const r of [...stored].sort(byName)) {
      if (!wanted.has(r.name)) out.push({ action: 'delete', resource, name: r.name, fields: diffFields(r, undefined) });
    }
  }
  return out;
}

const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Leaf-level differences. Lists are compared whole; maps field by field. */
export function diffFields(before: unknown, after: unknown): FieldChange[] {
  const a = flatten(canonical(before));
  const b = flatten(canonical(after));
  const out: FieldChange[] = [];
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const was = a.get(key);
    const now = b.get(key);
    if (was && now && was.json === now.json) continue;
    const path = (was ?? now)!.path;
    const change: FieldChange = { path: formatPath(path) };
    if (was) change.before = mask(path, was.value);
    if (now) change.after = mask(path, now.value);
    out.push(change);
  }
  return out;
}

/** JSON-equivalent value with object keys sorted, as jsonb would give it back. */
function canonical(value: unknown): unknown {
  if (value === undefined) return undefined;
  const plain: unknown = JSON.parse(JSON.stringify(value));
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return sort(plain);
}

type Leaf = { path: PathSegment[]; value: unknown; json: string };

function flatten(value: unknown, path: PathSegment[] = [], out = new Map<string, Leaf>()): Map<string, Leaf> {
  if (value === undefined) return out;
  const isMap = value !== null && typeof value === 'object' && !Array.isArray(value);
  if (isMap && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) flatten(v, [...path, k], out);
  } else {
    out.set(JSON.stringify(path), { path, value, json: JSON.stringify(value) });
  }
  return out;
}

// One masking rule for secrets everywhere (plans, API responses): "whsec_…abcd".
export { maskSecret } from '../signing/secrets.js';

function maskText(value: string): string {
  return value.length >= 16 ? `…${value.slice(-4)}` : '****';
}

function mask(path: PathSegment[], value: unknown): unknown {
  const last = path[path.length - 1];
  if (last === 'secrets' && Array.isArray(value)) return value.map((s) => maskSecret(String(s)));
  if (path[path.length - 2] === 'headers' && typeof value === 'string') return maskText(value);
  if (last === 'url' && typeof value === 'string') return maskUrl(value);
  if (last === 'admin_token' && typeof value === 'string') return maskText(value);
  return value;
}

/** A plan for people: "+ consumer orders", "~ consumer x / webhook.timeout_ms: 30000 → 10000". */
export function formatPlan(plan: ConfigPlan): string {
  if (plan.length === 0) return 'No changes.';
  const sign = { create: '+', update: '~', delete: '-' } as const;
  const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));
  const lines: string[] = [];
  for (const change of plan) {
    lines.push(`${sign[change.action]} ${change.resource} ${change.name}`);
    if (change.action === 'delete') continue;
    for (const f of change.fields) {
      lines.push(change.action === 'create' ? `    ${f.path}: ${show(f.after)}` : `    ${f.path}: ${show(f.before)} → ${show(f.after)}`);
    }
  }
  return lines.join('\n');
}
