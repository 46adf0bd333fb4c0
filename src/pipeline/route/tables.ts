// The "tables" a consumer reads in the log, as the walks and admissions select
// them: a source's consumer, its tables; a stream's consumer, the one table
// named ".<stream>" its messages are stored under
// (migrations/0022_stream_consumers.sql); a source's consumer with `outbox`
// also reads those streams' outbox messages, stored in the source's log under
// the same names (migrations/0023_source_outbox.sql).
import type { ConsumerConfig } from '../../config/types.js';

export function logTables(c: Pick<ConsumerConfig, 'tables' | 'stream' | 'outbox'>): string[] {
  if (c.stream !== undefined) return [`.${c.stream}`];
  return c.outbox?.length ? [...c.tables, ...c.outbox.map((s) => `.${s}`)] : c.tables;
}

/** The actions a consumer's actions filter lets through, as the route has them: outbox messages ("publish") always pass. */
export function logActions(c: Pick<ConsumerConfig, 'filter' | 'outbox'>): string[] | undefined {
  const actions = c.filter?.actions;
  if (!actions) return undefined;
  return c.outbox?.length ? [...actions, 'publish'] : [...actions];
}
