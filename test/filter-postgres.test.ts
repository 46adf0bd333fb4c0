// The filter evaluator agrees with Postgres: seeded random rows (NULLs, int8
// beyond 2^53, 30-digit numerics, timestamptz in several spellings, quotes and
// unicode, arrays) and random expressions of the filter grammar; each is
// evaluated in JS and by `SELECT <expression>` over the same row in a real
// Postgres. SEED=<n> repeats a run; a failure prints the seed.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../src/db/pool.js';
import { compileWhere, FilterError } from '../src/pipeline/filter/compile.js';
import { useBufferDb } from './helpers/pg.js';
import { rng } from './helpers/rng.js';

const db = useBufferDb('filter_pg');
let pool: Pool;
beforeAll(() => {
  pool = db.pool;
});

const COLUMNS: Record<string, string> = {
  i4: 'int4', i8: 'int8', n: 'numeric', f: 'float8', t: 'text', b: 'bool', ts: 'timestamptz', d: 'date', u: 'uuid', arr: '_int4',
};
// Text columns compare in the "C" collation (code points), as the filter documents.
const CAST: Record<string, string> = {
  i4: '$1::int4', i8: '$2::int8', n: '$3::numeric', f: '$4::float8', t: '$5::text COLLATE "C"', b: '$6::bool',
  ts: '$7::timestamptz', d: '$8::date', u: '$9::uuid', arr: '$10::int4[]',
};
const NAMES = Object.keys(COLUMNS);

const POOL: Record<string, string[]> = {
  i4: ['0', '1', '-2', '5', '100', '2147483647', '-2147483648'],
  i8: ['0', '5', '100', '9007199254740992', '9007199254740993', '9223372036854775807', '-9223372036854775808'],
  n: ['0', '19.90', '19.9', '-0.5', '100', '5', '123456789012345678901.123456789', '123456789012345678901.123456788', '9007199254740993', 'NaN', 'Infinity', '-Infinity'],
  f: ['0', '-0', '1.5', '0.1', '5', '100', '1e+300', '9007199254740992', 'NaN', 'Infinity', '-Infinity'],
  t: ['paid', 'PAID', "it's", '', 'Ünïcödé', 'ünïcödé', '日本', 'emoji 😀', 'a%b', 'A_B', 'eu', 'us', 'zz'],
  b: ['true', 'false'],
  ts: ['2026-01-01 00:00:00+00', '2026-01-01T05:30:00+05:30', '2025-12-31T23:59:59.999999Z', '2026-06-15 12:00:00.5+00', 'infinity', '-infinity'],
  d: ['2026-01-01', '2025-12-31', '1999-01-01'],
  u: ['0f8fad5b-d9cb-469f-a165-70867728950e', '7C9E6679-7425-40DE-944B-E07FC1F90AE7', 'ffffffff-ffff-ffff-ffff-ffffffffffff'],
  arr: ['{1,2,3}', '{}', '{NULL,4}'],
};

// Literals per column kind, as a user writes them.
const LITERALS: Record<string, string[]> = {
  i4: ['0', '1', '5', '100', '-2', '2147483648', '19.9', "'5'", '5::numeric', '1.5'],
  i8: ['5', '9007199254740993', '9007199254740992', '9223372036854775807', "'9007199254740993'", '100.0', '9007199254740993.5'],
  n: ['19.9', '19.90', '100', '-0.5', "'NaN'", "'Infinity'::numeric", '123456789012345678901.123456789', "'19.9'::numeric", '5'],
  f: ['1.5', '0.1', '0', "'NaN'", "'Infinity'::float8", '9007199254740993', "'1e300'::float8"],
  t: ["'paid'", "'PAID'", "'it''s'", "''", "'Ünïcödé'", "'日本'", "'eu'", "'zz'", "'a'"],
  ts: ["'2026-01-01T00:00:00Z'", "'2026-01-01 05:30:00+05:30'", "'2026-01-01'::timestamptz", "'2025-12-31 23:59:59.999999+00'", "'infinity'", "'2026-06-15'::date"],
  d: ["'2026-01-01'", "'2025-12-31'::date", "'2026-01-01 00:00:00+00'::timestamptz", "'2025-12-31T12:00:00Z'::timestamptz"],
  u: ["'0f8fad5b-d9cb-469f-a165-70867728950e'", "'7c9e6679-7425-40de-944b-e07fc1f90ae7'", "'{ffffffff-ffff-ffff-ffff-ffffffffffff}'"],
};
const LIKE = ["'paid'", "'p%'", "'%D'", "'_aid'", "'%''%'", "'Ü%'", "'ü%'", "'%😀'", "'a\\%b'", "'A\\_B'", "'%'", "''", "'%-%'", "'a.b%'", "'[x]%'"];
// Columns of kinds Postgres compares with each other.
const PAIRS: [string, string][] = [['i4', 'i8'], ['i8', 'n'], ['n', 'f'], ['i4', 'f'], ['ts', 'd'], ['i8', 'f'], ['i4', 'n']];
const OPS = ['=', '<>', '!=', '<', '>', '<=', '>='];

