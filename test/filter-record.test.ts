// Filters over stored payloads: values read digit for digit (an int8 beyond
// 2^53 stays exact), strings decoded, nested values kept as JSON text, and
// changed() from the envelope's changes.
import { describe, expect, it } from 'vitest';
import { compileWhere } from '../src/pipeline/filter/compile.js';
import { payloadRow } from '../src/pipeline/filter/record.js';
import { parseDecimal } from '../src/pipeline/filter/values.js';

const COLUMNS = { id: 'int8', amount: 'numeric', note: 'text', tags: '_text', meta: 'jsonb', at: 'timestamptz', ok: 'bool', ratio: 'float8' };
const payload = (record: string, changes = 'null', action = 'update') =>
  `{"record":${record},"changes":${changes},"action":"${action}","metadata":{"table_schema":"public","table_name":"t","commit_lsn":1,"commit_idx":0}}`;

describe('payloadRow', () => {
  const row = payloadRow(payload(
    '{"id":9007199254740993,"amount":"19.90","note":"it\\"s \\u00fc \\ud83d\\ude00","tags":["a","b"],"meta":{"k":[1,{"x":null}]},"at":"2026-01-01T00:00:00.000000Z","ok":true,"ratio":1e+300,"gone":null}',
    '{"note":"old","amount":"10"}',
  ));

  it('keeps every digit, decodes strings, keeps nested values as JSON text', () => {
    expect(row.action).toBe('update');
    expect(row.value('id')).toBe('9007199254740993');
    expect(row.value('note')).toBe('it"s ü 😀');
    expect(row.value('tags')).toBe('["a","b"]');
    expect(row.value('meta')).toBe('{"k":[1,{"x":null}]}');
    expect(row.value('gone')).toBeNull();
    expect(row.value('absent')).toBeUndefined();
    expect(row.changed('note')).toBe(true);
    expect(row.changed('id')).toBe(false);
  });

  it('feeds filters that compare exactly', () => {
    const t = (expr: string) => compileWhere(expr, COLUMNS).test(row);
    expect(t('id = 9007199254740993')).toBe(true);
    expect(t('id = 9007199254740992')).toBe(false);
    expect(t("amount = 19.9 AND ok AND at >= '2026-01-01' AND ratio > 1e299")).toBe(true);
    expect(t("note LIKE 'it\"s%' AND tags IS NOT NULL AND meta IS NOT NULL")).toBe(true);
    expect(t('changed(amount) AND NOT changed(id)')).toBe(true);
  });

  it('changed() is false for inserts and deletes, NULL when an update carries no changes', () => {
    expect(payloadRow(payload('{"id":1}', 'null', 'insert')).changed('id')).toBe(false);
    expect(payloadRow(payload('{"id":1}', 'null', 'delete')).changed('id')).toBe(false);
    expect(payloadRow(payload('{"id":1}', 'null', 'update')).changed('id')).toBeNull();
  });

  it('refuses text that is not an envelope', () => {
    expect(() => payloadRow('{"record":{"id":1')).toThrow(SyntaxError);
  });
});

describe('parseDecimal', () => {
  it('reads plain numerics as the general reader does (a leading space takes the general way)', () => {
    const texts = ['0', '-0', '+0', '0.000', '00012.3400', '-12.5', '+7', '.5', '5.', '-.05', '0.05', '123456789012345678901234567890.123456789',
      '1000', '10.0', '-000.0001000', '9'.repeat(40)];
    for (const t of texts) expect(parseDecimal(t), t).toEqual(parseDecimal(` ${t}`));
    expect(parseDecimal('00012.3400')).toEqual({ special: null, negative: false, int: '12', frac: '34' });
    expect(parseDecimal('-0')).toEqual({ special: null, negative: false, int: '', frac: '' });
    for (const bad of ['.', '-', '+', '', '1.2.3', '--1', '1e', '1-']) expect(() => parseDecimal(bad), bad).toThrow(/invalid input syntax for type numeric/);
    expect(parseDecimal('1.5e3')).toEqual({ special: null, negative: false, int: '1500', frac: '' });
    expect(parseDecimal('NaN').special).toBe('nan');
  });
});
