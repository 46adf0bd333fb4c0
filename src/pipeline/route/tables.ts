// The "tables" a consumer reads in the log, as the walks and admissions select
// them: a source's consumer, its tables; a stream's consumer, the one table
// named ".<stream>" its messages are stored under
// (migrations/0022_stream_consumers.sql).
import type { ConsumerConfig } from '../../config/types.js';

export function logTables(c: Pick<ConsumerConfig, 'tables' | 'stream'>): string[] {
  return c.stream !== undefined ? [`.${c.stream}`] : c.tables;
}
