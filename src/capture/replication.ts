// The only module that touches pg-logical-replication. Everything else sees our
// own ReplicationEvent type, so a library upgrade or swap touches this file alone.
//
// The library's traps (shared/spec/capture.md) and how this module avoids them:
// - acknowledge.auto=false still leaves a timer that confirms the last *received*
//   LSN: timeoutSeconds=0 turns it off; we send every status update ourselves.
// - acknowledge(lsn) sends lsn+1: confirm() passes lsn-1, so Postgres gets exactly
//   the end LSN of the last transaction we stored (a back-to-back next transaction
//   whose commit record starts there is not skipped on restart).
// - a handler that throws is reported and processing continues: we latch the
//   failure, ignore everything after it and stop the stream, so no later ack can
//   cover the failed change.
// - subscribe() resumes from the in-memory position: we always pass the durable LSN.
// - a keepalive's position (the walsender's sent position) is confirmed only when
//   everything received before it is handled and stored (`idle`), as Postgres's own
//   subscriber does; replying with an older position would keep a shutting-down
//   walsender waiting for ever, so Postgres could never stop while Sluice runs.
// - the parser runs values through pg's global type parsers (timestamps to Date,
//   json to objects): we swap in the identity, keeping Postgres's exact text.
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { bigIntToLsn, lsnToBigInt } from './lsn.js';

/** Column values as Postgres printed them; null = SQL NULL; undefined = unchanged TOAST. */
export type Tuple = Record<string, string | null | undefined>;

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  /** Part of the replica identity key. */
  isKey: boolean;
}

export interface Relation {
  oid: number;
  schema: string;
  name: string;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  columns: RelationColumn[];
}

export type ReplicationEvent =
  | { tag: 'begin'; commitLsn: bigint; commitTimeMicros: bigint; xid: number }
  | { tag: 'commit'; commitLsn: bigint; endLsn: bigint; commitTimeMicros: bigint }
  | { tag: 'relation'; relation: Relation }
  | { tag: 'insert'; relationOid: number; new: Tuple }
  | { tag: 'update'; relationOid: number; key: Tuple | null; old: Tuple | null; new: Tuple }
  | { tag: 'delete'; relationOid: number; key: Tuple | null; old: Tuple | null }
  | { tag: 'truncate'; relationOids: number[] }
  | { tag: 'message'; transactional: boolean; prefix: string; content: Uint8Array }
  | { tag: 'other' };

export interface StreamOptions {
  url: string;
  slot: string;
  publication: string;
  /** Where to resume: the durable LSN read back from the buffer. */
  startLsn: bigint;
  /** Awaited before the next message is read (flow control). Must not be slow per message. */
  onEvent: (e: ReplicationEvent) => Promise<void> | void;
  /** The position to report on a keepalive that asks for a reply. */
  durableLsn: () => bigint;
  /**
   * Every event handled so far is stored, and no transaction is open: nothing
   * received is waiting to be written, so a keepalive's position may be confirmed.
   */
  idle?: () => boolean;
  /** Postgres accepted START_REPLICATION: the slot is ours and streaming. */
  onStreaming?: () => void;
}

const identity = (v: string) => v;

/** A pgoutput parser that keeps each value's text as Postgres sent it. */
function rawTextPlugin(publication: string): PgoutputPlugin {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [publication], messages: true });
  // The parser is not exported; patch the plugin's own instance.
  const parser = (plugin as unknown as { parser: { readRelationColumn: (r: unknown) => { parser: unknown } } }).parser;
  const readColumn = parser.readRelationColumn;
  parser.readRelationColumn = function (this: unknown, reader: unknown) {
    const col = readColumn.call(this, reader);
    col.parser = identity;
    return col;
  };
  return plugin;
}

