// encodeValue on literal Postgres text output (the formats the replication
// session produces: DateStyle ISO, TimeZone UTC, IntervalStyle iso_8601,
// extra_float_digits 3). Every result must be valid JSON and is checked as text.
import { describe, expect, it } from 'vitest';
import { builtinType, encodeValue, isJsonNumber, isoDate, isoTimestamp, type TypeInfo } from '../src/capture/values.js';

const MOOD: TypeInfo = { oid: 90001, name: 'mood', category: 'E', elemOid: 0, delim: ',' };
const MOOD_ARR: TypeInfo = { oid: 90002, name: '_mood', category: 'A', elemOid: 90001, delim: ',' };
const user = new Map([[MOOD.oid, MOOD], [MOOD_ARR.oid, MOOD_ARR]]);
const lookup = (oid: number) => builtinType(oid) ?? user.get(oid);

function enc(text: string | null, oid: number): string {
  const type = lookup(oid);
  if (!type) throw new Error(`no type ${oid}`);
  const out = encodeValue(text, type, lookup);
  JSON.parse(out); // must always be valid JSON
  return out;
}

describe('scalars', () => {
  it('null is null for every type', () => {
    for (const oid of [16, 20, 25, 1184, 1700, 3802, 1007]) expect(enc(null, oid)).toBe('null');
  });

  it('bool → true/false', () => {
    expect(enc('t', 16)).toBe('true');
    expect(enc('f', 16)).toBe('false');
  });

  it('integers → numbers with every digit; int8 never goes through a double', () => {
    expect(enc('42', 23)).toBe('42');
    expect(enc('-32768', 21)).toBe('-32768');
    expect(enc('4294967295', 26)).toBe('4294967295');
    expect(enc('9007199254740993', 20)).toBe('9007199254740993');
    expect(enc('-9223372036854775808', 20)).toBe('-9223372036854775808');
    expect(enc('0', 20)).toBe('0');
  });

  it('floats → JSON numbers, NaN/±Infinity → strings', () => {
    expect(enc('0.1', 701)).toBe('0.1');
    expect(enc('1e+100', 701)).toBe('1e+100');
    expect(enc('1.5e-07', 701)).toBe('1.5e-07');
    expect(enc('-0', 701)).toBe('-0');
    expect(enc('3.4028235e+38', 700)).toBe('3.4028235e+38');
    expect(enc('0.30000000000000004', 701)).toBe('0.30000000000000004');
    expect(enc('NaN', 701)).toBe('"NaN"');
    expect(enc('Infinity', 700)).toBe('"Infinity"');
    expect(enc('-Infinity', 701)).toBe('"-Infinity"');
    // Formats Postgres does not print are still made valid JSON numbers.
    expect(enc('.5', 701)).toBe('0.5');
    expect(enc('1.', 701)).toBe('1');
  });

  it('numeric → string with the exact digits and scale', () => {
    expect(enc('19.90', 1700)).toBe('"19.90"');
    expect(enc('1234567890123456789012345678901234567890', 1700)).toBe('"1234567890123456789012345678901234567890"');
    expect(enc('-0.000000000000000000000000000000000000001', 1700)).toBe('"-0.000000000000000000000000000000000000001"');
    expect(enc('NaN', 1700)).toBe('"NaN"');
    expect(enc('Infinity', 1700)).toBe('"Infinity"');
    expect(enc('-Infinity', 1700)).toBe('"-Infinity"');
  });

  it('json/jsonb → embedded as-is (big numbers stay exact)', () => {
    expect(enc('{"a": 1, "b": [true, null]}', 3802)).toBe('{"a": 1, "b": [true, null]}');
    expect(enc('{"n": 123456789012345678901234567890}', 3802)).toBe('{"n": 123456789012345678901234567890}');
    expect(enc(' [1,\n 2] ', 114)).toBe(' [1,\n 2] ');
    expect(enc('"s"', 3802)).toBe('"s"');
    expect(enc('null', 3802)).toBe('null'); // JSON null inside a non-null jsonb value
  });

  it('strings: text, uuid, enum, network, money, interval, time, xml, unknown', () => {
    expect(enc('he said "hi"\\\n\t', 25)).toBe('"he said \\"hi\\"\\\\\\n\\t"');
    expect(enc('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 2950)).toBe('"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"');
    expect(enc('happy', MOOD.oid)).toBe('"happy"');
    expect(enc('192.168.0.1', 869)).toBe('"192.168.0.1"');
    expect(enc('10.0.0.0/8', 650)).toBe('"10.0.0.0/8"');
    expect(enc('08:00:2b:01:02:03', 829)).toBe('"08:00:2b:01:02:03"');
    expect(enc('$1,234.50', 790)).toBe('"$1,234.50"');
    expect(enc('P1Y2M3DT4H5M6.5S', 1186)).toBe('"P1Y2M3DT4H5M6.5S"');
    expect(enc('PT0S', 1186)).toBe('"PT0S"');
    expect(enc('P-1Y-2M3D', 1186)).toBe('"P-1Y-2M3D"');
    expect(enc('20:15:01.123456', 1083)).toBe('"20:15:01.123456"');
    expect(enc('20:15:01+05:30', 1266)).toBe('"20:15:01+05:30"');
    expect(enc('<a>x</a>', 142)).toBe('"<a>x</a>"');
    expect(enc('[1,5)', 3904)).toBe('"[1,5)"');
    const unknown: TypeInfo = { oid: 123456, name: 'x', category: 'U', elemOid: 0, delim: ',' };
    expect(encodeValue('\u2028 \ud800', unknown, lookup)).toBe('"\u2028 \\ud800"');
  });

  it('an unknown type with a numeric category is still a string (its output format is unknown)', () => {
    const t: TypeInfo = { oid: 123457, name: 'uint8', category: 'N', elemOid: 0, delim: ',' };
    expect(encodeValue('18446744073709551615', t, lookup)).toBe('"18446744073709551615"');
  });
});

describe('dates and times', () => {
  it('timestamptz → UTC ISO-8601 with exactly 6 fraction digits and Z', () => {
    expect(enc('2026-11-23 20:15:01.123456+00', 1184)).toBe('"2026-11-23T20:15:01.123456Z"');
    expect(enc('2026-11-23 20:15:01+00', 1184)).toBe('"2026-11-23T20:15:01.000000Z"');
    expect(enc('2026-11-23 20:15:01.1+00', 1184)).toBe('"2026-11-23T20:15:01.100000Z"');
    expect(enc('2026-11-23 20:15:01.12+00', 1184)).toBe('"2026-11-23T20:15:01.120000Z"');
    expect(enc('2026-11-23 20:15:01.123+00', 1184)).toBe('"2026-11-23T20:15:01.123000Z"');
    expect(enc('2026-11-23 20:15:01.1234+00', 1184)).toBe('"2026-11-23T20:15:01.123400Z"');
    expect(enc('2026-11-23 20:15:01.12345+00', 1184)).toBe('"2026-11-23T20:15:01.123450Z"');
    expect(enc('infinity', 1184)).toBe('"infinity"');
    expect(enc('-infinity', 1184)).toBe('"-infinity"');
  });

  it('timestamptz with another offset is converted to UTC, across day/month/year/leap boundaries', () => {
    expect(isoTimestamp('2026-11-23 01:15:01.5+05:30', true)).toBe('2026-11-22T19:45:01.500000Z');
    expect(isoTimestamp('2026-12-31 22:00:00-03', true)).toBe('2027-01-01T01:00:00.000000Z');
    expect(isoTimestamp('2024-03-01 00:30:00+01', true)).toBe('2024-02-29T23:30:00.000000Z');
    expect(isoTimestamp('1850-01-01 00:00:00+05:53:28', true)).toBe('1849-12-31T18:06:32.000000Z');
    expect(isoTimestamp('0001-01-01 00:30:00+01', true)).toBe('0000-12-31T23:30:00.000000Z');
  });

  it('BC and big years use ISO-8601 expanded astronomical years', () => {
    expect(enc('0044-03-15 12:00:00+00 BC', 1184)).toBe('"-000043-03-15T12:00:00.000000Z"');
    expect(enc('0001-12-31 23:59:59.999999+00 BC', 1184)).toBe('"0000-12-31T23:59:59.999999Z"');
    expect(enc('4714-11-24 00:00:00+00 BC', 1184)).toBe('"-004713-11-24T00:00:00.000000Z"');
    expect(enc('294276-12-31 23:59:59.999999+00', 1184)).toBe('"+294276-12-31T23:59:59.999999Z"');
    expect(enc('10000-01-01 00:00:00', 1114)).toBe('"+010000-01-01T00:00:00.000000"');
    // JS reads the expanded form (within its range).
    expect(new Date('-000043-03-15T12:00:00.000000Z').getUTCFullYear()).toBe(-43);
  });

  it('timestamp → ISO-8601 without zone', () => {
    expect(enc('2026-11-23 20:15:01.123456', 1114)).toBe('"2026-11-23T20:15:01.123456"');
    expect(enc('2026-11-23 20:15:01', 1114)).toBe('"2026-11-23T20:15:01.000000"');
    expect(enc('0044-03-15 12:00:00.5 BC', 1114)).toBe('"-000043-03-15T12:00:00.500000"');
    expect(enc('infinity', 1114)).toBe('"infinity"');
  });

  it('date → "YYYY-MM-DD"', () => {
    expect(enc('2026-11-23', 1082)).toBe('"2026-11-23"');
    expect(enc('0044-03-15 BC', 1082)).toBe('"-000043-03-15"');
    expect(enc('5874897-12-31', 1082)).toBe('"+5874897-12-31"');
    expect(enc('-infinity', 1082)).toBe('"-infinity"');
    expect(isoDate('0001-01-01 BC')).toBe('0000-01-01');
  });

  it('a format it does not recognise becomes the raw string, never a guess', () => {
    expect(enc('Mon Nov 23 20:15:01.123456 2026 UTC', 1184)).toBe('"Mon Nov 23 20:15:01.123456 2026 UTC"');
    expect(enc('11/23/2026', 1082)).toBe('"11/23/2026"');
    expect(() => isoTimestamp('11/23/2026 20:15', true)).toThrow(RangeError);
  });
});

describe('bytea', () => {
  it('hex output → base64', () => {
    expect(enc('\\x0aff', 17)).toBe('"Cv8="');
    expect(enc('\\x', 17)).toBe('""');
    expect(enc('\\x68656c6c6f', 17)).toBe('"aGVsbG8="');
  });

  it('escape output (bytea_output=escape) → base64 too', () => {
    expect(enc('hello', 17)).toBe('"aGVsbG8="');
    expect(enc('\\012\\377\\\\', 17)).toBe(JSON.stringify(Buffer.from([10, 255, 92]).toString('base64')));
  });
});

describe('arrays', () => {
  it('int arrays, int8 exact, NULLs, empty', () => {
    expect(enc('{1,2,3}', 1007)).toBe('[1,2,3]');
    expect(enc('{9007199254740993,NULL,-1}', 1016)).toBe('[9007199254740993,null,-1]');
    expect(enc('{}', 1007)).toBe('[]');
    expect(enc('{NULL}', 1007)).toBe('[null]');
  });

  it('multi-dimensional, with bounds decoration dropped', () => {
    expect(enc('{{1,2},{3,4}}', 1007)).toBe('[[1,2],[3,4]]');
    expect(enc('{{{1},{2}},{{3},{4}}}', 1005)).toBe('[[[1],[2]],[[3],[4]]]');
    expect(enc('[0:1]={7,8}', 1007)).toBe('[7,8]');
    expect(enc('[0:1][1:2]={{1,2},{3,4}}', 1007)).toBe('[[1,2],[3,4]]');
  });

  it('text arrays: quoting, escapes, "NULL" as a string, empty strings', () => {
    expect(enc('{a,"b,c","d\\"e","f\\\\g","{h}",NULL,"NULL","",null}', 1009)).toBe(
      '["a","b,c","d\\"e","f\\\\g","{h}",null,"NULL","",null]',
    );
    expect(enc('{"  padded  ",x y}', 1015)).toBe('["  padded  ","x y"]');
    expect(enc('{{a,b},{"c}",d}}', 1009)).toBe('[["a","b"],["c}","d"]]');
    expect(enc('{"é ✓ 😀",\'q\'}', 1009)).toBe('["é ✓ 😀","\'q\'"]');
  });

  it('elements encoded by their own type', () => {
    expect(enc('{t,f,NULL}', 1000)).toBe('[true,false,null]');
    expect(enc('{19.90,NaN,1E+3}', 1231)).toBe('["19.90","NaN","1E+3"]');
    expect(enc('{1.5,NaN,-Infinity,1e+100}', 1022)).toBe('[1.5,"NaN","-Infinity",1e+100]');
    expect(enc('{"{\\"a\\": 1}","[1, 2]",NULL,"\\"s\\""}', 3807)).toBe('[{"a": 1},[1, 2],null,"s"]');
    expect(enc('{"{\\"n\\":12345678901234567890}"}', 199)).toBe('[{"n":12345678901234567890}]');
    expect(enc('{"2026-11-23 20:15:01.5+00",infinity}', 1185)).toBe('["2026-11-23T20:15:01.500000Z","infinity"]');
    expect(enc('{"2026-11-23 20:15:01"}', 1115)).toBe('["2026-11-23T20:15:01.000000"]');
    expect(enc('{2026-11-23,"0044-03-15 BC"}', 1182)).toBe('["2026-11-23","-000043-03-15"]');
    expect(enc('{P1D,PT0S}', 1187)).toBe('["P1D","PT0S"]');
    expect(enc('{"\\\\x0aff","\\\\x"}', 1001)).toBe('["Cv8=",""]');
    expect(enc('{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 2951)).toBe('["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]');
    expect(enc('{"a  ",b}', 1014)).toBe('["a  ","b"]');
    expect(enc('{192.168.0.1,::1/128}', 1041)).toBe('["192.168.0.1","::1/128"]');
  });

  it('enum arrays', () => {
    expect(enc('{happy,"sad, really",NULL}', MOOD_ARR.oid)).toBe('["happy","sad, really",null]');
  });

  it('uses the element type\'s delimiter (box uses ;)', () => {
    expect(enc('{(1,1),(0,0);(3,3),(2,2)}', 1020)).toBe('["(1,1),(0,0)","(3,3),(2,2)"]');
  });

  it('tolerates whitespace array_in accepts and unquoted backslash escapes', () => {
    expect(enc(' { 1 , 2 } ', 1007)).toBe('[1,2]');
    expect(enc('{ a b , c\\,d ,N\\ULL}', 1009)).toBe('["a b","c,d","NULL"]');
  });

  it('a malformed literal becomes the raw string instead of invalid JSON', () => {
    for (const bad of ['{1,,2}', '{1,2', '{1}}', '1 2', '{1,}', '{"a}', '[1:2]{1,2}', '{{1},2}x']) {
      expect(enc(bad, 1007)).toBe(JSON.stringify(bad));
    }
  });
});

describe('helpers', () => {
  it('isJsonNumber follows the JSON grammar', () => {
    for (const ok of ['0', '-0', '1', '10', '1.5', '1e5', '1E+5', '1.5e-07', '-12.0e0']) expect(isJsonNumber(ok)).toBe(true);
    for (const no of ['', '-', '01', '+1', '.5', '1.', '1e', '1e+', 'NaN', 'Infinity', '0x10', '1 ', ' 1']) {
      expect(isJsonNumber(no)).toBe(false);
    }
  });

  it('builtin table covers the documented OIDs', () => {
    const oids = [16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 700, 701, 1042, 1043, 1082, 1083, 1114, 1184, 1186,
      1266, 1700, 2950, 3802, 869, 650, 829, 790, 1000, 1001, 1005, 1007, 1016, 1009, 1015, 1021, 1022, 1231, 1182,
      1115, 1185, 1187, 2951, 199, 3807, 1014, 1041];
    for (const oid of oids) expect(builtinType(oid)?.oid).toBe(oid);
    expect(builtinType(1016)).toMatchObject({ category: 'A', elemOid: 20 });
    expect(builtinType(603)?.delim).toBe(';');
    expect(builtinType(424242)).toBeUndefined();
  });
});

describe('never invalid JSON', () => {
  it('garbage in date/time/number/bool/bytea/array types still encodes to valid JSON', () => {
    const junk = ['', ' ', '"', '\\', '1"34-56-78', '2026-1"-23', '2026-11-23 2":15:01+00', '2026-11-23 20:15:01.1"+00',
      '2026-11-23 20:15:01+0"', '{"\\"}', '\\x0g', '\\x0', '\\9', 'tru', '1e', '-', '{{}', '{a,{b}}', '[1:2]={"a"', '\u0000'];
    for (const oid of [16, 17, 20, 21, 23, 26, 700, 701, 1082, 1114, 1184, 1700, 1007, 1009, 1016, 1185, 1001]) {
      for (const s of junk) {
        const out = encodeValue(s, builtinType(oid)!, builtinType);
        expect(() => JSON.parse(out), `${oid} ${JSON.stringify(s)} → ${out}`).not.toThrow();
      }
    }
  });
});
