// A function transform is handed only the parts of the message it reads
// (src/pipeline/transform/reads.ts, project.ts). That is only sound if no
// function can tell: each function below, and a few hundred generated ones,
// runs in the real sandbox on the cut message and, wrapped so that it must
// get the whole one, on the whole message, and the two outputs must be the
// same for every message. SEED=<n> repeats a generated run; a failure prints
// the seed.
import { afterAll, describe, expect, it } from 'vitest';
import { compileTransform, type Transform } from '../src/pipeline/transform/compile.js';
import { projector } from '../src/pipeline/transform/project.js';
import { messageReads, type ReadTree } from '../src/pipeline/transform/reads.js';
import { createSandbox } from '../src/pipeline/transform/sandbox.mjs';
import { rng } from './helpers/rng.js';

const opened: Transform[] = [];
afterAll(async () => {
  for (const t of opened) await t.close();
});
function compile(source: string): Transform {
  const t = compileTransform({ function: source });
  opened.push(t);
  return t;
}

/** A tree as nested plain objects, for readable expectations: true for a value read whole. */
function shape(t: ReadTree | null): unknown {
  if (t === null) return null;
  if (t.whole) return true;
  return Object.fromEntries([...t.children].map(([k, c]) => [k, shape(c)]));
}

describe('what a function reads', () => {
  it('fixed property reads keep their paths, methods keep their receivers', () => {
    expect(shape(messageReads('(m) => ({ id: m.record.id, at: m.metadata.commit_timestamp, kind: m.action })'))).toEqual({
      record: { id: true },
      metadata: { commit_timestamp: true },
      action: true,
    });
    expect(shape(messageReads('(m) => m["record"][0] + m?.record?.amount'))).toEqual({ record: { 0: true, amount: true } });
    expect(shape(messageReads("(m) => m.record.hasOwnProperty('x') && m.record.id.toFixed(2)"))).toEqual({ record: true });
    expect(shape(messageReads('(m) => m.record.note.length'))).toEqual({ record: { note: { length: true } } });
    expect(shape(messageReads('({ record: { id, status = "new" }, action }) => [id, status, action]'))).toEqual({
      record: { id: true, status: true },
      action: true,
    });
    expect(shape(messageReads('({ record: { id, ...others } }) => others'))).toEqual({ record: true });
    expect(shape(messageReads('() => 1'))).toEqual({});
    expect(shape(messageReads('function (message) { return message.record }'))).toEqual({ record: true });
  });

  it('any other use of the message keeps all of it', () => {
    for (const source of [
      '(m) => m',
      '(m) => JSON.stringify(m)',
      '(m) => Object.keys(m)',
      '(m) => ({ ...m })',
      '(m) => m[m.action]',
      '(m) => typeof m',
      '(m) => { for (const k in m) return k }',
      '(m) => m.toString()',
      'function (m) { return arguments[0].record }',
      "(m) => eval('m.record')",
      '(m) => { with (m) { return record } }',
      '({ record, ...rest }) => rest',
      '({ [`record`]: r }) => r',
      '([first]) => first',
      '(m) => [1].map((m) => m)',
    ]) {
      expect(messageReads(source), source).toBeNull();
    }
  });

  it('cuts the text to the values read, as they stand', () => {
    const cut = projector(messageReads('(m) => [m.record.id, m.record.tags.length, m.changes.status, m.metadata.missing]')!);
    const text = '{"record":{"id":9007199254740993,"tags":[1,2],"note":"x"},"changes":null,"action":"update","metadata":{"a":1}}';
    expect(cut(text)).toBe('{"record":{"id":9007199254740993,"tags":[1,2]},"changes":null,"metadata":{}}');
    // Not an object: handed over as it is, for the sandbox to refuse.
    expect(cut('not json')).toBe('not json');
    // A key repeated below the root is kept each time: JSON.parse takes the last, of the cut as of the whole.
    expect(cut('{"record":{"id":1,"id":2},"changes":{"status":"a"}}')).toBe('{"record":{"id":1,"id":2},"changes":{"status":"a"}}');
    expect(projector(messageReads('() => 1')!)(text)).toBe('{}');
  });
});

