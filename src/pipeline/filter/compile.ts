// A consumer's `where` filter: parsed by Postgres' own parser (libpg-query,
// compiled to WebAssembly), checked against the table's columns, and compiled
// into a JS predicate that gives what `SELECT <expression>` would give in
// Postgres, NULL included (three-valued logic). The text is never run as SQL
// anywhere: only the node kinds below are accepted, everything else is
// refused with its position.
//
// Accepted: column names; literals (numbers, 'strings', true/false, NULL) and
// casts of literals (`'2026-01-01'::timestamptz`); = <> != < > <= >=;
// [NOT] IN (literals); [NOT] BETWEEN [SYMMETRIC]; [NOT] LIKE / ILIKE;
// IS [NOT] NULL; IS [NOT] TRUE/FALSE/UNKNOWN; IS [NOT] DISTINCT FROM;
// AND / OR / NOT; parentheses; changed(column).
import { loadModule, parseSync } from 'libpg-query';
import { commonKind, compareValues, kindOf, parseValue, ValueError, widen, type Kind, type Value } from './values.js';

// The parser is WebAssembly: instantiated once, when this module loads, so
// that compiling a filter stays synchronous.
await loadModule();

/** A refusal: where in the expression (1-based character) and why. */
export class FilterError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
  }
}

/** What a filter reads of one change. */
export interface FilterRow {
  /** The column's value as Postgres prints it (text output), null for NULL, undefined when absent. */
  value(column: string): string | null | undefined;
  /** For changed(column): whether an update changed it; null when that is not known. */
  changed(column: string): boolean | null;
}

export interface CompiledFilter {
  /** true: the change passes; false or null (SQL's NULL): it is filtered out. */
  test(row: FilterRow): boolean | null;
  /** The columns the expression reads. */
  columns: string[];
}

type Tri = boolean | null;
type Pred = (row: Env) => Tri;
type Operand = { kind: Kind; get: (row: Env) => Value | null; literal: LiteralInfo | null; column: string | null };
interface LiteralInfo {
  /** The literal's text (for a string or a number). */
  text: string | null;
  /** null: an untyped 'string' (Postgres' unknown), coerced to the other side's type. */
  typed: Kind | null;
  /** For casts: the target type's name. */
  cast: string | null;
  isNull: boolean;
  position: number;
}

/** A row with its parsed values cached (a column read twice is parsed once). */
class Env {
  private readonly cache = new Map<string, Value | null>();
  constructor(readonly row: FilterRow) {}
  column(name: string, kind: Kind): Value | null {
    const hit = this.cache.get(name);
    if (hit !== undefined) return hit;
    const text = this.row.value(name);
    let v: Value | null = null;
    if (text !== null && text !== undefined) {
      try {
        v = parseValue(kind, text);
      } catch {
        v = null; // a value capture could not print as its type reads as NULL
      }
    }
    this.cache.set(name, v);
    return v;
  }
}

const PREFIX = 'SELECT 1 WHERE ';

// libpg-query reports byte offsets into the statement; users count characters in their expression.
function charPosition(statement: string, byteOffset: number): number {
  const bytes = Buffer.from(statement, 'utf8');
  const before = bytes.subarray(0, Math.max(0, Math.min(byteOffset, bytes.length))).toString('utf8');
  return Math.max(1, before.length - PREFIX.length + 1);
}

type Node = Record<string, unknown>;
const nodeKind = (n: unknown): string => (n && typeof n === 'object' ? Object.keys(n as object)[0] : String(n));
const inner = (n: unknown): Node => (n as Node)[nodeKind(n)] as Node;

/**
 * Parses `expression` as what follows WHERE: one boolean expression, nothing
 * else. Checks only the syntax (compileWhere checks the columns and types):
 * what a config file can be checked for without reaching the source.
 */
