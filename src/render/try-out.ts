// "Try a filter and a transform": one message through what a consumer's
// delivery does to it (the filter's verdict, then the transform), without
// saving or delivering anything. The transform is compiled for this call and
// closed after it, so a function's worker thread lives only as long as the try.
import type { ConsumerFilter } from '../config/types.js';
import { compileWhere } from '../pipeline/filter/compile.js';
import { payloadRow } from '../pipeline/filter/record.js';
import type { FilterColumns } from '../pipeline/filter/save-check.js';
import { tryTransform, type TransformSpec } from '../pipeline/transform/compile.js';

export interface TryOutInput {
  /** The message as the consumer is served it without a transform (JSON text). */
  envelope: string;
  /** Its qualified table and action, as the message names them. */
  table: string | null;
  action: string | null;
  filter?: ConsumerFilter;
  /** The where filters' column types, checked against the source (null: no where). */
  columns: FilterColumns | null;
  transform?: TransformSpec;
}

export interface TryOutResult {
  passed: boolean;
  reason: string | null;
  /** The output's JSON text; null when the transform failed. */
  output: string | null;
  error: string | null;
}

/** Throws TransformError when the transform does not compile, SyntaxError when the message cannot be read. */
export async function tryOut(i: TryOutInput): Promise<TryOutResult> {
  const { passed, reason } = verdict(i);
  // The transform runs whatever the filter says: trying one on a sample is
  // the point, and `passed` tells whether it would be delivered.
  if (!i.transform) return { passed, reason, output: i.envelope, error: null };
  const r = await tryTransform(i.transform, i.envelope);
  return r.ok ? { passed, reason, output: r.json, error: null } : { passed, reason, output: null, error: r.error };
}

function verdict(i: TryOutInput): { passed: boolean; reason: string | null } {
  const actions = i.filter?.actions;
  if (actions && !actions.includes(i.action as never)) {
    return { passed: false, reason: `its action (${i.action ?? 'none'}) is not in filter.actions [${actions.join(', ')}]` };
  }
  const expression = i.table ? i.filter?.where?.[i.table] : undefined;
  if (expression === undefined || !i.table) return { passed: true, reason: null };
  const columns = i.columns?.[i.table] ?? {};
  const result = compileWhere(expression, columns).test(payloadRow(i.envelope));
  if (result === true) return { passed: true, reason: null };
  return { passed: false, reason: `filter.where on ${i.table} is ${result === false ? 'false' : 'NULL (unknown)'} for this row` };
}