const served = ',"consumer":{"id":"c1","name":"orders-hook","annotations":{"team":"a"}},"database":{"id":"s1","name":"main"}';
// Stored payloads (the served metadata comes apart): inserts, an update with
// changes, a delete, awkward keys and values.
const stored = [
  {
    record: { id: 1, group: 'g1', status: 'paid', amount: '19.90', note: 'an order', tags: ['a', 'b'] },
    changes: null,
    action: 'insert',
    metadata: { table_schema: 'public', table_name: 'orders', commit_timestamp: '2026-01-01T00:00:00.000000Z', commit_lsn: 1, commit_idx: 0, record_pks: ['1'], transaction_annotations: null },
  },
  {
    record: { id: 2, status: 'shipped', amount: '5', note: null, tags: [] },
    changes: { status: 'paid', note: 'was here' },
    action: 'update',
    metadata: { table_schema: 'public', table_name: 'orders', commit_timestamp: '2026-01-02T00:00:00Z', commit_lsn: 2, commit_idx: 1, record_pks: ['2'], transaction_annotations: { by: 'ops' } },
  },
  { record: { id: 3 }, changes: null, action: 'delete', metadata: { table_schema: 'public', table_name: 'orders', transaction_annotations: null } },
].map((m) => JSON.stringify(m));
// Raw texts JSON.stringify cannot make: an int8 past 2^53, a numeric's digits, an escaped key, an own "__proto__", a repeated key.
stored.push(
  '{"record":{"id":9007199254740993,"amount":1.50000000000000000000000000001,"quo\\"te":"q","ünï":"u","__proto__":{"x":1},"doc":{"a":{"b":[1,{"c":null}]}}},"changes":null,"action":"insert","metadata":{"table_name":"t","record_pks":["9007199254740993"],"transaction_annotations":null}}',
  '{"record":{"id":1,"status":"a","id":2,"doc":{"a":{"b":1},"a":{"c":2}}},"changes":null,"action":"insert","metadata":{"table_name":"t","transaction_annotations":null}}',
);

const FUNCTIONS = [
  '(m) => ({ id: m.record.id, status: m.record.status, amount: m.record.amount, at: m.metadata.commit_timestamp, kind: m.action })',
  "(m) => [m.record.hasOwnProperty('note'), 'note' in m.record, m.record.note === undefined]",
  "(m) => m.record.hasOwnProperty('note')",
  "(m) => [m.metadata.propertyIsEnumerable('table_name'), m.record.id.toFixed(2)]",
  '(m) => [m.record.note?.length, m.record.tags?.length, m.metadata.record_pks?.length]',
  "(m) => m.changes?.status ?? 'none'",
  '({ record: { id, status = "none" }, action, metadata: { consumer } }) => ({ id, status, action, who: consumer.name })',
  '({ record, ...rest }) => Object.keys(rest)',
  '(m) => { const r = m.record; return [r.id, Object.keys(r)] }',
  "(m) => m['record']['amount']",
  '(m) => [String(m.record.id), m.record.id === 9007199254740993]',
  '(m) => [m.record.__proto__ === Object.prototype, m.record.constructor === Object, Object.getPrototypeOf(m.record) === Object.prototype]',
  '(m) => [m.record.tags?.[1], m.record.doc?.a.b[1], m.record.doc?.a?.b?.length]',
  '(m) => { m.record.extra = 1; return m.record }',
  '(m) => [m.record["quo\\"te"], m.record.ünï]',
  '(m) => [m.metadata.consumer.name, m.metadata.database, m.metadata.transaction_annotations]',
  '(m) => m.metadata',
  '(m, extra) => [m.action, extra]',
  '() => 1',
  '(m = {}) => m.action',
  '(m) => [1, 2].map((m) => m * 2).concat(m.record.id)',
  '(m) => m.record.toString()',
  '(m) => { for (const k in m.record) return k; return null }',
  "(m) => { 'use strict'; try { m.record.id = 5; return m.record.id } catch (e) { return e.name } }",
  '(m) => m.changes.status',
];

describe('a cut message is the same message to the function', () => {
  it('every function gives the same output (or error) on the cut message as on the whole one', async () => {
    for (const source of FUNCTIONS) {
      const cut = compile(source);
      // Passed on as an argument, the message must go in whole (the wrapper reads nothing itself).
      const whole = compile(`(message) => (${source})(message)`);
      expect(messageReads(`(message) => (${source})(message)`), source).toBeNull();
      const [a, b] = await Promise.all([cut.apply(stored, served), whole.apply(stored, served)]);
      expect(a, source).toEqual(b);
    }
  });

  it('the function gets less text: the sandbox is handed only what it reads', () => {
    const reads = messageReads(FUNCTIONS[0]);
    expect(reads).not.toBeNull();
    const cut = projector(reads!);
    expect(cut(stored[0])).toBe('{"record":{"id":1,"status":"paid","amount":"19.90"},"action":"insert","metadata":{"commit_timestamp":"2026-01-01T00:00:00.000000Z"}}');
    expect(cut(stored[0]).length).toBeLessThan(stored[0].length / 2);
  });
});

