// Typed values of the filter language, and Postgres' comparison rules for them.
//
// A filter compares a change's column values with literals, as Postgres would
// in `SELECT <expression>`: never through a JS double where Postgres is exact.
// Values come in as Postgres' text output (what pgoutput sends, and what the
// log's JSON keeps digit for digit) and are compared in these forms:
//   int      int2/int4/int8           BigInt
//   numeric  numeric (and any literal with a point or beyond int8)
//                                      exact decimal (sign, digits, scale), ±Infinity, NaN
//   float    float4/float8             JS number (NaN equal to itself and above all, as in Postgres)
//   text     text/varchar/bpchar/name  code points (the "C" collation)
//   bool     bool
//   instant  timestamptz/timestamp/date  microseconds since 1970 as BigInt, ±infinity;
//            a time without a zone is UTC (capture's session runs in UTC)
//   uuid     uuid                      lowercase hex (Postgres orders uuids bytewise)
//   enum     an enum type              its label: = <> IN and IS DISTINCT FROM only
//                                      (Postgres orders enums by declaration, which a filter does not know)
// Mixed kinds follow Postgres' implicit casts: int with numeric compares as
// numeric, int or numeric with float as float8 (rounded, as Postgres does),
// date with timestamptz as instants. Anything else is refused when the filter
// is saved.

export type Kind = 'int' | 'numeric' | 'float' | 'text' | 'bool' | 'instant' | 'uuid' | 'enum' | 'other';

export interface Decimal {
  /** 'nan', '+inf', '-inf', or a finite value. */
  special: 'nan' | '+inf' | '-inf' | null;
  negative: boolean;
  /** Integer digits without leading zeros ('' for 0). */
  int: string;
  /** Fraction digits without trailing zeros. */
  frac: string;
}

export type Value =
  | { kind: 'int'; v: bigint }
  | { kind: 'numeric'; v: Decimal }
  | { kind: 'float'; v: number }
  | { kind: 'text'; v: string }
  | { kind: 'enum'; v: string }
  | { kind: 'bool'; v: boolean }
  | { kind: 'instant'; v: bigint }
  | { kind: 'uuid'; v: string };

/** Postgres type names (as in pg_type.typname or a cast) → the kind compared. */
const KIND_OF: Record<string, Kind> = {
  int2: 'int', int4: 'int', int8: 'int', smallint: 'int', integer: 'int', int: 'int', bigint: 'int', oid: 'int',
  numeric: 'numeric', decimal: 'numeric',
  float4: 'float', float8: 'float', real: 'float', 'double precision': 'float',
  text: 'text', varchar: 'text', bpchar: 'text', name: 'text', 'character varying': 'text', character: 'text', char: 'text', citext: 'other',
  bool: 'bool', boolean: 'bool',
  timestamptz: 'instant', timestamp: 'instant', date: 'instant',
  uuid: 'uuid',
};

export function kindOf(type: string): Kind {
  if (type.startsWith('enum:')) return 'enum';
  return KIND_OF[type.toLowerCase()] ?? 'other';
}

/** Why a text does not parse as a kind, in Postgres' words. */
export class ValueError extends Error {}

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;

function parseInt8(text: string): bigint {
  const t = text.trim();
  if (!/^[+-]?\d+$/.test(t)) throw new ValueError(`invalid input syntax for type bigint: "${text}"`);
  const v = BigInt(t);
  if (v < INT8_MIN || v > INT8_MAX) throw new ValueError(`value "${text}" is out of range for type bigint`);
  return v;
}

const ZERO: Decimal = { special: null, negative: false, int: '', frac: '' };

/**
 * The usual text of a numeric (a sign, digits, a point: what capture
 * stores), read without regular expressions; null for anything else
 * (spaces, an exponent, NaN, Infinity), which parseDecimal reads the long
 * way. Filters parse a numeric column of every change they test.
 */
