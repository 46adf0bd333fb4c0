// Postgres column values (pgoutput text format) → JSON text.
//
// Capture builds messages as JSON *text*, so each value is turned straight into
// its JSON encoding here and never passes through a JS number: an int8 or a
// numeric keeps every digit. The replication session runs with
// DateStyle=ISO, MDY / TimeZone=UTC / IntervalStyle=iso_8601 /
// extra_float_digits=3, and the parsers below expect those output formats;
// anything they do not recognise becomes a JSON string of the raw text, so the
// result is always valid JSON and never invents a value.
//
// The mapping (docs/values.md has the table and the reasons):
//   bool                       → true / false
//   int2, int4, int8, oid      → JSON number, digits as printed (int8 never parsed)
//   float4, float8             → JSON number as printed (shortest exact digits);
//                                NaN, Infinity, -Infinity → "NaN", "Infinity", "-Infinity"
//   numeric                    → JSON string of the exact digits ("19.90", "NaN", "Infinity"):
//                                keeps scale and NaN/±Infinity, which a JSON number cannot
//   json, jsonb                → the JSON text embedded as-is
//   timestamptz                → "2026-11-23T20:15:01.123456Z" (UTC, always 6 fraction digits)
//   timestamp                  → "2026-11-23T20:15:01.123456"
//   date                       → "2026-11-23"
//     years outside 0000..9999 and BC years use ISO-8601 expanded, astronomical
//     years as ECMAScript does: 44 BC → "-000043-…", 1 BC → "0000-…", 10000 → "+010000-…";
//     infinity / -infinity → "infinity" / "-infinity"
//   time, timetz, interval     → string as printed (interval in ISO-8601: "P1Y2M3DT4H5M6.5S")
//   bytea                      → base64 string (standard alphabet, padded)
//   arrays                     → JSON arrays (nested for several dimensions, bounds
//                                decoration dropped), elements encoded by their own type
//   everything else            → JSON string of the text (uuid, text, enums, inet, money, …)

export interface TypeInfo {
  oid: number;
  name: string;
  /** pg_type.typcategory ('A' array, 'E' enum, 'N' numeric, …). */
  category: string;
  /** Element type of an array; 0 if not an array. */
  elemOid: number;
  /** pg_type.typdelim: the separator in array literals of this element type (',' except box ';'). */
  delim: string;
}

export type TypeLookup = (oid: number) => TypeInfo | undefined;

// OIDs the encoder dispatches on. Builtin OIDs are fixed across Postgres versions.
const BOOL = 16, BYTEA = 17, INT8 = 20, INT2 = 21, INT4 = 23, OID = 26, JSON_ = 114;
const FLOAT4 = 700, FLOAT8 = 701, DATE = 1082, TIMESTAMP = 1114, TIMESTAMPTZ = 1184;
const NUMERIC = 1700, JSONB = 3802;

