// The change envelope, as stored and served. Stored payloads are JSON text
// without metadata.consumer and metadata.database, which depend on who reads it
// (and may change after capture: annotations, a source's host); withConsumer()
// adds both when a message is served.

// The envelope's types are the receiver's (src/receive/types.ts): that module
// ships to users' apps with no dependencies, so the gateway imports from it,
// not the other way round, and there is one definition.
export type { Action, Message, MessageMetadata } from '../receive/types.js';

/** base64 of "<commit_lsn>:<commit_idx>", as Sequin derives it. */
export function idempotencyKey(commitLsn: bigint | number | string, commitIdx: number): string {
  return Buffer.from(`${commitLsn}:${commitIdx}`).toString('base64');
}

/** metadata.database, as Sequin has it: the source a message was captured from. */
export interface SourceDatabase {
  /** The source's id (sluice.sources.id). */
  id: string;
  /** The source's name. */
  name: string;
  /** The source's annotations (free-form, from its config). */
  annotations: Record<string, unknown>;
  /** The database name in the source's connection URL. */
  database: string;
  /** The host in the source's connection URL. */
  hostname: string;
}

/**
 * Stored payloads end with `"transaction_annotations":…}}` (metadata is the
 * last key of the message and transaction_annotations the last of metadata), so
 * what servedMetadataJson() returns is spliced in before the final two braces
 * without re-parsing.
 */
export function withConsumer(payload: string, servedJson: string): string {
  return payload.slice(0, -2) + servedJson + '}}';
}

/** `,"consumer":{…},"database":{…}`: the metadata added when a consumer is served; computed once per consumer. */
export function servedMetadataJson(c: {
  id: string;
  name: string;
  annotations: Record<string, unknown>;
  database?: SourceDatabase | null;
}): string {
  const consumer = JSON.stringify({ id: c.id, name: c.name, annotations: c.annotations ?? {} });
  return ',"consumer":' + consumer + (c.database ? ',"database":' + JSON.stringify(c.database) : '');
}