function plainDecimal(t: string): Decimal | null {
  const n = t.length;
  let i = 0;
  let negative = false;
  const sign = t.charCodeAt(0);
  if (sign === 45 || sign === 43) {
    negative = sign === 45;
    i = 1;
  }
  const intStart = i;
  while (i < n && isDigit(t.charCodeAt(i))) i++;
  const intEnd = i;
  let fracStart = i;
  let fracEnd = i;
  if (i < n && t.charCodeAt(i) === 46) {
    fracStart = ++i;
    while (i < n && isDigit(t.charCodeAt(i))) i++;
    fracEnd = i;
  }
  if (i !== n || (intEnd === intStart && fracEnd === fracStart)) return null;
  let a = intStart;
  while (a < intEnd && t.charCodeAt(a) === 48) a++;
  let b = fracEnd;
  while (b > fracStart && t.charCodeAt(b - 1) === 48) b--;
  if (a === intEnd && b === fracStart) return ZERO;
  return { special: null, negative, int: t.slice(a, intEnd), frac: t.slice(fracStart, b) };
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

export function parseDecimal(text: string): Decimal {
  const plain = plainDecimal(text);
  if (plain !== null) return plain;
  const t = text.trim();
  const lower = t.toLowerCase();
  if (lower === 'nan') return { special: 'nan', negative: false, int: '', frac: '' };
  if (lower === 'infinity' || lower === '+infinity' || lower === 'inf' || lower === '+inf') return { special: '+inf', negative: false, int: '', frac: '' };
  if (lower === '-infinity' || lower === '-inf') return { special: '-inf', negative: true, int: '', frac: '' };
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(t);
  if (!m || (m[2] === '' && (m[3] === undefined || m[3] === ''))) throw new ValueError(`invalid input syntax for type numeric: "${text}"`);
  let digits = m[2] + (m[3] ?? '');
  let point = m[2].length + (m[4] ? Number(m[4]) : 0);
  // Normalise: strip leading zeros (moving the point), then split.
  const lead = digits.length - digits.replace(/^0+/, '').length;
  digits = digits.slice(lead);
  point -= lead;
  if (digits === '') return { special: null, negative: false, int: '', frac: '' };
  let int: string;
  let frac: string;
  if (point <= 0) {
    int = '';
    frac = '0'.repeat(-point) + digits;
  } else if (point >= digits.length) {
    int = digits + '0'.repeat(point - digits.length);
    frac = '';
  } else {
    int = digits.slice(0, point);
    frac = digits.slice(point);
  }
  frac = frac.replace(/0+$/, '');
  if (int === '' && frac === '') return { special: null, negative: false, int: '', frac: '' };
  return { special: null, negative: m[1] === '-', int, frac };
}

function compareMagnitude(a: Decimal, b: Decimal): number {
  if (a.int.length !== b.int.length) return a.int.length < b.int.length ? -1 : 1;
  if (a.int !== b.int) return a.int < b.int ? -1 : 1;
  const n = Math.max(a.frac.length, b.frac.length);
  const fa = a.frac.padEnd(n, '0');
  const fb = b.frac.padEnd(n, '0');
  return fa === fb ? 0 : fa < fb ? -1 : 1;
}

function rank(d: Decimal): number {
  return d.special === '-inf' ? 0 : d.special === null ? 1 : d.special === '+inf' ? 2 : 3;
}

/** Postgres' numeric order: -Infinity < finite < Infinity < NaN, and NaN = NaN. */
export function compareDecimal(a: Decimal, b: Decimal): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb || ra !== 1) return ra === rb ? 0 : ra < rb ? -1 : 1;
  if (a.negative !== b.negative) return a.negative ? -1 : 1;
  const c = compareMagnitude(a, b);
  return a.negative ? -c : c;
}

function decimalOfInt(v: bigint): Decimal {
  const negative = v < 0n;
  const s = (negative ? -v : v).toString();
  return { special: null, negative: negative && s !== '0', int: s === '0' ? '' : s, frac: '' };
}

function floatOfDecimal(d: Decimal): number {
  if (d.special === 'nan') return NaN;
  if (d.special === '+inf') return Infinity;
  if (d.special === '-inf') return -Infinity;
  return Number(`${d.negative ? '-' : ''}${d.int || '0'}.${d.frac || '0'}`);
}

function parseFloat8(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === 'nan') return NaN;
  if (t === 'infinity' || t === '+infinity' || t === 'inf' || t === '+inf') return Infinity;
  if (t === '-infinity' || t === '-inf') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) throw new ValueError(`invalid input syntax for type double precision: "${text}"`);
  return Number(t);
}

/** Postgres' float8 order: NaN equals itself and sorts above everything; -0 = 0. */
function compareFloat(a: number, b: number): number {
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
  if (Number.isNaN(b)) return -1;
  return a === b ? 0 : a < b ? -1 : 1;
}

const BOOL_TRUE = new Set(['t', 'true', 'y', 'yes', 'on', '1']);
const BOOL_FALSE = new Set(['f', 'false', 'n', 'no', 'off', '0']);

function parseBool(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (BOOL_TRUE.has(t)) return true;
  if (BOOL_FALSE.has(t)) return false;
  throw new ValueError(`invalid input syntax for type boolean: "${text}"`);
}

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

const INSTANT_PLUS = 2n ** 63n - 1n;
const INSTANT_MINUS = -(2n ** 63n);

/**
 * '2026-11-23', '2026-11-23 20:15:01.123456+00', '2026-11-23T20:15:01Z',
 * '… +05:30', 'infinity' → microseconds since 1970-01-01 UTC. No zone: UTC.
 */
