// Points in a source's retained log, as people name them: where a new
// consumer starts (`start`) and where a rewind goes back to (`to`). Parsing
// only; src/log/positions.ts turns a point into a log position.
import { fullFormats } from 'ajv-formats/dist/formats.js';
import { bigIntToLsn, lsnToBigInt } from '../capture/lsn.js';

export type LogPoint =
  /** The source's WAL as the consumer is created: only later changes. */
  | { kind: 'now' }
  /** The oldest change the log still holds. */
  | { kind: 'earliest' }
  /** The first change committed at or after this instant (RFC 3339, as given). */
  | { kind: 'time'; at: string }
  /** Changes whose commit LSN is this one or later. */
  | { kind: 'lsn'; lsn: bigint };

// ajv-formats' RFC 3339 check (it knows February and leap years); CommonJS,
// its named exports load fine from ESM.
const dateTime = fullFormats['date-time'] as { validate: (v: string) => boolean };
// pg_lsn: two hex numbers of up to 32 bits each.
const LSN_RE = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;
const MAX_LSN = 2n ** 63n - 1n;

/** The point `text` names, or undefined when it names none. */
export function parseLogPoint(text: string): LogPoint | undefined {
  if (text === 'now' || text === 'earliest') return { kind: text };
  if (LSN_RE.test(text)) {
    const lsn = lsnToBigInt(text);
    // The log keeps LSNs as signed 64-bit integers; no WAL reaches 8000…/0.
    return lsn <= MAX_LSN ? { kind: 'lsn', lsn } : undefined;
  }
  if (dateTime.validate(text)) return { kind: 'time', at: text };
  return undefined;
}

/** How Postgres prints an LSN held as a signed 64-bit integer (the log's commit_lsn). */
export function formatLsn(lsn: bigint | string): string {
  return bigIntToLsn(BigInt(lsn));
}
