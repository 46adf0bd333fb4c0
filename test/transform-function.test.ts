// Function transforms in the real sandbox (QuickJS on a worker thread): the
// output, one result per message whatever the others do, compile-time
// refusals with the user's line and column, and escapes that end as an error
// result with the next call still working.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { compileTransform, TransformError, tryTransform, type Transform, type TransformResult } from '../src/pipeline/transform/compile.js';
import { SandboxWorker } from '../src/pipeline/transform/sandbox-worker.js';

const message = (id: number) =>
  JSON.stringify({
    record: { id, amount: '12.50', status: 'paid' },
    changes: null,
    action: 'insert',
    metadata: { table_schema: 'public', table_name: 'orders', commit_idx: id, consumer: { id: 'c1', name: 'orders-hook', annotations: {} } },
  });

const opened: Transform[] = [];
function compile(source: string, options: { timeout_ms?: number; memory_mb?: number } = {}): Transform {
  const t = compileTransform({ function: source, ...options });
  opened.push(t);
  return t;
}
afterAll(async () => {
  for (const t of opened) await t.close();
});

const outputs = (results: TransformResult[]) => results.map((r) => (r.ok ? JSON.parse(r.json) : { error: r.error }));

describe('function transform', () => {
  it('served metadata given apart is the same message to the function, and no call changes the next one\'s', async () => {
    const stored = (id: number) => JSON.stringify({ record: { id }, changes: null, action: 'insert', metadata: { table_schema: 'public', table_name: 'orders', transaction_annotations: null } });
    const served = ',"consumer":{"id":"c1","name":"orders-hook","annotations":{"team":{"a":1}}},"database":{"id":"s1","name":"main"}';
    const whole = compile('(m) => m');
    const envelope = stored(1).slice(0, -2) + served + '}}';
    expect((await whole.apply([stored(1)], served))[0]).toEqual({ ok: true, json: envelope });
    // Sloppy-mode writes to the shared objects are ignored; the message's own metadata is its own.
    const meddler = compile(`(m) => {
      const before = m.metadata.consumer.annotations.team.a;
      m.metadata.consumer.annotations.team.a = 99;
      m.metadata.consumer.name = 'changed';
      m.metadata.extra = m.record.id;
      return [before, m.metadata.consumer.name, m.metadata.extra];
    }`);
    expect(outputs(await meddler.apply([stored(1), stored(2)], served))).toEqual([[1, 'orders-hook', 1], [1, 'orders-hook', 2]]);
    // Strict mode says so: an error for that message.
    const strict = compile(`(m) => { 'use strict'; m.metadata.consumer.name = 'x'; return 1; }`);
    expect(outputs(await strict.apply([stored(1)], served))[0].error).toMatch(/the function threw: TypeError/);
    // Paths and templates see the same envelope.
    const path = compileTransform({ path: 'metadata.consumer.annotations.team' });
    expect(await path.apply([stored(1)], served)).toEqual([{ ok: true, json: '{"a":1}' }]);
  });

  it('returns what the function returns, as JSON, for each message in order', async () => {
    const t = compile('(message) => ({ id: message.record.id, total: message.record.amount, who: message.metadata.consumer.name })');
    expect(outputs(await t.apply([message(1), message(2)]))).toEqual([
      { id: 1, total: '12.50', who: 'orders-hook' },
      { id: 2, total: '12.50', who: 'orders-hook' },
    ]);
    const f = compile('function (message) {\n  return [message.action, message.changes];\n}');
    expect(outputs(await f.apply([message(1)]))).toEqual([['insert', null]]);
    expect(await t.apply([])).toEqual([]);
  });

  it('isolates errors per message: message 2 throws, 1 and 3 still succeed', async () => {
    const t = compile('(m) => { if (m.record.id === 2) throw new TypeError("no twos"); return m.record.id }');
    expect(await t.apply([message(1), message(2), message(3)])).toEqual([
      { ok: true, json: '1' },
      { ok: false, error: 'the function threw: TypeError: no twos' },
      { ok: true, json: '3' },
    ]);
  });

  it('refuses results that are not JSON', async () => {
    const cases: Array<[string, RegExp]> = [
      ['(m) => undefined', /returned undefined, which is not JSON/],
      ['(m) => { m.record.id }', /returned undefined/],
      ['(m) => () => 1', /returned a function, which is not JSON/],
      ['(m) => Symbol("s")', /returned a symbol/],
      ['(m) => 10n', /returned a value that is not JSON: TypeError: .*BigInt/],
      ['(m) => { const a = {}; a.self = a; return a }', /returned a value that is not JSON: TypeError: circular reference/],
      ['(m) => { throw "plain" }', /the function threw: it threw "plain"/],
    ];
    for (const [source, reason] of cases) {
      const [result] = await compile(source).apply([message(1)]);
      expect(result.ok, source).toBe(false);
      expect(!result.ok && result.error, source).toMatch(reason);
    }
  });

  it('refuses syntax errors with the line and column in the user source', () => {
    const at = (source: string) => {
      try {
        compileTransform({ function: source });
      } catch (e) {
        expect(e).toBeInstanceOf(TransformError);
        const { message, line, column } = e as TransformError;
        return { message, line, column };
      }
      throw new Error(`compiled: ${source}`);
    };
    expect(at('(m) => m.record +* 2')).toEqual({ message: 'the transform does not compile: Unexpected token (line 1, column 18)', line: 1, column: 18 });
    expect(at('(message) => {\n  return message.record..id\n}')).toEqual({
      message: 'the transform does not compile: Unexpected token (line 2, column 25)',
      line: 2,
      column: 25,
    });
    expect(at('(m) => {\n  return m.record')).toMatchObject({ message: 'the transform does not compile: the source ends too early (line 2, column 18)', line: 2, column: 18 });
  });

  it('refuses sources that are not one function expression', () => {
    for (const source of ['1+1', 'const f = (m) => m; f', 'x => x) ; (globalThis.evil = 1', 'function f(m) { return m } f', 'message.record']) {
      expect(() => compileTransform({ function: source }), source).toThrow(/the transform is not a function|does not compile/);
    }
    expect(() => compileTransform({ function: 'async (m) => m.record' })).toThrow("the transform's function is async");
    expect(() => compileTransform({ function: 'function* (m) { yield m }' })).toThrow('is a generator');
  });

  it('starts its worker from a process run by tsx, as `npm start` runs the gateway', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['node_modules/tsx/dist/cli.mjs', 'test/fixtures/transform-tsx.ts']);
    expect(JSON.parse(stdout)).toEqual({ ok: true, json: '{"doubled":42}' });
  });

  it('tries a transform once on a sample message', async () => {
    expect(await tryTransform({ function: '(m) => m.record.id * 2' }, message(21))).toEqual({ ok: true, json: '42' });
    expect(await tryTransform({ template: { t: 'metadata.table_name' } }, message(1))).toEqual({ ok: true, json: '{"t":"orders"}' });
  });
});