export function parseInstant(text: string): bigint {
  const t = text.trim();
  const lower = t.toLowerCase();
  if (lower === 'infinity' || lower === '+infinity') return INSTANT_PLUS;
  if (lower === '-infinity') return INSTANT_MINUS;
  const m = /^(\d{4,})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?(?::?\d{2})?)?$/i.exec(t);
  if (!m) throw new ValueError(`invalid input syntax for type timestamp with time zone: "${text}"`);
  const [, y, mo, d, h = '0', mi = '0', s = '0', f = '', zone] = m;
  const month = Number(mo);
  const day = Number(d);
  const year = Number(y);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  const dim = [31, year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (month < 1 || month > 12 || day < 1 || day > dim[month - 1]) throw new ValueError(`date/time field value out of range: "${text}"`);
  if (hour > 24 || minute > 59 || second > 60 || (hour === 24 && (minute > 0 || second > 0 || f !== ''))) {
    throw new ValueError(`date/time field value out of range: "${text}"`);
  }
  const days = BigInt(daysFromCivil(year, month, day));
  let micros = ((days * 24n + BigInt(hour)) * 60n + BigInt(minute)) * 60n * 1_000_000n + BigInt(second) * 1_000_000n + BigInt(f.padEnd(6, '0') || '0');
  if (zone && zone.toUpperCase() !== 'Z') {
    const z = /^([+-])(\d{2}):?(\d{2})?:?(\d{2})?$/.exec(zone)!;
    const offset = (BigInt(Number(z[2])) * 3600n + BigInt(Number(z[3] ?? 0)) * 60n + BigInt(Number(z[4] ?? 0))) * 1_000_000n;
    micros -= z[1] === '-' ? -offset : offset;
  }
  return micros;
}

const UUID = /^\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?$/i;

function parseUuid(text: string): string {
  const m = UUID.exec(text.trim());
  if (!m) throw new ValueError(`invalid input syntax for type uuid: "${text}"`);
  return m.slice(1).join('').toLowerCase();
}

/** A column's or a literal's text read as a kind; throws ValueError as Postgres' input functions would. */
export function parseValue(kind: Kind, text: string): Value {
  switch (kind) {
    case 'int':
      return { kind, v: parseInt8(text) };
    case 'numeric':
      return { kind, v: parseDecimal(text) };
    case 'float':
      return { kind, v: parseFloat8(text) };
    case 'text':
      return { kind, v: text };
    case 'enum':
      return { kind: 'enum', v: text };
    case 'bool':
      return { kind, v: parseBool(text) };
    case 'instant':
      return { kind, v: parseInstant(text) };
    case 'uuid':
      return { kind, v: parseUuid(text) };
    default:
      throw new ValueError(`values of this type cannot be compared by a filter`);
  }
}

/** The kind two kinds compare as (Postgres' implicit casts), or null when Postgres has no such comparison. */
export function commonKind(a: Kind, b: Kind): Kind | null {
  if (a === b) return a === 'other' ? null : a;
  const pair = new Set([a, b]);
  if (pair.has('float') && (pair.has('int') || pair.has('numeric'))) return 'float';
  if (pair.has('int') && pair.has('numeric')) return 'numeric';
  return null;
}

/** A value converted to a wider kind (only the conversions commonKind allows). */
export function widen(v: Value, to: Kind): Value {
  if (v.kind === to) return v;
  if (to === 'numeric' && v.kind === 'int') return { kind: 'numeric', v: decimalOfInt(v.v) };
  if (to === 'float' && v.kind === 'int') return { kind: 'float', v: Number(v.v) };
  if (to === 'float' && v.kind === 'numeric') return { kind: 'float', v: floatOfDecimal(v.v) };
  throw new Error(`no conversion from ${v.kind} to ${to}`);
}

function compareStrings(a: string, b: string): number {
  // Code point order (the "C" collation): compare UTF-16 with surrogates
  // handled, which matches UTF-8 byte order.
  if (a === b) return 0;
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done) return y.done ? 0 : -1;
    if (y.done) return 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

/** Compares two values of the same kind: <0, 0, >0. */
export function compareValues(a: Value, b: Value): number {
  switch (a.kind) {
    case 'int':
    case 'instant': {
      const y = b.v as bigint;
      return a.v === y ? 0 : a.v < y ? -1 : 1;
    }
    case 'numeric':
      return compareDecimal(a.v, b.v as Decimal);
    case 'float':
      return compareFloat(a.v, b.v as number);
    case 'text':
    case 'uuid':
    case 'enum':
      return compareStrings(a.v, b.v as string);
    case 'bool':
      return a.v === b.v ? 0 : a.v ? 1 : -1;
  }
}
