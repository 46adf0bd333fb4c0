// encodeValue and TypeCatalog against a real Postgres. Values are read in the
// text protocol with every pg type parser switched off, so the client sees the
// type's output function text under the replication session's settings —
// the same text pgoutput sends (a `col::text` cast is not quite that: bool::text
// gives 'true', inet::text always adds /32, bpchar::text drops padding).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeCatalog } from '../src/capture/types-catalog.js';
import { builtinType, encodeValue } from '../src/capture/values.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

const SESSION = [
  "SET DateStyle = 'ISO, MDY'",
  "SET TimeZone = 'UTC'",
  "SET IntervalStyle = 'iso_8601'",
  'SET extra_float_digits = 3',
  // Not a session setting of capture: only pins money's format for this test.
  "SET lc_monetary = 'C'",
];
const raw = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

let server: TestPg;
let client: pg.Client;
const queries: string[] = [];
let catalog: TypeCatalog;

beforeAll(async () => {
  server = await startTestPg();
  client = new pg.Client({ connectionString: await server.createDatabase('values_pg') });
  await client.connect();
  for (const s of SESSION) await client.query(s);
  catalog = new TypeCatalog(async (sql, params) => {
    queries.push(sql);
    return client.query(sql, params);
  });
});
afterAll(async () => {
  await client?.end();
  await server?.stop();
});

/** Column name → JSON text, for the first row of `sql`, as capture would encode it. */
async function encodeRow(sql: string): Promise<Record<string, string>> {
  const res = await client.query({ text: sql, types: raw });
  await catalog.ensure(res.fields.map((f) => f.dataTypeID));
  const out: Record<string, string> = {};
  for (const f of res.fields) {
    const type = catalog.get(f.dataTypeID);
    if (!type) throw new Error(`type ${f.dataTypeID} unresolved`);
    out[f.name] = encodeValue(res.rows[0][f.name], type, (o) => catalog.get(o));
    JSON.parse(out[f.name]);
  }
  return out;
}

// [column type, SQL literal, expected JSON text]
const CASES: [string, string, string][] = [
  ['bool', 'true', 'true'],
  ['int2', '-32768', '-32768'],
  ['int4', '2147483647', '2147483647'],
  ['int8', '9007199254740993', '9007199254740993'],
  ['oid', '4294967295', '4294967295'],
  ['float4', '3.4028235e38', '3.4028235e+38'],
  ['float8', '0.1', '0.1'],
  ['numeric(6,2)', '19.9', '"19.90"'],
  ['numeric', "'NaN'", '"NaN"'],
  ['json', `'{"b": 1,  "a": [1, 2]}'`, '{"b": 1,  "a": [1, 2]}'],
  ['jsonb', `'{"b": 1,  "a": 123456789012345678901234567890}'`, '{"a": 123456789012345678901234567890, "b": 1}'],
  ['timestamptz', "'2026-11-23 21:15:01.123456+01'", '"2026-11-23T20:15:01.123456Z"'],
  ['timestamp', "'2026-11-23 20:15:01.5'", '"2026-11-23T20:15:01.500000"'],
  ['date', "'2026-11-23'", '"2026-11-23"'],
  ['time', "'20:15:01.25'", '"20:15:01.25"'],
  ['timetz', "'20:15:01+05:30'", '"20:15:01+05:30"'],
  ['interval', "'1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds'", '"P1Y2M3DT4H5M6.5S"'],
  ['bytea', "'\\x0aff'::bytea", '"Cv8="'],
  ['uuid', "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", '"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"'],
  ['text', `E'quote " backslash \\\\ tab \\t'`, '"quote \\" backslash \\\\ tab \\t"'],
  ['varchar(10)', "'abc'", '"abc"'],
  ['char(4)', "'ab'", '"ab  "'],
  ['inet', "'192.168.0.1'", '"192.168.0.1"'],
  ['cidr', "'10.0.0.0/8'", '"10.0.0.0/8"'],
  ['macaddr', "'08:00:2b:01:02:03'", '"08:00:2b:01:02:03"'],
  ['money', '12.5', '"$12.50"'],
  ['xml', "'<a>x</a>'", '"<a>x</a>"'],
  ['int4range', "'[1,5)'", '"[1,5)"'],
  ['int8[]', "'{{9007199254740993,NULL},{1,2}}'", '[[9007199254740993,null],[1,2]]'],
  ['text[]', `ARRAY['a,b', 'q"u', 'b\\s', '{x}', 'NULL', NULL, '']`, '["a,b","q\\"u","b\\\\s","{x}","NULL",null,""]'],
  ['bool[]', "'{t,f,NULL}'", '[true,false,null]'],
  ['numeric[]', "'{19.90,NaN}'", '["19.90","NaN"]'],
  ['float8[]', "'{1e100,-0,NaN,-Infinity}'", '[1e+100,-0,"NaN","-Infinity"]'],
  ['jsonb[]', `ARRAY['{"a": [1]}'::jsonb, '"s"', NULL]`, '[{"a": [1]},"s",null]'],
  ['timestamptz[]', "'{\"2026-11-23 20:15:01+00\",-infinity}'", '["2026-11-23T20:15:01.000000Z","-infinity"]'],
  ['int4[]', "'[0:1]={7,8}'", '[7,8]'],
  ['int4[]', "'{}'", '[]'],
  ['bytea[]', "ARRAY['\\x0aff'::bytea]", '["Cv8="]'],
  ['box[]', "ARRAY['((1,1),(0,0))'::box, '((3,3),(2,2))']", '["(1,1),(0,0)","(3,3),(2,2)"]'],
  ['oid[]', "'{1,2}'", '[1,2]'],
];

