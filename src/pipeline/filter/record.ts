// A stored change's payload as a filter reads it, without losing digits.
//
// Capture writes an int8 as a bare JSON number with every digit (see
// src/capture/values.ts); JSON.parse would round one beyond 2^53 to a double.
// This reader scans the payload once and keeps, for each column of `record`
// and `changes`, the value's text as Postgres would print it: a number's
// digits as written, a string decoded, true/false, null; an object or array
// as its JSON text (filters only test those for NULL).
import type { FilterRow } from './compile.js';

export interface PayloadRow extends FilterRow {
  action: string | null;
}

type Fields = Map<string, string | null>;

class Scanner {
  i = 0;
  constructor(readonly s: string) {}

  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.i++;
    }
  }

  expect(ch: string): void {
    this.ws();
    if (this.s[this.i] !== ch) throw new SyntaxError(`expected ${ch} at ${this.i} in a stored payload`);
    this.i++;
  }

  /** A string token, decoded. */
  string(): string {
    this.ws();
    const start = this.i;
    if (this.s[start] !== '"') throw new SyntaxError(`expected a string at ${start} in a stored payload`);
    // Most strings hold no escape: found with two indexOf scans, not a loop.
    const quote = this.s.indexOf('"', start + 1);
    if (quote === -1) throw new SyntaxError(`unterminated string at ${start} in a stored payload`);
    const backslash = this.s.indexOf('\\', start + 1);
    if (backslash === -1 || backslash > quote) {
      this.i = quote + 1;
      return this.s.slice(start + 1, quote);
    }
    let j = start + 1;
    let escaped = false;
    for (; j < this.s.length; j++) {
      const c = this.s[j];
      if (c === '\\') {
        escaped = true;
        j++;
      } else if (c === '"') break;
    }
    this.i = j + 1;
    const raw = this.s.slice(start, j + 1);
    return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  }

  /** Any value: its text as a filter reads it (see the file's header). */
  value(): string | null {
    this.ws();
    const c = this.s[this.i];
    if (c === '"') return this.string();
    if (c === '{' || c === '[') {
      const start = this.i;
      this.skip();
      return this.s.slice(start, this.i);
    }
    const start = this.i;
    const s = this.s;
    while (this.i < s.length) {
      const ch = s.charCodeAt(this.i);
      // , } ] space \n \r \t end a bare token.
      if (ch === 0x2c || ch === 0x7d || ch === 0x5d || ch === 0x20 || ch === 0x0a || ch === 0x0d || ch === 0x09) break;
      this.i++;
    }
    const token = this.s.slice(start, this.i);
    return token === 'null' ? null : token;
  }

  /** Steps over one value. */
  skip(): void {
    this.ws();
    const c = this.s[this.i];
    if (c === '"') {
      this.string();
      return;
    }
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      this.i++;
      this.ws();
      if (this.s[this.i] === close) {
        this.i++;
        return;
      }
      for (;;) {
        if (c === '{') {
          this.string();
          this.expect(':');
        }
        this.skip();
        this.ws();
        const n = this.s[this.i++];
        if (n === close) return;
        if (n !== ',') throw new SyntaxError(`expected , or ${close} at ${this.i - 1} in a stored payload`);
      }
    }
    this.value();
  }

  // Objects are read member by member by the caller (open, key, value,
  // next), not through a callback: this runs for every change a filter walks,
  // and a closure per call costs (tsx keeps function names, so each closure
  // made is also a defineProperty).

  /** Reads `{`; true when the object is empty (its `}` read too). */
  open(): boolean {
    this.expect('{');
    this.ws();
    if (this.s[this.i] !== '}') return false;
    this.i++;
    return true;
  }

  /** A member's key and its colon. */
  key(): string {
    const key = this.string();
    this.expect(':');
    return key;
  }

  /** After a member's value: true when that was the last (the `}` read), false after a comma. */
  next(): boolean {
    this.ws();
    const n = this.s[this.i++];
    if (n === '}') return true;
    if (n !== ',') throw new SyntaxError(`expected , or } at ${this.i - 1} in a stored payload`);
    return false;
  }

  fields(): Fields | null {
    this.ws();
    if (this.s.startsWith('null', this.i)) {
      this.i += 4;
      return null;
    }
    const out: Fields = new Map();
    if (this.open()) return out;
    do out.set(this.key(), this.value());
    while (!this.next());
    return out;
  }
}

class Row implements PayloadRow {
  constructor(
    readonly action: string | null,
    private readonly record: Fields | null,
    private readonly changes: Fields | null,
  ) {}

  value(column: string): string | null | undefined {
    return this.record?.has(column) ? this.record.get(column)! : undefined;
  }

  // changes holds the previous values of the columns an update changed.
  // Postgres sends previous values only under REPLICA IDENTITY FULL (else
  // the key's at most), so changed() is meaningful on such tables alone;
  // inserts and deletes change nothing.
  changed(column: string): boolean | null {
    return this.action !== 'update' ? false : this.changes === null ? null : this.changes.has(column);
  }
}

/** Reads a stored message payload (the change envelope) for a filter. Throws SyntaxError on text that is not one. */
export function payloadRow(payload: string): PayloadRow {
  const sc = new Scanner(payload);
  let record: Fields | null = null;
  let changes: Fields | null = null;
  let action: string | null = null;
  // Stored payloads have record, changes and action first and metadata last:
  // once the three are read, the rest (metadata, half the text) is not.
  let seen = 0;
  if (!sc.open()) {
    do {
      const key = sc.key();
      if (key === 'record') {
        record = sc.fields();
        seen |= 1;
      } else if (key === 'changes') {
        changes = sc.fields();
        seen |= 2;
      } else if (key === 'action') {
        action = sc.value();
        seen |= 4;
      } else {
        sc.skip();
      }
    } while (seen !== 7 && !sc.next());
  }
  return new Row(action, record, changes);
}
