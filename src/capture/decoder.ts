// Turns pgoutput row events into log rows: one JSON payload per change
// (the change envelope), stored once whatever the number of consumers; the
// consumers of its table are only noted, to be woken when it is stored.
// Payloads are built as JSON text, column by column, so no value passes through
// a JS number or a JSON.parse/stringify round trip.
import { idempotencyKey } from '../buffer/message.js';
import type { LogRow } from '../buffer/writer.js';
import type { OutboxFields, OutboxMessage } from './outbox.js';
import { isoFromMicros } from './commit-time.js';
import type { Relation, ReplicationEvent, Tuple } from './replication.js';
import { encodeValue, unknownType, type TypeInfo, type TypeLookup } from './values.js';

export const ANNOTATIONS_SET = 'sequin:transaction_annotations.set';
export const ANNOTATIONS_CLEAR = 'sequin:transaction_annotations.clear';

/** Where a table's changes go: one route per consumer. */
export interface Route {
  consumerId: string;
  /** null: group by primary key; false: no grouping; else these columns. */
  groupColumns: string[] | null | false;
}

interface ColumnPlan {
  name: string;
  keyJson: string;
  type: TypeInfo;
}

interface RelationPlan {
  qualified: string;
  /** Columns whose values make record_pks (primary key, else the replica identity key). */
  pkColumns: string[];
  columns: ColumnPlan[];
  /** `"table_schema":"…","table_name":"…",` */
  tableJson: string;
  schema: string;
  table: string;
  /** Consumers of this table (ids), woken when its changes are stored. */
  wake: string[];
}

export interface DecoderDeps {
  databaseName: string;
  types: { ensure(oids: number[]): Promise<void>; get(oid: number): TypeInfo | undefined };
  primaryKey(relationOid: number): Promise<string[]>;
  routesFor(qualifiedTable: string): Route[];
}

type RowEvent = Extract<ReplicationEvent, { tag: 'insert' | 'update' | 'delete' }>;

export class ChangeDecoder {
  private plans = new Map<number, RelationPlan>();
  private commitLsn = 0n;
  private commitJson = '';
  private committedAt = '';
  private idx = 0;
  /** JSON text of the transaction's annotations ('null' when none are set). */
  private annotationsJson = 'null';
  private readonly lookup: TypeLookup;
  private readonly dbJson: string;

  constructor(private readonly deps: DecoderDeps) {
    this.lookup = (oid) => deps.types.get(oid);
    this.dbJson = JSON.stringify(deps.databaseName);
  }

  /** The source database's name (metadata.database_name). */
  get databaseName(): string {
    return this.deps.databaseName;
  }

  async onRelation(rel: Relation): Promise<void> {
    await this.deps.types.ensure(rel.columns.map((c) => c.typeOid));
    let pk = await this.deps.primaryKey(rel.oid);
    if (pk.length === 0) pk = rel.columns.filter((c) => c.isKey).map((c) => c.name);
    const qualified = `${rel.schema}.${rel.name}`;
    this.plans.set(rel.oid, {
      qualified,
      pkColumns: pk,
      columns: rel.columns.map((c) => ({
        name: c.name,
        keyJson: JSON.stringify(c.name) + ':',
        type: this.deps.types.get(c.typeOid) ?? unknownType(c.typeOid),
      })),
      tableJson: `"table_schema":${JSON.stringify(rel.schema)},"table_name":${JSON.stringify(rel.name)},`,
      schema: rel.schema,
      table: rel.name,
      wake: this.deps.routesFor(qualified).map((r) => r.consumerId),
    });
  }

  /** Consumers changed: recompute every known table's routes. */
  refreshRoutes(): void {
    for (const plan of this.plans.values()) plan.wake = this.deps.routesFor(plan.qualified).map((r) => r.consumerId);
  }

  begin(commitLsn: bigint, commitTimeMicros: bigint): void {
    this.commitLsn = commitLsn;
    this.idx = 0;
    this.annotationsJson = 'null';
    this.committedAt = isoFromMicros(commitTimeMicros);
    this.commitJson = `"commit_timestamp":"${this.committedAt}","commit_lsn":${commitLsn},`;
  }