describe('encodeValue on real Postgres output', () => {
  it('one column of each type', async () => {
    const cols = CASES.map(([type], i) => `c${i} ${type}`).join(', ');
    await client.query(`CREATE TABLE all_types (${cols})`);
    await client.query(`INSERT INTO all_types VALUES (${CASES.map(([t, lit]) => `(${lit})::${t}`).join(', ')})`);
    await client.query(`INSERT INTO all_types DEFAULT VALUES`);
    const row = await encodeRow('SELECT * FROM all_types LIMIT 1');
    const got = CASES.map(([type], i) => [type, row[`c${i}`]]);
    expect(got).toEqual(CASES.map(([type, , json]) => [type, json]));
    const nulls = await encodeRow('SELECT * FROM all_types OFFSET 1');
    expect(Object.values(nulls).every((v) => v === 'null')).toBe(true);
  });

  it('float edge values', async () => {
    const row = await encodeRow(
      `SELECT 1e100::float8 a, '-0'::float8 b, 1.5e-7::float8 c, 'NaN'::float8 d, 'Infinity'::float4 e,
              '-Infinity'::float8 f, 1e-320::float8 g, 123456789.125::float8 h`,
    );
    expect(row).toEqual({ a: '1e+100', b: '-0', c: '1.5e-07', d: '"NaN"', e: '"Infinity"', f: '"-Infinity"', g: '1e-320', h: '123456789.125' });
    expect(JSON.parse(row.h)).toBe(123456789.125);
  });

  it('numeric keeps 40 digits, scale, ±Infinity', async () => {
    const row = await encodeRow(
      `SELECT 1234567890123456789012345678901234567890.5::numeric a, 0.10::numeric(4,3) b,
              'Infinity'::numeric c, '-Infinity'::numeric d`,
    );
    expect(row).toEqual({ a: '"1234567890123456789012345678901234567890.5"', b: '"0.100"', c: '"Infinity"', d: '"-Infinity"' });
  });

  it('timestamps with 0–6 fraction digits, infinities, BC, far future', async () => {
    const row = await encodeRow(
      `SELECT '2026-11-23 20:15:01+00'::timestamptz a, '2026-11-23 20:15:01.1+00'::timestamptz b,
              '2026-11-23 20:15:01.12345+00'::timestamptz c, 'infinity'::timestamptz d, '-infinity'::timestamp e,
              '0044-03-15 12:00:00+00 BC'::timestamptz f, '294276-12-31 23:59:59.999999+00'::timestamptz g,
              '0044-03-15 BC'::date h, 'infinity'::date i, '5874897-12-31'::date j,
              '2026-11-23 20:15:01.000001'::timestamp(6) k, '2026-11-23 20:15:01.6'::timestamp(0) l`,
    );
    expect(row).toEqual({
      a: '"2026-11-23T20:15:01.000000Z"',
      b: '"2026-11-23T20:15:01.100000Z"',
      c: '"2026-11-23T20:15:01.123450Z"',
      d: '"infinity"',
      e: '"-infinity"',
      f: '"-000043-03-15T12:00:00.000000Z"',
      g: '"+294276-12-31T23:59:59.999999Z"',
      h: '"-000043-03-15"',
      i: '"infinity"',
      j: '"+5874897-12-31"',
      k: '"2026-11-23T20:15:01.000001"',
      l: '"2026-11-23T20:15:02.000000"',
    });
  });

  it('timestamptz printed in another time zone converts to the same UTC text', async () => {
    const values = `'2026-11-23 20:15:01.123456+00', '1850-01-01 00:00:00+00', '2024-02-29 23:30:00+00',
                    '0001-01-01 00:10:00+00', '1900-12-31 23:59:59.5+00'`;
    const sql = `SELECT ARRAY[${values}]::timestamptz[] AS v`;
    const utc = await encodeRow(sql);
    for (const tz of ['Asia/Kolkata', 'America/St_Johns', 'Pacific/Kiritimati', 'Europe/Amsterdam']) {
      await client.query(`SET TimeZone = '${tz}'`);
      try {
        expect([tz, (await encodeRow(sql)).v]).toEqual([tz, utc.v]);
      } finally {
        await client.query("SET TimeZone = 'UTC'");
      }
    }
  });
});