function generator(seed: number) {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const comparable = NAMES.filter((c) => c !== 'arr' && c !== 'b');
  const atom = (): string => {
    const roll = r();
    const c = pick(comparable);
    if (roll < 0.3) return `${c} ${pick(OPS)} ${pick(LITERALS[c])}`;
    if (roll < 0.38) return `${pick(LITERALS[c])} ${pick(OPS)} ${c}`;
    if (roll < 0.46) {
      const [a, b] = pick(PAIRS);
      return r() < 0.5 ? `${a} ${pick(OPS)} ${b}` : `${b} ${pick(OPS)} ${a}`;
    }
    if (roll < 0.56) {
      const items = Array.from({ length: 1 + Math.floor(r() * 3) }, () => (r() < 0.1 ? 'NULL' : pick(LITERALS[c])));
      return `${c} ${r() < 0.3 ? 'NOT ' : ''}IN (${items.join(', ')})`;
    }
    if (roll < 0.64) return `${c} ${r() < 0.3 ? 'NOT ' : ''}BETWEEN ${r() < 0.2 ? 'SYMMETRIC ' : ''}${pick(LITERALS[c])} AND ${pick(LITERALS[c])}`;
    if (roll < 0.74) return `t ${r() < 0.3 ? 'NOT ' : ''}${r() < 0.5 ? 'LIKE' : 'ILIKE'} ${pick(LIKE)}`;
    if (roll < 0.82) return `${pick(NAMES)} IS ${r() < 0.5 ? 'NOT ' : ''}NULL`;
    if (roll < 0.88) return `${c} IS ${r() < 0.5 ? 'NOT ' : ''}DISTINCT FROM ${r() < 0.2 ? 'NULL' : pick(LITERALS[c])}`;
    if (roll < 0.94) return r() < 0.5 ? 'b' : `b IS ${r() < 0.5 ? 'NOT ' : ''}${pick(['TRUE', 'FALSE', 'UNKNOWN'])}`;
    return `b = ${pick(['true', 'false', "'t'", "'no'"])}`;
  };
  const expr = (depth: number): string => {
    if (depth <= 0 || r() < 0.35) return atom();
    const roll = r();
    if (roll < 0.4) return `${expr(depth - 1)} AND ${expr(depth - 1)}`;
    if (roll < 0.8) return `(${expr(depth - 1)} OR ${expr(depth - 1)})`;
    return `NOT (${expr(depth - 1)})`;
  };
  const row = (): Record<string, string | null> =>
    Object.fromEntries(NAMES.map((c) => [c, r() < 0.15 ? null : pick(POOL[c])]));
  return { expr: () => expr(3), row };
}

describe('the filter evaluator against Postgres', () => {
  it('agrees on 2,000 generated (row, expression) pairs, NULLs included', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    const g = generator(seed);
    const select = `SELECT (EXPR) AS r FROM (SELECT ${NAMES.map((c) => `${CAST[c]} AS ${c}`).join(', ')}) AS x`;
    let checked = 0;
    for (let i = 0; i < 2000; i++) {
      const expr = g.expr();
      const row = g.row();
      const f = compileWhere(expr, COLUMNS);
      const js = f.test({ value: (c) => row[c], changed: () => null });
      const { rows } = await pool.query<{ r: boolean | null }>(select.replace('EXPR', expr), NAMES.map((c) => row[c]));
      if (rows[0].r !== js) {
        throw new Error(`seed ${seed}, case ${i}: ${expr}\n  row ${JSON.stringify(row)}\n  Postgres ${rows[0].r}, filter ${js}`);
      }
      checked++;
    }
    expect(checked).toBe(2000);
  }, 120_000);
});

describe('refusals, with the position', () => {
  const refused = (expr: string) => {
    try {
      compileWhere(expr, COLUMNS);
    } catch (e) {
      if (e instanceof FilterError) return { message: e.message, position: e.position };
      throw e;
    }
    throw new Error(`accepted: ${expr}`);
  };
  it('syntax errors, unknown columns, functions, subqueries, type mismatches, more than one expression', () => {
    expect(refused("t = 'paid' AND")).toMatchObject({ message: expect.stringMatching(/syntax error/), position: 15 });
    expect(refused('amount > 5')).toMatchObject({ message: expect.stringMatching(/column "amount" does not exist/), position: 1 });
    expect(refused("t = 'x' AND lower(t) = 'x'")).toMatchObject({ message: expect.stringMatching(/lower\(\) is not supported/), position: 13 });
    expect(refused('i4 IN (SELECT 1)').message).toMatch(/IN takes a list|subquery/);
    expect(refused('t = 5')).toMatchObject({ message: expect.stringMatching(/cannot be compared/) });
    expect(refused("i4 = 'abc'")).toMatchObject({ message: expect.stringMatching(/invalid input syntax for type bigint: "abc"/), position: 6 });
    expect(refused("true; DROP TABLE x").message).toMatch(/one boolean expression/);
    expect(refused("true UNION SELECT 1 WHERE true").message).toMatch(/one boolean expression/);
    expect(refused('i4').message).toMatch(/must be type boolean/);
    expect(refused('arr = 1').message).toMatch(/IS \[NOT\] NULL/);
    expect(refused("t LIKE 'a\\'").message).toMatch(/escape character/);
    expect(refused('i4 + 1 > 2').message).toMatch(/operator \+ is not supported/);
    expect(refused("日本 = 'x' OR t = 'x'")).toMatchObject({ position: 1 });
    expect(refused("t = '日本' AND nope").position).toBe(14); // characters, not UTF-8 bytes
  });
});

describe('changed()', () => {
  it('reads the row\'s changed columns: true, false, or NULL when unknown', () => {
    const f = compileWhere("changed(t) AND t = 'paid'", COLUMNS);
    const row = (changed: boolean | null) => ({ value: (c: string) => (c === 't' ? 'paid' : null), changed: () => changed });
    expect(f.test(row(true))).toBe(true);
    expect(f.test(row(false))).toBe(false);
    expect(f.test(row(null))).toBe(null);
    expect(() => compileWhere('changed(nope)', COLUMNS)).toThrow(/column "nope" does not exist/);
  });
});