// Keys of the stored messages above, and some they do not have.
const KEYS = ['record', 'changes', 'action', 'metadata', 'id', 'status', 'note', 'tags', 'doc', 'a', 'b', 'c', '0', '1', 'length',
  'consumer', 'name', 'table_name', 'record_pks', 'transaction_annotations', '__proto__', 'constructor', 'missing', 'quo"te', 'ünï'];
const IDENTIFIER = /^[A-Za-z_$\u00c0-\uffff][\w$\u00c0-\uffff]*$/;

/** A function of random reads and uses of the message (see the header). */
function generatedFunction(r: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const path = (): string => {
    let out = '';
    for (let n = 1 + Math.floor(r() * 3); n > 0; n--) {
      const key = r() < 0.5 ? pick(KEYS.slice(0, 4)) : pick(KEYS);
      const optional = r() < 0.4 ? '?.' : '';
      if (IDENTIFIER.test(key) && r() < 0.7) out += `${optional || '.'}${key}`;
      else out += `${optional}[${/^\d+$/.test(key) && r() < 0.5 ? key : JSON.stringify(key)}]`;
    }
    return out;
  };
  const uses = [
    (p: string) => `m${p}`,
    (p: string) => `m${p}?.hasOwnProperty?.('id')`,
    (p: string) => `m${p}?.hasOwnProperty?.('status')`,
    (p: string) => `m${p}?.propertyIsEnumerable?.('commit_lsn')`,
    (p: string) => `Object.keys(Object(m${p}))`,
    (p: string) => `JSON.stringify(m${p})`,
    (p: string) => `typeof m${p}`,
    (p: string) => `m${p}?.length`,
    (p: string) => `String(m${p})`,
    (p: string) => `'id' in Object(m${p})`,
    (p: string) => `m${p}?.toString?.()`,
    (p: string) => `(() => { const x = m${p}; return x === null || typeof x !== 'object' ? x : Object.entries(x).length })()`,
    (p: string) => `(() => { try { m${p}.extra = 1; return m${p}.extra } catch (e) { return e.name } })()`,
    (p: string) => `m${p}`,
    (p: string) => `m${p}`,
  ];
  if (r() < 0.15) {
    // Destructured, with fixed keys (and now and then a rest element).
    const keys = ['record', 'action', 'metadata'].filter(() => r() < 0.7);
    const inner = r() < 0.5 ? `record: { id, status${r() < 0.2 ? ', ...rest' : ''} }` : 'record';
    const names = [inner, ...keys.filter((k) => k !== 'record')];
    const body = ['typeof record', 'action', 'metadata?.consumer?.name', 'typeof rest'].filter((x) => names.join().includes(x.split(/[?.]/)[0].replace('typeof ', '')));
    return `({ ${names.join(', ')} }) => [${[...body, inner.includes('id') ? 'id, status' : 'record?.id'].join(', ')}]`;
  }
  const count = 1 + Math.floor(r() * 3);
  return `(m) => [${Array.from({ length: count }, () => pick(uses)(path())).join(', ')}]`;
}

describe('generated functions', () => {
  it('give the same output on the cut message as on the whole one', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    const r = rng(seed);
    let cutSome = 0;
    for (let i = 0; i < 200; i++) {
      const source = generatedFunction(r);
      const reads = messageReads(source);
      const cut = reads ? projector(reads) : (m: string) => m;
      if (reads) cutSome++;
      const [a, b] = await Promise.all([
        createSandbox({ source, timeoutMs: 100, memoryMb: 16 }),
        createSandbox({ source: `(message) => (${source})(message)`, timeoutMs: 100, memoryMb: 16 }),
      ]);
      try {
        const got = a.run(stored.map(cut).join('\n'), stored.length, served);
        const want = b.run(stored.join('\n'), stored.length, served);
        if (got !== want) throw new Error(`seed ${seed}, function ${i}: ${source}\n  cut:   ${got}\n  whole: ${want}`);
      } finally {
        a.dispose();
        b.dispose();
      }
    }
    // The generator must exercise the cut, not only the whole-message fallback.
    expect(cutSome, `seed ${seed}`).toBeGreaterThan(40);
  }, 60_000);
});