describe('function transform sandbox', () => {
  // Each escape gives an error result; the same transform then serves the next call.
  const escapes: Array<[string, string, RegExp]> = [
    ['process', '(m) => process.env', /ReferenceError: 'process' is not defined/],
    ['require', '(m) => require("fs").readFileSync("/etc/passwd", "utf8")', /ReferenceError: 'require' is not defined/],
    ['import()', '(m) => import("fs")', /returned a Promise/],
    ['Function constructor', '(m) => globalThis.constructor.constructor("return process")()', /ReferenceError: 'process' is not defined/],
    ['infinite loop', '(m) => { while (true) {} }', /ran longer than its limit of 50 ms/],
    ['a loop that catches the interrupt', '(m) => { for (;;) { try { while (true) {} } catch (e) {} finally { while (true) {} } } }', /ran longer than its limit of 50 ms/],
    ['1 GB array', '(m) => new Array(1e9).fill(1)', /ran out of memory \(limit 32 MB\)/],
    ['string doubling', '(m) => { let s = "x"; for (let i = 0; i < 30; i++) s = s + s; return s.length }', /out of memory|string too long/],
    ['deep recursion', '(m) => { const f = (n) => f(n + 1); return f(0) }', /overflowed the stack/],
  ];
  for (const [name, escape, reason] of escapes) {
    it(`refuses ${name}, then carries on`, async () => {
      const source = `(m) => m.record.id === 2 ? (${escape})(m) : m.record.id`;
      const t = compile(source);
      const results = await t.apply([message(1), message(2), message(3)]);
      expect(results[0]).toEqual({ ok: true, json: '1' });
      expect(results[1].ok).toBe(false);
      expect(!results[1].ok && results[1].error).toMatch(reason);
      expect(results[2]).toEqual({ ok: true, json: '3' });
      expect(await t.apply([message(4)])).toEqual([{ ok: true, json: '4' }]);
    });
  }

  it('times out each looping message on its own, and the event loop keeps turning meanwhile', async () => {
    const t = compile('(m) => { if (m.record.id % 2 === 0) while (true) {} return m.record.id }', { timeout_ms: 100 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    const results = await t.apply([1, 2, 3, 4, 5].map(message));
    const elapsed = performance.now() - started;
    clearInterval(timer);
    expect(outputs(results)).toEqual([
      1,
      { error: 'the function ran longer than its limit of 100 ms' },
      3,
      { error: 'the function ran longer than its limit of 100 ms' },
      5,
    ]);
    // Two messages of 100 ms each: the main thread was free all along.
    expect(elapsed).toBeGreaterThanOrEqual(200);
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(elapsed / 10 / 2));
  });

  it('keeps state in the sandbox from reaching the host: globals it sets stay inside', async () => {
    const t = compile('(m) => { globalThis.count = (globalThis.count || 0) + 1; return typeof globalThis.process }');
    expect(outputs(await t.apply([message(1)]))).toEqual(['undefined']);
    expect((globalThis as Record<string, unknown>).count).toBeUndefined();
  });

  it('fails every message of a batch whose worker died, and starts a new one next time', async () => {
    // Message 2 keeps the worker busy for 2 s: the kill below always lands
    // while the batch is running (with a quick function, a loaded machine
    // sometimes finished the batch before the kill).
    const sandbox = new SandboxWorker({
      source: '(m) => { if (m.record.id === 2) { const t = Date.now(); while (Date.now() - t < 2000); } return m.record.id }',
      timeoutMs: 5000,
      memoryMb: 32,
    });
    expect(outputs(await sandbox.run([message(1)]))).toEqual([1]);
    // Killed from outside, as a crash of the thread would end it.
    const worker = (sandbox as unknown as { worker: Worker }).worker;
    const pending = sandbox.run([message(2), message(3)]);
    await worker.terminate();
    const failed = await pending;
    expect(failed).toHaveLength(2);
    expect(failed.every((r) => !r.ok && /sandbox (exited|stopped)/.test(r.error))).toBe(true);
    expect(outputs(await sandbox.run([message(4)]))).toEqual([4]);
    await sandbox.close();
  });

  it('an output over 1 MiB is that message\'s error; the next message is served', async () => {
    const t = compile("(m) => m.record.id === 1 ? 'x'.repeat(2 * 1024 * 1024) : m.record.id", { memory_mb: 64 });
    const out = outputs(await t.apply([message(1), message(2)]));
    expect(out[0].error).toMatch(/returned 2097154 characters of JSON, more than the limit of 1048576/);
    expect(out[1]).toBe(2);
  });

  it('closes idempotently; a closed transform fails its messages', async () => {
    const t = compileTransform({ function: '(m) => 1' });
    await t.close();
    await t.close();
    expect(await t.apply([message(1)])).toEqual([{ ok: false, error: 'the transform was closed', fault: true }]);
  });
});

