// A consumer's where filters, compiled once per loaded consumer record (a
// config reload makes new records, so an edited filter is compiled afresh)
// with the column types stored when it was saved.
import type { ConsumerConfig } from '../../config/types.js';
import { compileWhere, type CompiledFilter } from './compile.js';
import { payloadRow } from './record.js';
import { compileSubjects } from '../route/subjects.js';

/**
 * A published message's subject: its envelope starts {"subject":"…" and a
 * subject has no character JSON escapes (src/streams/publisher.ts).
 */
function payloadSubject(payload: string): string {
  const start = payload.indexOf('"subject":"') + 11;
  return payload.slice(start, payload.indexOf('"', start));
}

export interface ConsumerFilter {
  /** Whether the stored change (its payload) of `table` passes: true passes; false and SQL's NULL do not. */
  passes(table: string, payload: string): boolean;
}

interface Filterable {
  name: string;
  config: Pick<ConsumerConfig, 'filter' | 'subjects'>;
  filter_columns: Record<string, Record<string, string>> | null;
}

/** Why a filter stored for a consumer cannot run: the claim fails with it, and the consumer shows it as a fault. */
export class FilterUnusableError extends Error {}

const compiled = new WeakMap<Filterable, ConsumerFilter | null>();

/** The consumer's where filters, or null when it has none. Throws FilterUnusableError. */
export function consumerFilter(c: Filterable): ConsumerFilter | null {
  const hit = compiled.get(c);
  if (hit !== undefined) return hit;
  const filter = compile(c);
  compiled.set(c, filter);
  return filter;
}

function compile(c: Filterable): ConsumerFilter | null {
  // A stream's consumer: its subject patterns (every subject: no filter).
  const subjects = c.config.subjects;
  if (subjects) {
    if (subjects.includes('>')) return null;
    const matcher = compileSubjects(subjects);
    return { passes: (_table, payload) => matcher.matches(payloadSubject(payload)) };
  }
  const where = c.config.filter?.where;
  if (!where || Object.keys(where).length === 0) return null;
  const byTable = new Map<string, CompiledFilter>();
  for (const [table, expression] of Object.entries(where)) {
    const columns = c.filter_columns?.[table];
    if (!columns) {
      throw new FilterUnusableError(
        `consumer "${c.name}": the where filter on ${table} has no stored column types; save the consumer again (PATCH it or run sluice config apply)`,
      );
    }
    try {
      byTable.set(table, compileWhere(expression, columns));
    } catch (e) {
      throw new FilterUnusableError(`consumer "${c.name}": the where filter on ${table} does not compile: ${(e as Error).message}`);
    }
  }
  return {
    passes(table, payload) {
      const f = byTable.get(table);
      // A table without a where passes whole.
      return f === undefined || f.test(payloadRow(payload)) === true;
    },
  };
}
