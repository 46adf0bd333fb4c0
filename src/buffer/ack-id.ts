// ack_ids: 16 bytes, base64url (22 characters): commit_lsn (int64), commit_idx
// (int32) and the delivery's random token (int32), big-endian. Clients treat
// them as opaque strings; the token makes each delivery's id unique, so an id
// from before a redelivery matches no row once the message is handed out again.

export interface AckKey {
  /** int64 as decimal text: never through a JS double. */
  commitLsn: string;
  commitIdx: number;
  deliveryToken: number;
}

const ACK_ID_BYTES = 16;
const ACK_ID_RE = /^[A-Za-z0-9_-]{22}$/;

export function encodeAckId(commitLsn: string | bigint, commitIdx: number, deliveryToken: number): string {
  const buf = Buffer.allocUnsafe(ACK_ID_BYTES);
  buf.writeBigInt64BE(BigInt(commitLsn), 0);
  buf.writeInt32BE(commitIdx, 8);
  buf.writeInt32BE(deliveryToken, 12);
  return buf.toString('base64url');
}

/** The key an ack_id stands for, or null when it isn't one of ours. */
export function decodeAckId(ackId: string): AckKey | null {
  if (!ACK_ID_RE.test(ackId)) return null;
  const buf = Buffer.from(ackId, 'base64url');
  if (buf.length !== ACK_ID_BYTES) return null;
  return {
    commitLsn: buf.readBigInt64BE(0).toString(),
    commitIdx: buf.readInt32BE(8),
    deliveryToken: buf.readInt32BE(12),
  };
}

/** Decoded keys as the column arrays the ack queries unnest; malformed ids are counted, not applied. */
export function ackKeyArrays(ackIds: readonly string[]): {
  lsns: string[];
  idxs: number[];
  tokens: number[];
  malformed: number;
} {
  const lsns: string[] = [];
  const idxs: number[] = [];
  const tokens: number[] = [];
  let malformed = 0;
  for (const id of ackIds) {
    const key = typeof id === 'string' ? decodeAckId(id) : null;
    if (!key) {
      malformed++;
      continue;
    }
    lsns.push(key.commitLsn);
    idxs.push(key.commitIdx);
    tokens.push(key.deliveryToken);
  }
  return { lsns, idxs, tokens, malformed };
}