export function parseWhere(expression: string): { statement: string; where: Record<string, unknown> } {
  const statement = PREFIX + expression;
  let parsed: { stmts?: { stmt: Node }[] };
  try {
    parsed = parseSync(statement) as typeof parsed;
  } catch (e) {
    const details = (e as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
    const at = details?.cursorPosition !== undefined ? charPosition(statement, details.cursorPosition) : 1;
    throw new FilterError((e as Error).message, at);
  }
  const stmts = parsed.stmts ?? [];
  const select = stmts.length === 1 ? (stmts[0].stmt.SelectStmt as Node | undefined) : undefined;
  const allowed = new Set(['targetList', 'whereClause', 'limitOption', 'op']);
  if (!select || select.op !== 'SETOP_NONE' || !select.whereClause || Object.keys(select).some((k) => !allowed.has(k))) {
    throw new FilterError('a filter is one boolean expression, as after WHERE (no ;, UNION, ORDER BY, …)', 1);
  }
  return { statement, where: select.whereClause as Node };
}

/**
 * Compiles `expression` over a table whose columns have these Postgres types
 * (pg_type names; arrays as `_int4` or `int4[]`). Throws FilterError.
 */
export function compileWhere(expression: string, columns: Readonly<Record<string, string>>): CompiledFilter {
  const { statement, where } = parseWhere(expression);
  const used = new Set<string>();
  const c = new Compiler(statement, columns, used);
  const pred = c.predicate(where);
  return {
    columns: [...used],
    test: (row) => pred(new Env(row)),
  };
}

const CMP: Record<string, (c: number) => boolean> = {
  '=': (c) => c === 0,
  '<>': (c) => c !== 0,
  '<': (c) => c < 0,
  '>': (c) => c > 0,
  '<=': (c) => c <= 0,
  '>=': (c) => c >= 0,
};

function and3(a: Tri, b: Tri): Tri {
  if (a === false || b === false) return false;
  if (a === null || b === null) return null;
  return true;
}
function or3(a: Tri, b: Tri): Tri {
  if (a === true || b === true) return true;
  if (a === null || b === null) return null;
  return false;
}
const not3 = (a: Tri): Tri => (a === null ? null : !a);

class Compiler {
  constructor(
    private readonly statement: string,
    private readonly columns: Readonly<Record<string, string>>,
    private readonly used: Set<string>,
  ) {}

  private fail(message: string, node: unknown): never {
    const loc = (inner(node)?.location as number | undefined) ?? PREFIX.length;
    throw new FilterError(message, charPosition(this.statement, loc));
  }

  predicate(node: unknown): Pred {
    const k = nodeKind(node);
    const n = inner(node);
    switch (k) {
      case 'BoolExpr': {
        const args = (n.args as unknown[]).map((a) => this.predicate(a));
        if (n.boolop === 'NOT_EXPR') return (r) => not3(args[0](r));
        // Loops, not reduce: no closure made per change tested (this runs for every change a filter walks).
        if (n.boolop === 'AND_EXPR') {
          return (r) => {
            let acc: Tri = true;
            for (let i = 0; i < args.length && acc !== false; i++) acc = and3(acc, args[i](r));
            return acc;
          };
        }
        return (r) => {
          let acc: Tri = false;
          for (let i = 0; i < args.length && acc !== true; i++) acc = or3(acc, args[i](r));
          return acc;
        };
      }
      case 'A_Expr':
        return this.aExpr(node, n);
      case 'NullTest': {
        const arg = this.operand(n.arg, true);
        const isNull = n.nulltesttype === 'IS_NULL';
        return (r) => (arg.get(r) === null) === isNull;
      }
      case 'BooleanTest': {
        const arg = this.predicate(n.arg);
        const t = n.booltesttype as string;
        return (r) => {
          const v = arg(r);
          switch (t) {
            case 'IS_TRUE': return v === true;
            case 'IS_NOT_TRUE': return v !== true;
            case 'IS_FALSE': return v === false;
            case 'IS_NOT_FALSE': return v !== false;
            case 'IS_UNKNOWN': return v === null;
            default: return v !== null;
          }
        };
      }
      case 'FuncCall':
        return this.changed(node, n);
      case 'ColumnRef':
      case 'A_Const':
      case 'TypeCast': {
        const o = this.operand(node);
        if (o.kind !== 'bool') this.fail(`argument of WHERE must be type boolean, not ${this.typeName(o)}`, node);
        return (r) => {
          const v = o.get(r);
          return v === null ? null : (v.v as boolean);
        };
      }
      default:
        return this.fail(`${describe(k)} is not supported in a filter`, node);
    }
  }

  private typeName(o: Operand): string {
    if (o.column) return this.columns[o.column];
    return o.literal?.cast ?? o.kind;
  }

  private changed(node: unknown, n: Node): Pred {
    const name = ((n.funcname as unknown[]) ?? []).map((p) => inner(p).sval as string);
    if (name.length !== 1 || name[0] !== 'changed') this.fail(`function ${name.join('.')}() is not supported in a filter (only changed(column))`, node);
    const args = (n.args as unknown[] | undefined) ?? [];
    if (args.length !== 1 || nodeKind(args[0]) !== 'ColumnRef' || n.agg_star || n.agg_distinct || n.over) {
      this.fail('changed() takes one column name', node);
    }
    const column = this.columnName(args[0]);
    return (r) => r.row.changed(column);
  }

  private columnName(node: unknown): string {
    const fields = (inner(node).fields as unknown[]) ?? [];
    if (fields.length !== 1 || nodeKind(fields[0]) !== 'String') this.fail('a column is named alone (no table prefix, no *)', node);
    const name = inner(fields[0]).sval as string;
    if (!(name in this.columns)) this.fail(`column "${name}" does not exist (columns: ${Object.keys(this.columns).join(', ')})`, node);
    this.used.add(name);
    return name;
  }

  /** A column or a literal. `anyType`: arrays and uncomparable types allowed (IS NULL). */
  operand(node: unknown, anyType = false): Operand {
    const k = nodeKind(node);
    const n = inner(node);
    if (k === 'ColumnRef') {
      const column = this.columnName(node);
      const type = this.columns[column];
      const isArray = type.startsWith('_') || type.endsWith('[]');
      const kind = isArray ? 'other' : kindOf(type);
      if (kind === 'other' && !anyType) this.fail(`column "${column}" (${type}) can only be tested with IS [NOT] NULL in a filter`, node);
      return { kind, column, literal: null, get: (r) => (kind === 'other' ? otherValue(r, column) : r.column(column, kind)) };
    }
    if (k === 'A_Const') return this.constant(n, null, node);
    if (k === 'TypeCast') {
      const arg = (n.arg as unknown) ?? {};
      if (nodeKind(arg) !== 'A_Const') this.fail('only literals can be cast in a filter', node);
      const names = ((n.typeName as Node).names as unknown[]) ?? [];
      const typeName = names.map((p) => inner(p).sval as string).filter((s) => s !== 'pg_catalog').join('.');
      if ((((n.typeName as Node).arrayBounds as unknown[]) ?? []).length > 0) this.fail('array literals are not supported in a filter', node);
      return this.constant(inner(arg), typeName, node);
    }
    if (k === 'A_Expr') {
      const op = ((n.name as unknown[]) ?? []).map((p) => inner(p).sval as string).join('.');
      this.fail(`operator ${op} is not supported in a filter (no arithmetic: compare a column with a literal or a column)`, node);
    }
    if (k === 'FuncCall') {
      const name = ((n.funcname as unknown[]) ?? []).map((p) => inner(p).sval as string).join('.');
      this.fail(`function ${name}() is not supported in a filter (only changed(column), as a condition)`, node);
    }
    return this.fail(`${describe(k)} is not supported in a filter`, node);
  }

  private constant(n: Node, cast: string | null, node: unknown): Operand {
    const position = charPosition(this.statement, (n.location as number) ?? 0);
    let text: string | null = null;
    let typed: Kind | null = null;
    let value: Value | null = null;
    if (n.isnull) {
      if (cast !== null && kindOf(cast) === 'other') this.fail(`type ${cast} is not supported in a filter`, node);
      return { kind: cast === null ? 'text' : kindOf(cast), column: null, get: () => null, literal: { text: null, typed: null, cast, isNull: true, position } };
    }
    if (n.ival !== undefined) {
      text = String((n.ival as Node).ival ?? 0);
      typed = 'int';
    } else if (n.fval !== undefined) {
      text = String((n.fval as Node).fval);
      typed = /^[+-]?\d+$/.test(text) && BigInt(text) <= 2n ** 63n - 1n && BigInt(text) >= -(2n ** 63n) ? 'int' : 'numeric';
    } else if (n.boolval !== undefined) {
      text = (n.boolval as Node).boolval ? 'true' : 'false';
      typed = 'bool';
    } else if (n.sval !== undefined) {
      text = String((n.sval as Node).sval ?? '');
      typed = null;
    } else {
      this.fail('this literal is not supported in a filter', node);
    }
    let kind: Kind = typed ?? 'text';
    if (cast !== null) {
      const target = kindOf(cast);
      if (target === 'other') this.fail(`type ${cast} is not supported in a filter`, node);
      // A quoted literal is read by the type's input; a number may be widened
      // (5::numeric), never narrowed or turned into text (Postgres rounds or
      // reformats there: write the literal as meant instead).
      const ok = typed === null || typed === target || commonKind(typed, target) === target;
      if (!ok) this.fail(`cast of ${text} to ${cast} is not supported in a filter: quote the literal ('${text}'::${cast})`, node);
      kind = target;
      value = this.read(target, castText(cast, text!), node);
      if (value.kind === 'instant' && cast.toLowerCase() === 'date') value = { kind: 'instant', v: floorDay(value.v) };
      return { kind, column: null, get: () => value, literal: { text, typed: target, cast, isNull: false, position } };
    }
    if (typed !== null) value = this.read(typed, text!, node);
    const fixed = value;
    return { kind, column: null, get: () => fixed, literal: { text, typed, cast: null, isNull: false, position } };
  }

  private read(kind: Kind, text: string, node: unknown): Value {
    try {
      return parseValue(kind, text);
    } catch (e) {
      if (e instanceof ValueError) this.fail(e.message, node);
      throw e;
    }
  }

  /** Two operands brought to the kind they compare as; an untyped literal takes the other side's type. */
  private unify(a: Operand, b: Operand, node: unknown): [Operand, Operand] {
    if (a.kind === 'other' || b.kind === 'other') this.fail('these values cannot be compared in a filter', node);
    const untypedA = a.literal !== null && a.literal.typed === null && !a.literal.isNull;
    const untypedB = b.literal !== null && b.literal.typed === null && !b.literal.isNull;
    if (untypedA && !untypedB) a = this.coerce(a, b.kind, node);
    else if (untypedB && !untypedA) b = this.coerce(b, a.kind, node);
    if (a.literal?.isNull && a.literal.cast === null) a = { ...a, kind: b.kind };
    if (b.literal?.isNull && b.literal.cast === null) b = { ...b, kind: a.kind };
    const kind = commonKind(a.kind, b.kind);
    if (kind === null) this.fail(`operator does not exist: ${this.typeName(a)} and ${this.typeName(b)} cannot be compared`, node);
    return [widenOperand(a, kind), widenOperand(b, kind)];
  }

  private coerce(o: Operand, kind: Kind, _node: unknown): Operand {
    let value: Value;
    try {
      value = parseValue(kind, o.literal!.text!);
    } catch (e) {
      if (e instanceof ValueError) throw new FilterError(e.message, o.literal!.position);
      throw e;
    }
    return { ...o, kind, get: () => value, literal: { ...o.literal!, typed: kind } };
  }

  private aExpr(node: unknown, n: Node): Pred {
    const kind = n.kind as string;
    const op = ((n.name as unknown[]) ?? []).map((p) => inner(p).sval as string).join('.');
    switch (kind) {
      case 'AEXPR_OP': {
        if (!(op in CMP)) this.fail(`operator ${op} is not supported in a filter`, node);
        if (!n.lexpr) this.fail(`operator ${op} needs two sides`, node);
        const [a, b] = this.unify(this.operand(n.lexpr), this.operand(n.rexpr), node);
        if (a.kind === 'enum' && op !== '=' && op !== '<>') this.fail(`an enum is compared with = <> IN or IS DISTINCT FROM in a filter, not ${op}`, node);
        const test = CMP[op];
        return (r) => {
          const x = a.get(r);
          const y = b.get(r);
          return x === null || y === null ? null : test(compareValues(x, y));
        };
      }
      case 'AEXPR_DISTINCT':
      case 'AEXPR_NOT_DISTINCT': {
        const [a, b] = this.unify(this.operand(n.lexpr), this.operand(n.rexpr), node);
        const distinct = kind === 'AEXPR_DISTINCT';
        return (r) => {
          const x = a.get(r);
          const y = b.get(r);
          const same = x === null || y === null ? x === y : compareValues(x, y) === 0;
          return distinct ? !same : same;
        };
      }
      case 'AEXPR_IN': {
        const left = this.operand(n.lexpr);
        const items = ((inner(n.rexpr) as Node)?.items as unknown[]) ?? (Array.isArray(n.rexpr) ? (n.rexpr as unknown[]) : []);
        if (nodeKind(n.rexpr) !== 'List') this.fail('IN takes a list of literals', node);
        const pairs = items.map((it) => this.unify(left, this.operand(it), it));
        const negate = op === '<>';
        return (r) => {
          let acc: Tri = false;
          for (const [a, b] of pairs) {
            const x = a.get(r);
            const y = b.get(r);
            const eq: Tri = x === null || y === null ? null : compareValues(x, y) === 0;
            acc = or3(acc, eq);
            if (acc === true) break;
          }
          return negate ? not3(acc) : acc;
        };
      }
      case 'AEXPR_BETWEEN':
      case 'AEXPR_NOT_BETWEEN':
      case 'AEXPR_BETWEEN_SYM':
      case 'AEXPR_NOT_BETWEEN_SYM': {
        const items = (inner(n.rexpr) as Node).items as unknown[];
        // The three sides compare in one kind (x BETWEEN 1 AND 1.5: numeric).
        const x = this.operand(n.lexpr);
        const [x1, lo0] = this.unify(x, this.operand(items[0]), node);
        const [x2, hi0] = this.unify(x, this.operand(items[1]), node);
        const common = commonKind(x1.kind, x2.kind);
        if (common === 'enum') this.fail('an enum is compared with = <> IN or IS DISTINCT FROM in a filter, not BETWEEN', node);
        if (common === null) this.fail('the bounds of BETWEEN cannot be compared with each other', node);
        const [a1, a2, lo, hi] = [x1, x2, lo0, hi0].map((o) => widenOperand(o, common));
        const negate = kind.includes('NOT');
        const symmetric = kind.endsWith('_SYM');
        const between = (r: Env, low: Operand, high: Operand): Tri => {
          const ge = cmp3(a1.get(r), low.get(r), (c) => c >= 0);
          const le = cmp3(a2.get(r), high.get(r), (c) => c <= 0);
          return and3(ge, le);
        };
        return (r) => {
          let v = between(r, lo, hi);
          if (symmetric) v = or3(v, between(r, hi, lo));
          return negate ? not3(v) : v;
        };
      }
      case 'AEXPR_LIKE':
      case 'AEXPR_ILIKE': {
        const [a, b] = this.unify(this.operand(n.lexpr), this.operand(n.rexpr), node);
        if (a.kind !== 'text') this.fail(`operator does not exist: ${this.typeName(a)} LIKE: LIKE compares text`, node);
        if (b.column !== null || b.literal === null) this.fail('the pattern of LIKE must be a literal', node);
        const pattern = b.get(new Env({ value: () => null, changed: () => null }));
        const insensitive = kind === 'AEXPR_ILIKE';
        const negate = op.startsWith('!');
        const fold = insensitive ? asciiLower : (s: string) => s;
        const re = pattern === null ? null : likeRegExp(fold(pattern.v as string), () => this.fail('LIKE pattern must not end with escape character', n.rexpr));
        return (r) => {
          const x = a.get(r);
          if (x === null || re === null) return null;
          const m = re.test(fold(x.v as string));
          return negate ? !m : m;
        };
      }
      default:
        return this.fail(`${kind.replace('AEXPR_', '').replace(/_/g, ' ')} is not supported in a filter`, node);
    }
  }
}

function cmp3(x: Value | null, y: Value | null, test: (c: number) => boolean): Tri {
  return x === null || y === null ? null : test(compareValues(x, y));
}

// A row that has no columns: a literal's getter ignores its row.
const NO_ROW = new Env({ value: () => null, changed: () => null });

function widenOperand(o: Operand, kind: Kind): Operand {
  if (o.kind === kind) return o;
  const get = o.get;
  if (o.literal !== null) {
    // A literal is widened once, not for every change tested (amount >= 10: 10 as a numeric).
    const v = get(NO_ROW);
    const fixed = v === null ? null : widen(v, kind);
    return { ...o, kind, get: () => fixed };
  }
  return { ...o, kind, get: (r) => {
    const v = get(r);
    return v === null ? null : widen(v, kind);
  } };
}

// A value of a type a filter only tests for NULL (arrays, json, …).
function otherValue(r: Env, column: string): Value | null {
  const t = r.row.value(column);
  return t === null || t === undefined ? null : { kind: 'text', v: t };
}

function floorDay(micros: bigint): bigint {
  const day = 86_400_000_000n;
  const q = micros / day;
  return (micros % day < 0n ? q - 1n : q) * day;
}

// 'timestamp' (without time zone) ignores a zone written in its input, as Postgres does.
function castText(cast: string, text: string): string {
  return cast.toLowerCase() === 'timestamp' ? text.trim().replace(/\s*(Z|[+-]\d{2}(:?\d{2}){0,2})$/i, '') : text;
}

/** LIKE/ILIKE as a RegExp over code points: % any run, _ one character, \ escapes the next. */
function likeRegExp(pattern: string, badEscape: () => never): RegExp {
  let out = '';
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === '\\') {
      if (i + 1 >= chars.length) badEscape();
      out += escapeRe(chars[++i]);
    } else if (ch === '%') out += '[\\s\\S]*';
    else if (ch === '_') out += '[\\s\\S]';
    else out += escapeRe(ch);
  }
  return new RegExp(`^${out}$`, 'u');
}

// ILIKE folds ASCII letters only, as Postgres does in the "C" collation the
// filter compares text in ('Ü' ILIKE 'ü' is false there).
const asciiLower = (s: string): string => s.replace(/[A-Z]+/g, (m) => m.toLowerCase());

function escapeRe(ch: string): string {
  // Only the characters with a meaning outside a class: under the u flag, an
  // escaped character that needs none (such as "-") is a syntax error.
  return ch.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

function describe(kind: string): string {
  const names: Record<string, string> = {
    SubLink: 'a subquery',
    FuncCall: 'a function call',
    A_ArrayExpr: 'an array',
    CaseExpr: 'CASE',
    CoalesceExpr: 'COALESCE',
    RowExpr: 'a row',
    ParamRef: 'a parameter',
    A_Indirection: 'a subscript',
    CollateClause: 'COLLATE',
  };
  return names[kind] ?? kind;
}
