// Every value class of shared/spec/message.md through the real capture path:
// a table in an embedded Postgres, SourceCapture streaming its slot, real
// INSERT/UPDATEs, then the payload *text* stored in sluice.messages. Where
// precision matters the assertion is on the JSON text itself (a JSON.parse
// would round an int8 through a double and hide a bug).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../src/db/pool.js';
import { consumerConfig, eventually, sourceConfig, sql, startCapture, type CaptureFixture, CONSUMER_CHANGES } from './helpers/capture.js';
import { startTestPg, type TestPg } from './helpers/pg.js';

let server: TestPg;
beforeAll(async () => {
  server = await startTestPg();
});
afterAll(async () => {
  await server?.stop();
});

/** The raw payload texts of a consumer, in capture order. */
async function rawPayloads(pool: Pool, consumer: string, n: number): Promise<string[]> {
  return eventually(async () => {
    const { rows } = await pool.query<{ payload: string }>(
      `SELECT m.payload FROM ${CONSUMER_CHANGES} m
        WHERE m.consumer = $1 ORDER BY m.commit_lsn, m.commit_idx`,
      [consumer],
    );
    return rows.length >= n ? rows.map((r) => r.payload) : null;
  });
}

/** The JSON text of `record.<col>` in a payload (the payload is built column by column, so a regex finds it). */
function field(payload: string, col: string): string {
  const rec = payload.slice(payload.indexOf('"record":'), payload.indexOf(',"changes":'));
  const key = `"${col}":`;
  const at = rec.indexOf(key);
  if (at < 0) throw new Error(`no ${col} in ${rec}`);
  // Take one JSON value: parse progressively longer prefixes up to the next , or }.
  const rest = rec.slice(at + key.length);
  for (let end = 1; end <= rest.length; end++) {
    if (end < rest.length && rest[end] !== ',' && rest[end] !== '}') continue;
    const candidate = rest.slice(0, end);
    try {
      JSON.parse(candidate);
      return candidate;
    } catch {
      // not a complete value yet
    }
  }
  throw new Error(`no JSON value for ${col} in ${rest}`);
}

