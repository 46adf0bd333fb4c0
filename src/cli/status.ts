// `sluice status`: per source its durable position, slot lag, capture state
// and retained log (and what holds it back); per consumer pending / in flight /
// dead-lettered, and its backfills running (or failed).
import type { Pool } from '../db/pool.js';
import { createPool } from '../db/pool.js';
import type { ConsumerConfig, SluiceConfig } from '../config/types.js';
import { loadConsumers } from '../buffer/consumers.js';
import { consumerStats } from '../buffer/dead-letters.js';
import { listFaults } from '../buffer/faults.js';
import * as q from '../capture/setup-queries.js';
import { logStatus, type LogStatus } from '../log/status.js';
import { listBackfills } from '../backfill/queries.js';
import { presentBackfill } from '../backfill/present.js';
import { progressLine } from './backfill.js';

const POSITIONS = `SELECT source_name, confirmed_lsn::text AS lsn, last_commit_at, updated_at FROM sluice.source_positions ORDER BY 1`;

export interface StatusReport {
  sources: Array<{ name: string; confirmed_lsn: string | null; last_commit_at: string | null; slot_active: boolean | null; lag_bytes: number | null; log?: LogStatus; error?: string }>;
  consumers: Array<{ name: string; kind: string; state: string; state_reason: string | null; filter: string | null; transform: string | null; pending: number; in_flight: number; dead_lettered: number; oldest_pending_age_ms: number | null; backfills?: string[] }>;
}

export async function statusReport(pool: Pool, config: SluiceConfig | null, bufferUrl: string): Promise<StatusReport> {
  const positions = new Map((await pool.query(POSITIONS)).rows.map((r) => [r.source_name, r]));
  const sources: StatusReport['sources'] = [];
  for (const s of config?.sources ?? []) {
    const pos = positions.get(s.name);
    const entry: StatusReport['sources'][number] = {
      name: s.name,
      confirmed_lsn: pos?.lsn ?? null,
      last_commit_at: pos?.last_commit_at ? new Date(pos.last_commit_at).toISOString() : null,
      slot_active: null,
      lag_bytes: null,
    };
    const src = s.url ? createPool(s.url, { max: 1, name: 'sluice-status' }) : pool;
    try {
      const slot = await q.slotInfo(src, s.slot);
      entry.slot_active = slot.exists ? Boolean(slot.active) : null;
      entry.lag_bytes = await q.slotLagBytes(src, s.slot);
      if (!slot.exists) entry.error = `slot ${s.slot} does not exist yet (sluice start creates it)`;
    } catch (err) {
      entry.error = (err as Error).message;
    } finally {
      if (src !== pool) await src.end();
    }
    // A buffer not migrated yet has no log to show.
    entry.log = await logStatus(pool, s.name).catch(() => undefined);
    sources.push(entry);
  }
  const consumers: StatusReport['consumers'] = [];
  const faults = await listFaults(pool);
  for (const c of await loadConsumers(pool)) {
    const st = await consumerStats(pool, c.id);
    // Active in name only while its claims fail (as the API shows it).
    const fault = c.state === 'active' ? faults.get(c.id) : undefined;
    const state = fault ? 'failing' : c.state;
    const f = c.config.filter;
    const parts = [
      ...(f?.actions ? [`actions ${f.actions.join(', ')}`] : []),
      ...Object.entries(f?.where ?? {}).map(([table, expression]) => `where ${table}: ${expression}`),
    ];
    const filter = parts.length > 0 ? parts.join('; ') : null;
    // Running backfills, and the latest of each table if it failed (what needs a look).
    const all = await listBackfills(pool, c.id).catch(() => []);
    const latest = new Map(all.map((b) => [`${b.schema_name}.${b.table_name}`, b]));
    const shown = [...latest.values()].filter((b) => b.state === 'running' || b.state === 'failed');
    const backfills = shown.map((b) => progressLine(presentBackfill(b)));
    consumers.push({
      name: c.name, kind: c.kind, state, state_reason: fault ? fault.reason : c.state_reason, filter,
      transform: describeTransform(c.config.transform), ...st, ...(backfills.length > 0 && { backfills }),
    });
  }
  void bufferUrl;
  return { sources, consumers };
}

/** One line: the path, the template's keys, or the function's first line and size. */
function describeTransform(t: ConsumerConfig['transform']): string | null {
  if (!t) return null;
  if ('path' in t) return `path ${t.path}`;
  if ('template' in t) return `template {${Object.keys(t.template).join(', ')}}`;
  const lines = t.function.trim().split('\n');
  const first = lines[0].length > 60 ? lines[0].slice(0, 57) + '...' : lines[0];
  return `function ${first}${lines.length > 1 ? ` (${lines.length} lines)` : ''}`;
}

export function formatStatus(r: StatusReport): string {
  const lines = ['Sources:'];
  for (const s of r.sources) {
    lines.push(
      `  ${s.name}: position ${s.confirmed_lsn ?? '-'}, last commit ${s.last_commit_at ?? '-'}, ` +
        `slot ${s.slot_active === null ? 'missing' : s.slot_active ? 'streaming' : 'idle'}, lag ${s.lag_bytes ?? '-'} bytes` +
        (s.error ? `\n    ${s.error}` : '') +
        (s.log ? `\n    ${formatLog(s.log)}` : ''),
    );
  }
  lines.push('Consumers:');
  for (const c of r.consumers) {
    lines.push(
      `  ${c.name} (${c.kind}, ${c.state}): pending ${c.pending}, in flight ${c.in_flight}, dead-lettered ${c.dead_lettered}` +
        (c.oldest_pending_age_ms !== null ? `, oldest pending ${(c.oldest_pending_age_ms / 1000).toFixed(1)} s` : '') +
        (c.filter ? `\n    filter: ${c.filter}` : '') +
        (c.transform ? `\n    transform: ${c.transform}` : '') +
        (c.backfills ?? []).map((b) => `\n    backfill: ${b}`).join('') +
        (c.state !== 'active' && c.state_reason ? `\n    ${c.state_reason}` : ''),
    );
  }
  return lines.join('\n');
}

function formatLog(log: LogStatus): string {
  let line =
    `log: ${log.retained_changes} changes, ${log.retained_bytes} bytes in ${log.partitions} partition${log.partitions === 1 ? '' : 's'}, ` +
    `oldest ${log.oldest_commit_at ?? '-'}`;
  const held = log.held_back;
  if (held) {
    const by = [...held.consumers.map((c) => `${c.name} (${c.state})`), ...(held.capture ? ['capture'] : [])].join(', ');
    line += `\n    held back: ${held.changes} changes, ${held.bytes} bytes, oldest ${held.oldest_commit_at ?? '-'}, by ${by || '-'}`;
    if (held.warning) line += `\n    warning: ${held.warning}`;
  }
  return line;
}