function toEvent(m: Pgoutput.Message): ReplicationEvent {
  switch (m.tag) {
    case 'begin':
      return { tag: 'begin', commitLsn: lsnToBigInt(m.commitLsn ?? '0/0'), commitTimeMicros: m.commitTime as bigint, xid: m.xid };
    case 'commit':
      return {
        tag: 'commit',
        commitLsn: lsnToBigInt(m.commitLsn ?? '0/0'),
        endLsn: lsnToBigInt(m.commitEndLsn ?? '0/0'),
        commitTimeMicros: m.commitTime as bigint,
      };
    case 'relation':
      return {
        tag: 'relation',
        relation: {
          oid: m.relationOid >>> 0,
          schema: m.schema,
          name: m.name,
          replicaIdentity: m.replicaIdentity,
          columns: m.columns.map((c) => ({ name: c.name, typeOid: c.typeOid >>> 0, typeMod: c.typeMod, isKey: (c.flags & 1) === 1 })),
        },
      };
    case 'insert':
      return { tag: 'insert', relationOid: m.relation.relationOid >>> 0, new: m.new as Tuple };
    case 'update':
      return { tag: 'update', relationOid: m.relation.relationOid >>> 0, key: m.key as Tuple | null, old: m.old as Tuple | null, new: m.new as Tuple };
    case 'delete':
      return { tag: 'delete', relationOid: m.relation.relationOid >>> 0, key: m.key as Tuple | null, old: m.old as Tuple | null };
    case 'truncate':
      return { tag: 'truncate', relationOids: m.relations.filter(Boolean).map((r) => r.relationOid >>> 0) };
    case 'message':
      return { tag: 'message', transactional: m.transactional, prefix: m.prefix, content: m.content };
    default:
      return { tag: 'other' };
  }
}

// Session settings that make Postgres print values the way values.ts expects.
const SESSION_OPTIONS = '-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=3';

export class ReplicationStream {
  private readonly service: LogicalReplicationService;
  private failure: Error | null = null;
  private stopped = false;
  /** The highest position sent to Postgres: never sent backwards. */
  private confirmed = 0n;
  private rejectRun: ((e: Error) => void) | null = null;

  constructor(private readonly opts: StreamOptions) {
    this.service = new LogicalReplicationService(
      { connectionString: opts.url, options: SESSION_OPTIONS, application_name: 'sluice-capture' },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
    );
  }

  /**
   * Streams until stop() (resolves) or a failure (rejects): a lost connection, a
   * server error, or a throwing handler. Nothing is acknowledged after a failure.
   */
  async run(): Promise<void> {
    const failed = new Promise<never>((_, reject) => {
      this.rejectRun = reject;
    });
    failed.catch(() => {});
    this.service.on('data', async (_lsn: string, msg: Pgoutput.Message) => {
      if (this.failure || this.stopped) return;
      try {
        await this.opts.onEvent(toEvent(msg));
      } catch (err) {
        this.fail(err as Error);
      }
    });
    this.service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
      if (!shouldRespond || this.failure) return;
      let position = this.opts.durableLsn();
      // A keepalive comes after every change the walsender sent before it; when
      // all of those are handled and stored, no change below its position is
      // missing (emitted synchronously on receipt: the library's queue holds what
      // came before it and is not yet handled).
      if (this.queueDrained() && this.opts.idle?.()) {
        const sent = lsnToBigInt(lsn);
        if (sent > position) position = sent;
      }
      this.confirm(position);
    });
    this.service.on('error', (err: Error) => this.fail(err));
    this.service.on('start', () => this.opts.onStreaming?.());
    const streaming = this.service.subscribe(rawTextPlugin(this.opts.publication), this.opts.slot, bigIntToLsn(this.opts.startLsn));
    try {
      await Promise.race([streaming, failed]);
    } catch (err) {
      if (this.stopped && !this.failure) return;
      throw this.failure ?? err;
    } finally {
      // A refused START_REPLICATION (slot busy) rejects without an 'error'
      // event: close the connection here too, or every retry leaks a walsender.
      await this.service.stop().catch(() => {});
    }
    if (this.failure) throw this.failure;
    if (!this.stopped) throw new Error('replication stream ended unexpectedly');
  }

  /** Tell Postgres everything up to `lsn` (a transaction end LSN) is durable. */
  confirm(lsn: bigint): void {
    if (this.failure || lsn <= 0n) return;
    // A keepalive's position may have been confirmed past the last stored
    // transaction: never report less than what was already confirmed.
    if (lsn < this.confirmed) lsn = this.confirmed;
    this.confirmed = lsn;
    // The library adds one; subtract it so Postgres receives exactly `lsn`.
    void this.service.acknowledge(bigIntToLsn(lsn - 1n)).catch(() => {});
  }

  /** The library's flow-control queue is empty and no handler is running. */
  private queueDrained(): boolean {
    const svc = this.service as unknown as { _messageQueue: unknown[]; _processing: boolean };
    return svc._messageQueue.length === 0 && !svc._processing;
  }

  /** Stop streaming because of a failure elsewhere (a buffer write); run() rejects with it. */
  abort(err: Error): void {
    this.fail(err);
  }

  private fail(err: Error): void {
    if (this.failure || this.stopped) return;
    this.failure = err;
    void this.service.stop().catch(() => {});
    this.rejectRun?.(err);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.service.stop().catch(() => {});
    this.rejectRun?.(new Error('stopped'));
  }
}