describe('capture: every value class round-trips exactly', () => {
  let fx: CaptureFixture;
  let url: string;

  beforeAll(async () => {
    url = await server.createDatabase('cap_values');
    await sql(
      url,
      `CREATE TYPE mood AS ENUM ('sad', 'happy', 'it''s, "fine"');
       CREATE TABLE vals (
         id int PRIMARY KEY,
         i8 int8, i8max int8, i8min int8,
         n40 numeric, nspecial numeric, nscale numeric(10,2),
         f4 float4, f8 float8,
         tstz timestamptz, ts timestamp, d date, iv interval,
         b bytea,
         a2 int4[], at text[], a8 int8[],
         j json, jb jsonb,
         m mood, ma mood[],
         u uuid, ok bool, t text
       );
       CREATE TABLE toasty (id int PRIMARY KEY, note text, big text);
       ALTER TABLE toasty ALTER COLUMN big SET STORAGE EXTERNAL;
       CREATE TABLE toasty_full (id int PRIMARY KEY, note text, big text);
       ALTER TABLE toasty_full ALTER COLUMN big SET STORAGE EXTERNAL;
       ALTER TABLE toasty_full REPLICA IDENTITY FULL;`,
    );
    const tables = ['public.vals', 'public.toasty', 'public.toasty_full'];
    fx = await startCapture(url, sourceConfig('vals', tables), [consumerConfig('c', 'vals', tables)]);
  });
  afterAll(async () => {
    await fx?.stop();
  });

  it('numbers, times, bytes, arrays, json, enums, uuid, bool and NULL', async () => {
    await sql(
      url,
      `INSERT INTO vals VALUES (
         1,
         9007199254740993, 9223372036854775807, -9223372036854775808,
         '12345678901234567890.12345678901234567890', 'NaN', 19.9,
         'Infinity', '-Infinity',
         '2026-11-23 21:15:01.123456+01', '2026-11-23 20:15:01.5', '2026-11-23',
         '1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds',
         '\\x0aff00'::bytea,
         '{{1,NULL},{3,4}}', ARRAY['say "hi"', 'a,b', NULL, 'NULL', 'back\\slash', '', '{x}'],
         '{9223372036854775807,-9007199254740993,NULL}',
         '{"b": 1,  "a": [12345678901234567890123, 1.000000000000000000001]}',
         '{"z": {"deep": [true, null]}, "a": 12345678901234567890123}',
         'happy', '{sad,"it''s, \\"fine\\""}',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'plain'
       ),
       (2, 0, 1, -1, '-0.000000000000000000000000000000000000001', 'Infinity', 0,
        '-Infinity', 'NaN', '1999-12-31 23:59:59.999999+00', '0001-01-01 00:00:00', '1999-01-08', '-3 days',
        '', '{}', '{}', '{}', '[]', '[]', 'sad', '{}', '00000000-0000-0000-0000-000000000000', false, ''),
       (3, NULL, NULL, NULL, '-Infinity', NULL, NULL, 'NaN', 1.5e-7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, 'null', NULL, NULL, NULL, NULL, NULL)`,
    );
    // Infinite and BC times, and an interval with fractions of a second only.
    await sql(
      url,
      `INSERT INTO vals (id, tstz, ts, d, iv) VALUES (4, 'infinity', '-infinity', '0044-03-15 BC', '0.000001 seconds'),
                                                    (5, '0001-01-01 00:00:00+00 BC', '10000-01-01 00:00:00', 'infinity', '-1 year -2 months')`,
    );
    const [p1, p2, p3, p4inf, p5inf] = await rawPayloads(fx.pool, 'c', 5);
    expect(field(p4inf, 'tstz')).toBe('"infinity"');
    expect(field(p4inf, 'ts')).toBe('"-infinity"');
    expect(field(p4inf, 'd')).toBe('"-000043-03-15"');
    expect(field(p4inf, 'iv')).toBe('"PT0.000001S"');
    expect(field(p5inf, 'tstz')).toBe('"0000-01-01T00:00:00.000000Z"');
    expect(field(p5inf, 'ts')).toBe('"+010000-01-01T00:00:00.000000"');
    expect(field(p5inf, 'd')).toBe('"infinity"');
    expect(field(p5inf, 'iv')).toBe('"P-1Y-2M"');
    for (const p of [p1, p2, p3]) JSON.parse(p);

    // int8: a JSON number with all its digits (above 2^53, the extremes).
    expect(p1).toMatch(/"i8":9007199254740993,/);
    expect(p1).toMatch(/"i8max":9223372036854775807,/);
    expect(p1).toMatch(/"i8min":-9223372036854775808,/);
    // numeric: a string with every digit, its scale, and NaN/±Infinity.
    expect(p1).toMatch(/"n40":"12345678901234567890\.12345678901234567890",/);
    expect(p2).toMatch(/"n40":"-0\.000000000000000000000000000000000000001",/);
    expect(p3).toMatch(/"n40":"-Infinity",/);
    expect(p1).toMatch(/"nspecial":"NaN",/);
    expect(p2).toMatch(/"nspecial":"Infinity",/);
    expect(p1).toMatch(/"nscale":"19\.90",/);
    expect(p2).toMatch(/"nscale":"0\.00",/);
    // float4/float8: ±Infinity and NaN as strings, finite as shortest exact numbers.
    expect(field(p1, 'f4')).toBe('"Infinity"');
    expect(field(p1, 'f8')).toBe('"-Infinity"');
    expect(field(p2, 'f4')).toBe('"-Infinity"');
    expect(field(p2, 'f8')).toBe('"NaN"');
    expect(field(p3, 'f4')).toBe('"NaN"');
    expect(field(p3, 'f8')).toBe('1.5e-07');
    // Times: timestamptz in UTC with 6 digits and Z; timestamp without zone; date; interval ISO-8601.
    expect(field(p1, 'tstz')).toBe('"2026-11-23T20:15:01.123456Z"');
    expect(field(p2, 'tstz')).toBe('"1999-12-31T23:59:59.999999Z"');
    expect(field(p1, 'ts')).toBe('"2026-11-23T20:15:01.500000"');
    expect(field(p2, 'ts')).toBe('"0001-01-01T00:00:00.000000"');
    expect(field(p1, 'd')).toBe('"2026-11-23"');
    expect(field(p1, 'iv')).toBe('"P1Y2M3DT4H5M6.5S"');
    expect(field(p2, 'iv')).toBe('"P-3D"');
    // bytea: base64.
    expect(field(p1, 'b')).toBe('"Cv8A"');
    expect(field(p2, 'b')).toBe('""');
    // Arrays: nested, NULLs, quotes/commas/backslashes, int8 exact, empty.
    expect(field(p1, 'a2')).toBe('[[1,null],[3,4]]');
    expect(JSON.parse(field(p1, 'at'))).toEqual(['say "hi"', 'a,b', null, 'NULL', 'back\\slash', '', '{x}']);
    expect(field(p1, 'a8')).toBe('[9223372036854775807,-9007199254740993,null]');
    expect(field(p2, 'a2')).toBe('[]');
    expect(field(p2, 'at')).toBe('[]');
    // json embedded verbatim (its spacing and big numbers kept); jsonb in Postgres's normal form.
    expect(p1).toContain('"j":{"b": 1,  "a": [12345678901234567890123, 1.000000000000000000001]},');
    expect(p1).toContain('"jb":{"a": 12345678901234567890123, "z": {"deep": [true, null]}},');
    expect(field(p2, 'j')).toBe('[]');
    expect(field(p3, 'jb')).toBe('null');
    // Enum and enum array: strings (quotes and commas inside a label kept).
    expect(field(p1, 'm')).toBe('"happy"');
    expect(JSON.parse(field(p1, 'ma'))).toEqual(['sad', `it's, "fine"`]);
    expect(field(p2, 'ma')).toBe('[]');
    // uuid, bool, text.
    expect(field(p1, 'u')).toBe('"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"');
    expect(field(p1, 'ok')).toBe('true');
    expect(field(p2, 'ok')).toBe('false');
    expect(field(p2, 't')).toBe('""');
    // SQL NULL: null, for every type, and the column is present.
    const r3 = JSON.parse(p3).record;
    for (const c of ['i8', 'i8max', 'nspecial', 'nscale', 'tstz', 'ts', 'd', 'iv', 'b', 'a2', 'at', 'a8', 'j', 'm', 'ma', 'u', 'ok', 't']) {
      expect(r3, c).toHaveProperty(c, null);
    }
    // record_pks: strings.
    expect(JSON.parse(p1).metadata.record_pks).toEqual(['1']);

    // The same values as the previous row of an update (REPLICA IDENTITY FULL
    // sends the old row): `changes` holds them with the same exactness.
    await sql(url, `ALTER TABLE vals REPLICA IDENTITY FULL`);
    await sql(url, `UPDATE vals SET i8 = 9007199254740995, n40 = 1, a8 = '{1}', jb = '{}' WHERE id = 1`);
    const p4 = (await rawPayloads(fx.pool, 'c', 6))[5];
    expect(p4).toMatch(/"record":\{"id":1,"i8":9007199254740995,/);
    expect(p4).toContain(
      '"changes":{"i8":9007199254740993,"n40":"12345678901234567890.12345678901234567890","a8":[9223372036854775807,-9007199254740993,null],' +
        '"jb":{"a": 12345678901234567890123, "z": {"deep": [true, null]}}},',
    );
    await sql(url, `ALTER TABLE vals REPLICA IDENTITY DEFAULT`);
  });

  // A >8 KB value that does not compress, stored out of line (EXTERNAL).
  const BIG = `(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i)`;

  it('unchanged TOAST under default replica identity: left out of record and listed', async () => {
    const before = (await rawPayloads(fx.pool, 'c', 0)).length;
    await sql(url, `INSERT INTO toasty VALUES (1, 'first', ${BIG})`);
    await sql(url, `UPDATE toasty SET note = 'second' WHERE id = 1`);
    // Touching the big column itself sends it again.
    await sql(url, `UPDATE toasty SET big = big || 'x' WHERE id = 1`);
    const [ins, upd, upd2] = (await rawPayloads(fx.pool, 'c', before + 3)).slice(before).map((p) => JSON.parse(p));
    const { rows } = await sql(url, `SELECT ${BIG} AS big, pg_column_size(big) AS stored FROM toasty`);
    expect(rows[0].big.length).toBe(12_800);
    expect(rows[0].stored).toBeGreaterThan(8192); // really out of line, uncompressed

    expect(ins.record).toEqual({ id: 1, note: 'first', big: rows[0].big });
    expect(ins.metadata.unchanged_toast_columns).toBeUndefined();

    expect(upd.action).toBe('update');
    expect(upd.record).toEqual({ id: 1, note: 'second' });
    expect(upd.record).not.toHaveProperty('big');
    expect(upd.metadata.unchanged_toast_columns).toEqual(['big']);
    expect(upd.changes).toEqual({});

    expect(upd2.record).toEqual({ id: 1, note: 'second', big: rows[0].big + 'x' });
    expect(upd2.metadata.unchanged_toast_columns).toBeUndefined();
  });

  it('unchanged TOAST under REPLICA IDENTITY FULL: present with its full value, not listed', async () => {
    const before = (await rawPayloads(fx.pool, 'c', 0)).length;
    await sql(url, `INSERT INTO toasty_full VALUES (1, 'first', ${BIG})`);
    await sql(url, `UPDATE toasty_full SET note = 'second' WHERE id = 1`);
    await sql(url, `DELETE FROM toasty_full WHERE id = 1`);
    const [, upd, del] = (await rawPayloads(fx.pool, 'c', before + 3)).slice(before).map((p) => JSON.parse(p));
    const { rows } = await sql(url, `SELECT ${BIG} AS big`);
    expect(upd.record).toEqual({ id: 1, note: 'second', big: rows[0].big });
    expect(upd.metadata.unchanged_toast_columns).toBeUndefined();
    // Only the column that changed, with its previous value (the TOAST one did not change).
    expect(upd.changes).toEqual({ note: 'first' });
    expect(del.record).toEqual({ id: 1, note: 'second', big: rows[0].big });
    expect(del.metadata.unchanged_toast_columns).toBeUndefined();
  });
});
