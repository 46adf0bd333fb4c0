// Path and template transforms: values copied exactly from the message text
// (an int8's every digit), nested templates, missing paths as null, and the
// specs that are refused with a reason.
import { describe, expect, it } from 'vitest';
import { compileTransform, TransformError, type TransformSpec } from '../src/pipeline/transform/compile.js';

const message = JSON.stringify({
  record: { id: 1234, customer_id: 77, amount: '12.50', status: 'paid', tags: ['a', 'b'] },
  changes: { status: 'pending' },
  action: 'update',
  metadata: {
    table_schema: 'public',
    table_name: 'orders',
    commit_timestamp: '2026-01-01T00:00:00.123000Z',
    commit_lsn: 23923704,
    commit_idx: 3,
    transaction_annotations: null,
    consumer: { id: 'c1', name: 'orders-hook', annotations: { team: 'billing' } },
  },
});

async function run(spec: TransformSpec, messages = [message]): Promise<unknown[]> {
  const transform = compileTransform(spec);
  const results = await transform.apply(messages);
  await transform.close();
  return results.map((r) => (r.ok ? JSON.parse(r.json) : { error: r.error }));
}

describe('path transform', () => {
  it('gives the value at the path', async () => {
    expect(await run({ path: 'record' })).toEqual([JSON.parse(message).record]);
    expect(await run({ path: 'record.id' })).toEqual([1234]);
    expect(await run({ path: 'metadata.table_name' })).toEqual(['orders']);
    expect(await run({ path: 'changes' })).toEqual([{ status: 'pending' }]);
    expect(await run({ path: 'metadata.consumer.annotations.team' })).toEqual(['billing']);
    expect(await run({ path: 'record.tags.1' })).toEqual(['b']);
  });

  it('gives null for a path that leads nowhere', async () => {
    for (const path of ['record.nope', 'nope', 'record.id.x', 'record.tags.2', 'record.tags.01', 'action.length', 'metadata.transaction_annotations.x', 'record.constructor']) {
      expect(await run({ path }), path).toEqual([null]);
    }
  });

  it('copies values as written: every digit of an int8, a float as printed, escapes kept', async () => {
    const text = '{"record":{"dir":"c:\\\\","id":9007199254740993,"ratio":-0,"tiny":1.5e-07,"note":"a\\"b\\u00e9"},"changes":null,"action":"insert","metadata":{}}';
    const [result] = await compileTransform({ template: { id: 'record.id', ratio: 'record.ratio', tiny: 'record.tiny', note: 'record.note' } }).apply([text]);
    expect(result).toEqual({ ok: true, json: '{"id":9007199254740993,"ratio":-0,"tiny":1.5e-07,"note":"a\\"b\\u00e9"}' });
    const [id] = await compileTransform({ path: 'record.id' }).apply([text]);
    expect(id).toEqual({ ok: true, json: '9007199254740993' });
    expect(await run({ path: 'record.dir' }, [text])).toEqual(['c:\\']);
  });

  it('reads keys with escapes, and whitespace between tokens', async () => {
    const text = '{ "record" : { "a\\u0062" : [ 1 , { "x" : true } ] } , "action" : "insert" }';
    expect(await run({ path: 'record.ab.1.x' }, [text])).toEqual([true]);
    expect(await run({ path: 'action' }, [text])).toEqual(['insert']);
  });

  it('fails a message that is not a JSON object, alone', async () => {
    const results = await compileTransform({ path: 'record.id' }).apply([message, '[1]', '{"record":{"id":', message]);
    expect(results.map((r) => r.ok)).toEqual([true, false, false, true]);
    expect(results[1]).toMatchObject({ error: expect.stringMatching(/^the message is not JSON: the message is not a JSON object/) });
  });

  it('refuses empty paths and empty keys', () => {
    for (const path of ['', '.', 'record.', '.record', 'record..id']) {
      expect(() => compileTransform({ path }), path).toThrow(TransformError);
    }
    expect(() => compileTransform({ path: 'record..id' })).toThrow('the path "record..id" has an empty key');
    expect(() => compileTransform({ path: 3 } as never)).toThrow('"path" is a string');
  });
});

describe('template transform', () => {
  it('resolves each leaf, nested objects included, missing paths as null', async () => {
    const spec = {
      template: {
        id: 'record.id',
        kind: 'action',
        at: 'metadata.commit_timestamp',
        who: { name: 'metadata.consumer.name', team: 'metadata.consumer.annotations.team' },
        again: 'record.id',
        whole: 'changes',
        old: 'changes.status',
        missing: 'record.nope',
      },
    };
    expect(await run(spec)).toEqual([
      {
        id: 1234,
        kind: 'update',
        at: '2026-01-01T00:00:00.123000Z',
        who: { name: 'orders-hook', team: 'billing' },
        again: 1234,
        whole: { status: 'pending' },
        old: 'pending',
        missing: null,
      },
    ]);
  });

  it('keeps its keys in order, any key text included', async () => {
    const [result] = await compileTransform({ template: { 'b "quoted"': 'action', a: 'record.id', __proto__x: 'action' } }).apply([message]);
    expect(result).toEqual({ ok: true, json: '{"b \\"quoted\\"":"update","a":1234,"__proto__x":"update"}' });
  });

  it('refuses non-string leaves, empty objects, depth and size beyond the limits', () => {
    const refused: Array<[unknown, RegExp]> = [
      [{ id: 1 }, /template key "id" is a number/],
      [{ a: { b: null } }, /template key "a.b" is null/],
      [{ a: ['record.id'] }, /template key "a" is an array/],
      [{ a: true }, /is a boolean/],
      [{ a: '' }, /the path of template key "a" is empty/],
      [{}, /the template is an empty object/],
      [{ a: {} }, /template key "a" is an empty object/],
      [[], /"template" is an object/],
      ['record', /"template" is an object/],
    ];
    let deep: Record<string, unknown> = { leaf: 'record.id' };
    for (let i = 0; i < 8; i++) deep = { d: deep };
    refused.push([deep, /nests deeper than 8 objects/]);
    refused.push([Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, 'action'])), /more than 100 keys/]);
    for (const [template, reason] of refused) {
      expect(() => compileTransform({ template } as never), JSON.stringify(template)).toThrow(reason);
    }
    let ok: Record<string, unknown> = { leaf: 'record.id' };
    for (let i = 0; i < 7; i++) ok = { d: ok };
    expect(() => compileTransform({ template: ok } as never)).not.toThrow();
  });
});

describe('spec', () => {
  it('has exactly one form, and no unknown fields', () => {
    expect(() => compileTransform({} as never)).toThrow('a transform needs one of "path", "template" or "function"');
    expect(() => compileTransform({ path: 'record', template: { a: 'b' } } as never)).toThrow('not several: "path" and "template"');
    expect(() => compileTransform({ path: 'record', timeout_ms: 5 } as never)).toThrow('a "path" transform does not take "timeout_ms"');
    expect(() => compileTransform(null as never)).toThrow(TransformError);
    expect(() => compileTransform({ function: 'm => m', timeout_ms: 0 })).toThrow('"timeout_ms" is a whole number from 1 to 1000');
    expect(() => compileTransform({ function: 'm => m', memory_mb: 1024 })).toThrow('"memory_mb" is a whole number from 8 to 256');
    expect(() => compileTransform({ function: 'm => m', timeout_ms: 1.5 })).toThrow('"timeout_ms"');
    expect(() => compileTransform({ function: '  ' })).toThrow('"function" is the source');
  });
});