const BUILTINS = new Map<number, TypeInfo>();
function def(oid: number, name: string, category: string, arrayOid = 0, delim = ','): void {
  BUILTINS.set(oid, { oid, name, category, elemOid: 0, delim });
  // pg_type gives an array type its element's typdelim.
  if (arrayOid) BUILTINS.set(arrayOid, { oid: arrayOid, name: '_' + name, category: 'A', elemOid: oid, delim });
}
def(BOOL, 'bool', 'B', 1000);
def(BYTEA, 'bytea', 'U', 1001);
def(18, 'char', 'Z', 1002);
def(19, 'name', 'S', 1003);
def(INT8, 'int8', 'N', 1016);
def(INT2, 'int2', 'N', 1005);
def(INT4, 'int4', 'N', 1007);
def(25, 'text', 'S', 1009);
def(OID, 'oid', 'N', 1028);
def(JSON_, 'json', 'U', 199);
def(142, 'xml', 'U', 143);
def(600, 'point', 'G', 1017);
def(603, 'box', 'G', 1020, ';');
def(650, 'cidr', 'I', 651);
def(FLOAT4, 'float4', 'N', 1021);
def(FLOAT8, 'float8', 'N', 1022);
def(774, 'macaddr8', 'U', 775);
def(790, 'money', 'N', 791);
def(829, 'macaddr', 'U', 1040);
def(869, 'inet', 'I', 1041);
def(1042, 'bpchar', 'S', 1014);
def(1043, 'varchar', 'S', 1015);
def(DATE, 'date', 'D', 1182);
def(1083, 'time', 'D', 1183);
def(TIMESTAMP, 'timestamp', 'D', 1115);
def(TIMESTAMPTZ, 'timestamptz', 'D', 1185);
def(1186, 'interval', 'T', 1187);
def(1266, 'timetz', 'D', 1270);
def(1560, 'bit', 'V', 1561);
def(1562, 'varbit', 'V', 1563);
def(NUMERIC, 'numeric', 'N', 1231);
def(2950, 'uuid', 'U', 2951);
def(3614, 'tsvector', 'U', 3643);
def(JSONB, 'jsonb', 'U', 3807);
def(3904, 'int4range', 'R', 3905);
def(3926, 'int8range', 'R', 3927);
def(3906, 'numrange', 'R', 3907);
def(3908, 'tsrange', 'R', 3909);
def(3910, 'tstzrange', 'R', 3911);
def(3912, 'daterange', 'R', 3913);

/** The TypeInfo of a builtin type Sluice knows without asking the database. */
export function builtinType(oid: number): TypeInfo | undefined {
  return BUILTINS.get(oid);
}

/** A stand-in for a type nobody could resolve: its values become JSON strings. */
export function unknownType(oid: number): TypeInfo {
  return { oid, name: 'unknown', category: 'X', elemOid: 0, delim: ',' };
}

/**
 * The JSON text of one column value given as Postgres text output (null → `null`).
 * See the mapping at the top of this file. Never throws on odd input: text an
 * exact parser does not recognise is emitted as a JSON string of itself.
 */
export function encodeValue(text: string | null, type: TypeInfo, lookup: TypeLookup): string {
  if (text === null) return 'null';
  switch (type.oid) {
    case INT4:
    case INT8:
    case INT2:
    case OID:
      return isJsonNumber(text) ? text : JSON.stringify(text);
    case BOOL:
      return text === 't' || text === 'true' ? 'true' : text === 'f' || text === 'false' ? 'false' : JSON.stringify(text);
    case TIMESTAMPTZ:
    case TIMESTAMP: {
      // ISO output is digits and -:.TZ+ only, so it is quoted without escaping.
      const iso = isoTs(text, type.oid === TIMESTAMPTZ);
      return iso === undefined ? JSON.stringify(text) : '"' + iso + '"';
    }
    case DATE: {
      const iso = isoDt(text);
      return iso === undefined ? JSON.stringify(text) : '"' + iso + '"';
    }
    case NUMERIC:
      return JSON.stringify(text);
    case FLOAT8:
    case FLOAT4:
      return encodeFloat(text);
    case JSONB:
    case JSON_:
      // Postgres validated it on input; embed verbatim so big numbers stay exact.
      return text;
    case BYTEA:
      return JSON.stringify(byteaToBase64(text) ?? text);
  }
  if (type.category === 'A' && type.elemOid !== 0) {
    const elem = lookup(type.elemOid) ?? builtinType(type.elemOid) ?? unknownType(type.elemOid);
    const arr = encodeArray(text, elem, lookup);
    if (arr !== undefined) return arr;
  }
  return JSON.stringify(text);
}

// ---------------------------------------------------------------- numbers

