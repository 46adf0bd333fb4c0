// `message_kind: row`: a consumer that wants a table's current state rather
// than its changes is served each change as the row it left behind:
//   {"record": {…}, "deleted": false, "metadata": {…}}   insert, update, read
//   {"record": {…key…}, "deleted": true, "metadata": {…}} delete (a tombstone)
// `changes` and `action` are dropped: applying row messages in order (upsert,
// or delete on a tombstone) rebuilds the table, and a backfill's read rows are
// the same upserts. The record of a tombstone is what the delete carried: the
// key columns, or the whole old row under REPLICA IDENTITY FULL.
//
// Reshaped from the stored text, not parsed: values keep their exact digits
// (int8, numeric), and metadata stays last so withConsumer() still splices in.
import { collect, type PathNode } from '../pipeline/transform/scan.js';

const leaf = (slot: number): PathNode => ({ slot, children: null });
const WANTED: PathNode = {
  slot: -1,
  children: new Map([
    ['record', leaf(0)],
    ['action', leaf(1)],
    ['metadata', leaf(2)],
  ]),
};

/** A stored change payload as a row message (same trailing `…}}` shape). Throws SyntaxError on malformed text. */
export function toRowPayload(payload: string): string {
  // An outbox message among a source's changes (its envelope starts with its
  // subject, src/streams/envelope.ts) is no row: served as it is.
  if (payload.startsWith('{"subject":')) return payload;
  const [record, action, metadata] = collect(payload, WANTED, 3);
  if (record === undefined || metadata === undefined) throw new SyntaxError('the stored message has no record or metadata');
  return `{"record":${record},"deleted":${action === '"delete"'},"metadata":${metadata}}`;
}