  /**
   * A transactional logical message (pg_logical_emit_message(true, …)) inside
   * the current transaction. Sequin's protocol: 'sequin:transaction_annotations.set'
   * with a JSON object as content annotates every change that follows it in the
   * transaction; '….clear' stops that. Content that is not a JSON object is
   * ignored (returned as the reason, for a warning) rather than stored, so a
   * consumer never receives annotations that are not an object.
   */
  message(prefix: string, content: Uint8Array): string | null {
    if (prefix === ANNOTATIONS_CLEAR) {
      this.annotationsJson = 'null';
      return null;
    }
    if (prefix !== ANNOTATIONS_SET) return null;
    const text = Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return 'content is not JSON';
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'content is not a JSON object';
    // Re-serialised: compact, and free of anything JSON.parse tolerated.
    this.annotationsJson = JSON.stringify(value);
    return null;
  }

  /**
   * An outbox message of the current transaction (src/capture/outbox.ts). It
   * takes the next index among the transaction's changes, so its place
   * between them is known.
   */
  outbox(stream: string, fields: OutboxFields): OutboxMessage {
    return { stream, ...fields, commitLsn: this.commitLsn, commitIdx: this.idx++, committedAt: this.committedAt };
  }

  /** Appends this change's log row to `out`. */
  change(e: RowEvent, out: { push(row: LogRow): void }): void {
    const plan = this.plans.get(e.relationOid);
    if (!plan) throw new Error(`change for relation ${e.relationOid} before its relation message`);
    const commitIdx = this.idx++;

    let record: Tuple;
    let changes = 'null';
    if (e.tag === 'insert') record = e.new;
    else if (e.tag === 'update') {
      record = e.new;
      changes = this.changesJson(plan, e.old ?? e.key, e.new);
    } else record = (e.old ?? e.key)!;

    const omitted: string[] = [];
    const recordJson = this.tupleJson(plan, record, omitted);
    const pks = plan.pkColumns.map((c) => record[c] ?? '');
    const pksJson = JSON.stringify(pks);
    const meta =
      '"metadata":{' +
      plan.tableJson +
      this.commitJson +
      `"commit_idx":${commitIdx},"idempotency_key":"${idempotencyKey(this.commitLsn, commitIdx)}",` +
      `"record_pks":${pksJson},"database_name":${this.dbJson},` +
      (omitted.length ? `"unchanged_toast_columns":${JSON.stringify(omitted)},` : '') +
      `"transaction_annotations":${this.annotationsJson}}}`;
    const payload = `{"record":${recordJson},"changes":${changes},"action":"${e.tag}",${meta}`;

    // The default group; consumers grouping by other columns compute theirs
    // from the record when they take the change in (sluice.admit).
    out.push({
      commitLsn: this.commitLsn,
      commitIdx,
      schema: plan.schema,
      table: plan.table,
      action: e.tag,
      groupKey: plan.qualified + ':' + pksJson,
      committedAt: this.committedAt,
      payload,
      wake: plan.wake,
    });
  }

  private tupleJson(plan: RelationPlan, t: Tuple, omitted: string[]): string {
    let s = '{';
    let first = true;
    for (const col of plan.columns) {
      const v = t[col.name];
      if (v === undefined) {
        // Not in the tuple: an unchanged TOAST value (or, for a key-only delete,
        // a column that is not part of the key — not reported as TOAST).
        if (col.name in t) omitted.push(col.name);
        continue;
      }
      s += (first ? '' : ',') + col.keyJson + encodeValue(v, col.type, this.lookup);
      first = false;
    }
    return s + '}';
  }

  /** Previous values of the columns that changed; {} when the old row is unknown. */
  private changesJson(plan: RelationPlan, old: Tuple | null, next: Tuple): string {
    if (!old) return '{}';
    let s = '{';
    let first = true;
    for (const col of plan.columns) {
      if (!(col.name in old)) continue;
      const before = old[col.name];
      if (before === undefined || before === next[col.name]) continue;
      s += (first ? '' : ',') + col.keyJson + encodeValue(before, col.type, this.lookup);
      first = false;
    }
    return s + '}';
  }
}