/** True when s is JSON number text (RFC 8259 grammar). One pass, no regex. */
export function isJsonNumber(s: string): boolean {
  const n = s.length;
  let i = 0;
  let c = s.charCodeAt(0);
  if (c === 45 /* - */) c = s.charCodeAt(++i);
  if (c === 48 /* 0 */) i++;
  else if (c >= 49 && c <= 57) {
    i++;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
  } else return false;
  if (i < n && s.charCodeAt(i) === 46 /* . */) {
    const start = ++i;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
    if (i === start) return false;
  }
  if (i < n && (s.charCodeAt(i) | 32) === 101 /* e E */) {
    c = s.charCodeAt(++i);
    if (c === 43 || c === 45) i++;
    const start = i;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
    if (i === start) return false;
  }
  return i === n;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

// Postgres float output ("0.1", "-0", "1e+100", "1.5e-07") is already JSON number
// text; the conversion only guards against a format we did not foresee. Going
// through a double there is lossless for float4/float8 (they are doubles or less).
function encodeFloat(text: string): string {
  if (isJsonNumber(text)) return text;
  if (text === 'NaN' || text === 'Infinity' || text === '-Infinity') return '"' + text + '"';
  const n = Number(text);
  return Number.isFinite(n) && text.trim() !== '' ? String(n) : JSON.stringify(text);
}

// ---------------------------------------------------------------- dates and times

const FRACTION_PAD = ['.000000', '00000', '0000', '000', '00', '0', ''];
const MONTH_DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function two(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48, b = s.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

function pad2(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

// Postgres (proleptic Gregorian) years → ISO-8601 astronomical years, written like
// ECMAScript's expanded years so JS `new Date()` reads them within its range.
function isoYear(astro: number): string {
  if (astro >= 0 && astro <= 9999) return String(astro).padStart(4, '0');
  return (astro < 0 ? '-' : '+') + String(Math.abs(astro)).padStart(6, '0');
}

function isLeap(y: number): boolean {
  return y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
}

function daysInMonth(y: number, m: number): number {
  return m === 2 && isLeap(y) ? 29 : MONTH_DAYS[m];
}

// Result of parseYmd. Module-level scratch instead of a returned object: this runs
// for every date/timestamp value, and parsing is synchronous (no reentrancy).
let pY = 0, pM = 0, pD = 0, pBc = false;

// "YYYY-MM-DD" (year 4+ digits) at the start of s; sets pY/pM/pD and pBc (s ends
// in " BC"); returns the index after the day, or -1.
function parseYmd(s: string): number {
  let i = 0, y = 0;
  for (let c = s.charCodeAt(0); c >= 48 && c <= 57; c = s.charCodeAt(++i)) y = y * 10 + c - 48;
  if (i < 4 || i > 7 || s.charCodeAt(i) !== 45 || s.charCodeAt(i + 3) !== 45) return -1;
  const m = two(s, i + 1), d = two(s, i + 4);
  if (m < 1 || m > 12 || d < 1 || d > 31) return -1;
  pY = y; pM = m; pD = d;
  pBc = s.charCodeAt(s.length - 3) === 32 && s.endsWith(' BC');
  return i + 6;
}

/** ISO-8601 form of a Postgres date ("2026-11-23", "0044-03-15 BC" → "-000043-03-15"). */
export function isoDate(pgText: string): string {
  const r = isoDt(pgText);
  if (r === undefined) throw new RangeError(`not a Postgres ISO date: ${pgText}`);
  return r;
}

function isoDt(s: string): string | undefined {
  const end = parseYmd(s);
  if (end < 0) return s === 'infinity' || s === '-infinity' ? s : undefined;
  if (end !== s.length - (pBc ? 3 : 0)) return undefined;
  if (end === 10 && !pBc) return s;
  return isoYear(pBc ? 1 - pY : pY) + s.slice(end - 6, end);
}

/**
 * ISO-8601 form of a Postgres timestamp / timestamptz text (DateStyle ISO):
 * exactly 6 fraction digits; with `withZone`, converted to UTC and suffixed `Z`
 * (the session runs in UTC, so the offset is normally +00 and no arithmetic runs).
 * "infinity" / "-infinity" are returned unchanged.
 */
export function isoTimestamp(pgText: string, withZone: boolean): string {
  const r = isoTs(pgText, withZone);
  if (r === undefined) throw new RangeError(`not a Postgres ISO timestamp: ${pgText}`);
  return r;
}

function isoTs(s: string, withZone: boolean): string | undefined {
  const end = parseYmd(s);
  if (end < 0) return s === 'infinity' || s === '-infinity' ? s : undefined;
  const bc = pBc;
  let i = end;
  if (s.charCodeAt(i) !== 32) return undefined;
  const hh = two(s, i + 1), mi = two(s, i + 4), ss = two(s, i + 7);
  if (hh < 0 || hh > 23 || mi < 0 || mi > 59 || ss < 0 || ss > 59 ||
      s.charCodeAt(i + 3) !== 58 || s.charCodeAt(i + 6) !== 58) return undefined;
  const timeStart = i + 1;
  i += 9;
  let frac = '.000000';
  if (s.charCodeAt(i) === 46) {
    const start = i++;
    while (isDigit(s.charCodeAt(i))) i++;
    const digits = i - start - 1;
    if (digits < 1 || digits > 6) return undefined;
    frac = s.slice(start, i) + FRACTION_PAD[digits];
  }
  let offset = 0; // seconds east of UTC
  if (withZone) {
    const sign = s.charCodeAt(i);
    if (sign !== 43 && sign !== 45) return undefined;
    const oh = two(s, i + 1);
    if (oh < 0) return undefined;
    offset = oh * 3600;
    i += 3;
    for (let mul = 60; mul >= 1 && s.charCodeAt(i) === 58; mul /= 60, i += 3) {
      const v = two(s, i + 1);
      if (v < 0) return undefined;
      offset += v * mul;
    }
    if (sign === 45) offset = -offset;
  }
  if (i !== s.length - (bc ? 3 : 0)) return undefined;
  const zone = withZone ? 'Z' : '';
  // The common case: a plain 4-digit AD year already in UTC — just splice.
  if (offset === 0 && !bc && end === 10) return s.slice(0, 10) + 'T' + s.slice(timeStart, timeStart + 8) + frac + zone;
  let y = bc ? 1 - pY : pY, m = pM, d = pD;
  let secs = hh * 3600 + mi * 60 + ss - offset;
  // An offset is under a day, so at most one day of carry.
  if (secs < 0) {
    secs += 86400;
    if (--d === 0) {
      if (--m === 0) { m = 12; y--; }
      d = daysInMonth(y, m);
    }
  } else if (secs >= 86400) {
    secs -= 86400;
    if (++d > daysInMonth(y, m)) {
      d = 1;
      if (++m === 13) { m = 1; y++; }
    }
  }
  const h = Math.floor(secs / 3600), rest = secs % 3600;
  return isoYear(y) + '-' + pad2(m) + '-' + pad2(d) + 'T' + pad2(h) + ':' + pad2(Math.floor(rest / 60)) + ':' +
    pad2(rest % 60) + frac + zone;
}

// ---------------------------------------------------------------- bytea

/** Base64 of a bytea in Postgres hex output (`\x0aff`) or, if the server uses it, escape output. */
function byteaToBase64(s: string): string | undefined {
  if (s.charCodeAt(0) === 92 && s.charCodeAt(1) === 120 /* \x */) {
    const hex = s.slice(2);
    const buf = Buffer.from(hex, 'hex');
    // Buffer.from stops silently at the first non-hex pair: check nothing was dropped.
    return buf.length * 2 === hex.length ? buf.toString('base64') : undefined;
  }
  // bytea_output=escape: printable ASCII as-is, "\\" for a backslash, "\ooo" for other bytes.
  const out = Buffer.allocUnsafe(s.length);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) return undefined;
    if (c !== 92) { out[n++] = c; continue; }
    if (s.charCodeAt(i + 1) === 92) { out[n++] = 92; i++; continue; }
    const a = s.charCodeAt(i + 1) - 48, b = s.charCodeAt(i + 2) - 48, d = s.charCodeAt(i + 3) - 48;
    if (!(a >= 0 && a <= 3 && b >= 0 && b <= 7 && d >= 0 && d <= 7)) return undefined;
    out[n++] = a * 64 + b * 8 + d;
    i += 3;
  }
  return out.toString('base64', 0, n);
}

// ---------------------------------------------------------------- arrays

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/**
 * A Postgres array literal (`{1,2}`, `{{"a,b",NULL},{"\"q\"",x}}`, `[0:1]={…}`) as a
 * JSON array, each element encoded with `elem`. Iterative, so nesting depth costs
 * no stack; returns undefined for text that is not a well-formed literal.
 */
function encodeArray(s: string, elem: TypeInfo, lookup: TypeLookup): string | undefined {
  const n = s.length;
  const delim = (elem.delim || ',').charCodeAt(0);
  let i = 0;
  if (s.charCodeAt(0) === 91 /* [ */) {
    // Dimension decoration, printed when a lower bound is not 1: JSON arrays have none.
    i = s.indexOf('=') + 1;
    if (i === 0) return undefined;
  }
  let out = '';
  let depth = 0;
  // After '{' an element or '}' may follow; after a delimiter an element must;
  // after an element or '}' a delimiter or '}' must.
  let wantItem = true, mayClose = false;
  for (; i < n; ) {
    const c = s.charCodeAt(i);
    if (isSpace(c)) { i++; continue; }
    if (c === 123 /* { */) {
      if (!wantItem) return undefined;
      out += '[';
      depth++;
      i++;
      mayClose = true;
      continue;
    }
    if (depth === 0) return undefined; // text before '{' or after the final '}'
    if (c === 125 /* } */) {
      if (wantItem && !mayClose) return undefined;
      out += ']';
      i++;
      wantItem = false;
      mayClose = true;
      if (--depth === 0) break;
      continue;
    }
    if (c === delim) {
      if (wantItem) return undefined;
      out += ',';
      i++;
      wantItem = true;
      mayClose = false;
      continue;
    }
    if (!wantItem) return undefined;
    let value: string | null;
    if (c === 34 /* " */) {
      // Quoted element: backslash escapes the next character; "NULL" here is a string.
      let j = i + 1;
      value = '';
      for (;;) {
        const q = s.indexOf('"', j), b = s.indexOf('\\', j);
        if (q < 0) return undefined;
        if (b < 0 || q < b) { value += s.slice(j, q); i = q + 1; break; }
        if (b + 1 >= n) return undefined;
        value += s.slice(j, b) + s[b + 1];
        j = b + 2;
      }
    } else {
      // Unquoted element: up to the delimiter or '}', surrounding space trimmed.
      const start = i;
      let escaped = false;
      let last = i; // end of the last non-space character
      let j = i;
      for (; j < n; j++) {
        const d = s.charCodeAt(j);
        if (d === delim || d === 125 || d === 123 || d === 34) break;
        if (d === 92) { escaped = true; j++; last = j + 1; continue; }
        if (!isSpace(d)) last = j + 1;
      }
      if (j >= n || s.charCodeAt(j) === 123 || s.charCodeAt(j) === 34) return undefined;
      const raw = s.slice(start, last);
      value = escaped ? raw.replace(/\\(.)/gs, '$1') : raw;
      if (!escaped && raw.length === 4 && raw.toUpperCase() === 'NULL') value = null;
      i = j;
    }
    out += encodeValue(value, elem, lookup);
    wantItem = false;
    mayClose = true;
  }
  if (depth !== 0 || out === '') return undefined; // unclosed, or no '{' at all
  for (; i < n; i++) if (!isSpace(s.charCodeAt(i))) return undefined;
  return out;
}