describe('TypeCatalog', () => {
  it('resolves an enum, an enum array, a domain over int8 and its array, a composite, in one query', async () => {
    await client.query(`CREATE TYPE mood AS ENUM ('happy', 'sad, really', 'NULL')`);
    await client.query('CREATE DOMAIN big AS int8 CHECK (VALUE > 0)');
    await client.query('CREATE DOMAIN bigger AS big');
    await client.query('CREATE TYPE pair AS (a int4, b text)');
    await client.query(`CREATE TABLE custom (m mood, ms mood[], b big, bs big[], bb bigger, p pair, ps pair[])`);
    await client.query(`INSERT INTO custom VALUES ('sad, really', '{happy,"sad, really",NULL,"NULL"}', 9007199254740993,
      '{9007199254740993,NULL}', 42, '(1,"x y")', ARRAY['(1,a)'::pair, '(2,"b,c")'])`);
    const before = queries.length;
    const row = await encodeRow('SELECT * FROM custom');
    expect(queries.length - before).toBe(1);
    expect(row).toEqual({
      m: '"sad, really"',
      ms: '["happy","sad, really",null,"NULL"]',
      b: '9007199254740993',
      bs: '[9007199254740993,null]',
      bb: '42',
      p: '"(1,\\"x y\\")"',
      ps: '["(1,a)","(2,\\"b,c\\")"]',
    });
    const { rows } = await client.query(
      `SELECT 'mood'::regtype::oid::int8 AS mood, '_mood'::regtype::oid::int8 AS moods, 'big'::regtype::oid::int8 AS big`,
    );
    expect(catalog.get(Number(rows[0].mood))).toMatchObject({ name: 'mood', category: 'E', elemOid: 0 });
    expect(catalog.get(Number(rows[0].moods))).toMatchObject({ category: 'A', elemOid: Number(rows[0].mood) });
    expect(catalog.get(Number(rows[0].big))).toEqual(builtinType(20)); // a domain encodes as its base type
    // Everything is cached now, and builtins never hit the database.
    await encodeRow('SELECT * FROM custom');
    await catalog.ensure([16, 20, 1016, 3807]);
    expect(queries.length - before).toBe(1);
  });

  it('the builtin table agrees with pg_type', async () => {
    const oids = Array.from({ length: 5000 }, (_, i) => i).filter((o) => builtinType(o));
    const { rows } = await client.query(
      `SELECT oid::int8 AS oid, typname, typcategory, typelem::int8 AS elem, typdelim FROM pg_type WHERE oid = ANY($1::oid[])`,
      [oids],
    );
    expect(rows.length).toBe(oids.length);
    for (const r of rows) {
      const t = builtinType(Number(r.oid))!;
      expect([t.oid, t.name, t.category, t.elemOid, t.delim]).toEqual([
        Number(r.oid), r.typname, r.typcategory, r.typcategory === 'A' ? Number(r.elem) : 0, r.typdelim,
      ]);
    }
  });
});
