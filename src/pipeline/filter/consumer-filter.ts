// A consumer's where filters, compiled once per loaded consumer record (a
// config reload makes new records, so an edited filter is compiled afresh)
// with the column types stored when it was saved.
import type { ConsumerConfig } from '../../config/types.js';
import { compileWhere, type CompiledFilter } from './compile.js';
import { payloadRow } from './record.js';
import { changeSubject, compileSubjects, type SubjectMatcher } from '../route/subjects.js';
import { collect, type PathNode } from '../transform/scan.js';

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
  config: Pick<ConsumerConfig, 'filter' | 'subjects' | 'stream'>;
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
  // Subject patterns (every subject, ">": none), and where filters: both must pass.
  const subjects = c.config.subjects;
  const bySubject = subjects && !subjects.includes('>') ? subjectFilter(c, compileSubjects(subjects)) : null;
  const byWhere = whereFilter(c);
  if (!bySubject || !byWhere) return bySubject ?? byWhere;
  return { passes: (table, payload) => bySubject.passes(table, payload) && byWhere.passes(table, payload) };
}

/** A stream's message by its own subject; a captured change by <database>.<schema>.<table>.<action>. */
function subjectFilter(c: Filterable, matcher: SubjectMatcher): ConsumerFilter {
  if (c.config.stream !== undefined) return { passes: (_table, payload) => matcher.matches(payloadSubject(payload)) };
  // A source's consumer: outbox messages (table ".<stream>") by their own subject too.
  return { passes: (table, payload) => matcher.matches(table.startsWith('.') ? payloadSubject(payload) : changeSubjectOf(payload)) };
}

const leaf = (slot: number): PathNode => ({ slot, children: null });
const CHANGE_FIELDS: PathNode = {
  slot: -1,
  children: new Map<string, PathNode>([
    ['action', leaf(0)],
    ['metadata', { slot: -1, children: new Map([['table_schema', leaf(1)], ['table_name', leaf(2)], ['database_name', leaf(3)]]) }],
  ]),
};

/** The change's subject, from its stored envelope. */
function changeSubjectOf(payload: string): string {
  const [action, schema, table, database] = collect(payload, CHANGE_FIELDS, 4).map((v) => (v === undefined ? '' : String(JSON.parse(v))));
  return changeSubject(database, schema, table, action);
}

function whereFilter(c: Filterable): ConsumerFilter | null {
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
