// The QuickJS side of a function transform, run inside the worker thread
// (worker.mjs). Plain JavaScript importing only packages, so the worker starts
// the same way under tsx, vitest or plain node: no TypeScript loader needed.
//
// QuickJS (compiled to WebAssembly) is a separate interpreter with its own
// heap: the user's function sees the standard language and nothing else (no
// process, require, fs, network or module loader). We give it no host
// functions at all.
//
// Cost: crossing into the VM and back is the expensive part, so a batch
// crosses once: the messages go in as one string (one JSON text a line), a
// loop inside the VM parses, calls and stringifies each with its own
// try/catch, and one string comes back, one result a line: `+<json>` or
// `!<json string of the error>`. JSON text never holds a raw newline, so the
// framing needs no escaping.
//
// Served metadata: a consumer adds the same metadata.consumer and
// metadata.database to every message. Parsing them in every message was a
// third of a function's cost (QuickJS parses JSON at about 30 MB/s), so the
// stored messages come in without them, they are parsed once a batch, and
// every message of the batch gets the same two objects, frozen all the way
// down so that no message's function call can change the next one's. (A copy
// per message was measured: building objects in QuickJS costs more than
// parsing them, 26 µs a message against 24 with no sharing and 18.6 shared.)
//
// Time: the limit is per message. The in-VM loop records the index of the
// message it is on in an object only the runner can reach; QuickJS calls our
// interrupt handler every few thousand instructions (about every 0.2 ms of a
// busy loop), which notes when the index last changed and interrupts once the
// same message has run past the limit. A per-message host call to reset a
// deadline would be exact to the microsecond but costs ~3.5 µs a message.
// An interrupt cannot be caught inside the VM: the batch call fails, we read
// back the results before it, record the timeout, and resume with the next
// message on a fresh runtime.
import { newQuickJSWASMModuleFromVariant } from 'quickjs-emscripten-core';
import variant from '@jitl/quickjs-wasmfile-release-sync';

// QuickJS checks its stack against this; the WebAssembly stack it runs on is
// the thread's own, and 512 KB already overflows the host on a 1 MB stack.
// 256 KB allows about 1,300 nested calls of a small function.
const STACK_BYTES = 256 * 1024;

// The runner: built before any user code has run, so it holds the pristine
// JSON, Reflect and String methods even if the user's function later changes
// globals. The user's function is evaluated in a separate script at global
// scope and passed in, so it cannot see `progress` or `out`.
const RUNNER = `(function (fn, memoryMb) {
  // One message's output: a webhook body of 100 of them stays a sane size,
  // and a function returning hundreds of megabytes is refused here, in the
  // sandbox's memory, before its text reaches the worker thread's heap (which
  // it would overflow, killing the thread for every retry of the batch).
  const MAX_OUTPUT_CHARS = 1048576;
  const parse = JSON.parse, stringify = JSON.stringify, apply = Reflect.apply;
  const split = String.prototype.split, join = Array.prototype.join, slice = String.prototype.slice;
  const keysOf = Object.keys, freeze = Object.freeze;
  const PromiseClass = Promise, ErrorClass = Error, InternalErrorClass = InternalError;
  const progress = { i: -1, outOfMemory: false };
  let out = [];
  function reason(e) {
    try {
      if (e instanceof InternalErrorClass && e.message === 'out of memory') {
        progress.outOfMemory = true;
        return 'it ran out of memory (limit ' + memoryMb + ' MB)';
      }
      if (e instanceof InternalErrorClass && e.message === 'stack overflow') return 'it overflowed the stack (recursion too deep)';
      if (e instanceof ErrorClass) return String(e.name) + ': ' + String(e.message);
      return 'it threw ' + (typeof e === 'string' ? stringify(e) : typeof e === 'object' ? 'a non-Error object' : 'a ' + typeof e);
    } catch (_) {
      return 'it threw a value that cannot be described';
    }
  }
  // Frozen all the way down: one object shared by every message of a batch
  // must not carry one message's changes into the next.
  function deepFreeze(v) {
    if (v === null || typeof v !== 'object') return v;
    const keys = keysOf(v);
    for (let i = 0; i < keys.length; i++) deepFreeze(v[keys[i]]);
    return freeze(v);
  }
  function one(text, served, servedKeys) {
    let message, result, json;
    try { message = parse(text); } catch (e) { return '!' + stringify('the message is not JSON: ' + reason(e)); }
    if (served !== null && message !== null && typeof message === 'object') {
      const meta = message.metadata;
      if (meta !== null && typeof meta === 'object') {
        for (let k = 0; k < servedKeys.length; k++) meta[servedKeys[k]] = served[servedKeys[k]];
      }
    }
    try { result = fn(message); } catch (e) { return '!' + stringify('the function threw: ' + reason(e)); }
    if (result instanceof PromiseClass) {
      return '!' + stringify('the function returned a Promise: transforms are synchronous (no async code, await or import())');
    }
    try { json = stringify(result); } catch (e) { return '!' + stringify('the function returned a value that is not JSON: ' + reason(e)); }
    if (json === undefined) {
      return '!' + stringify('the function returned ' + (result === undefined ? 'undefined' : 'a ' + typeof result) + ', which is not JSON');
    }
    if (json.length > MAX_OUTPUT_CHARS) {
      return '!' + stringify('the function returned ' + json.length + ' characters of JSON, more than the limit of ' + MAX_OUTPUT_CHARS + ' (1 MiB)');
    }
    return '+' + json;
  }
  function run(batch, from, servedText) {
    const texts = apply(split, batch, ['\\n']);
    // ',"consumer":{…},"database":{…}' (or ''): an object's members.
    const served = servedText ? deepFreeze(parse('{' + apply(slice, servedText, [1]) + '}')) : null;
    const servedKeys = served === null ? [] : keysOf(served);
    out = [];
    for (let i = from; i < texts.length; i++) {
      progress.i = i;
      out[i - from] = one(texts[i], served, servedKeys);
    }
    progress.i = -1;
    return apply(join, out, ['\\n']);
  }
  function partial() { return apply(join, out, ['\\n']); }
  return [run, partial, progress];
})`;

/** The text sent back for one failed message. */
const failure = (reason) => '!' + JSON.stringify(reason);

/**
 * @param {{ source: string, timeoutMs: number, memoryMb: number }} options
 * @returns {Promise<{ run(batch: string, count: number, served?: string): string, dispose(): void }>}
 */
export async function createSandbox({ source, timeoutMs, memoryMb }) {
  const quickjs = await newQuickJSWASMModuleFromVariant(variant);
  /** @type {null | { runtime: any, context: any, run: any, partial: any, progress: any }} */
  let vm = null;
  // Interrupt bookkeeping: only armed while a batch runs.
  let armed = false;
  let seenIndex = -2;
  let seenAt = 0;
  let timedOut = false;

  function dispose() {
    if (!vm) return;
    const current = vm;
    vm = null;
    try {
      for (const h of [current.run, current.partial, current.progress]) h.dispose();
      current.context.dispose();
      current.runtime.dispose();
    } catch {
      // A runtime that failed badly may not free cleanly; it is dropped either way.
    }
  }

  /** A runtime with the function compiled in it; throws a sentence when QuickJS refuses the source. */
  function start() {
    const runtime = quickjs.newRuntime();
    runtime.setMemoryLimit(memoryMb * 1024 * 1024);
    runtime.setMaxStackSize(STACK_BYTES);
    const context = runtime.newContext();
    runtime.setInterruptHandler(() => {
      if (!armed) return false;
      const handle = context.getProp(progress, 'i');
      const index = context.getNumber(handle);
      handle.dispose();
      const now = performance.now();
      if (index !== seenIndex) {
        seenIndex = index;
        seenAt = now;
        return false;
      }
      if (index >= 0 && now - seenAt > timeoutMs) {
        timedOut = true;
        return true;
      }
      return false;
    });
    let progress;
    try {
      const factory = context.unwrapResult(context.evalCode(RUNNER, 'runner.js'));
      const evaluated = context.evalCode(`(${source}\n)`, 'transform.js');
      if (evaluated.error) {
        const error = context.dump(evaluated.error);
        evaluated.error.dispose();
        factory.dispose();
        throw new Error(`the transform does not compile in the sandbox: ${error?.name ?? 'Error'}: ${error?.message ?? String(error)}`);
      }
      const limit = context.newNumber(memoryMb);
      const parts = context.unwrapResult(context.callFunction(factory, context.undefined, evaluated.value, limit));
      limit.dispose();
      evaluated.value.dispose();
      factory.dispose();
      const run = context.getProp(parts, 0);
      const partial = context.getProp(parts, 1);
      progress = context.getProp(parts, 2);
      parts.dispose();
      vm = { runtime, context, run, partial, progress };
    } catch (e) {
      try {
        context.dispose();
        runtime.dispose();
      } catch {
        // as in dispose()
      }
      throw e;
    }
  }

  /** Calls a VM function; on failure returns { error } with the failure's text. */
  function call(fn, ...args) {
    const { context } = vm;
    const handles = args.map((a) => (typeof a === 'number' ? context.newNumber(a) : context.newString(a)));
    try {
      const result = context.callFunction(fn, context.undefined, ...handles);
      if (result.error) {
        const error = context.dump(result.error);
        result.error.dispose();
        return { error: error?.message ? `${error.name ?? 'Error'}: ${error.message}` : String(error) };
      }
      const text = context.getString(result.value);
      result.value.dispose();
      return { text };
    } catch (e) {
      // The host itself failed (e.g. its own stack): the runtime is not to be trusted.
      return { error: String(e) };
    } finally {
      for (const h of handles) {
        try {
          h.dispose();
        } catch {
          // already gone with a failed runtime
        }
      }
    }
  }

  function readIndex() {
    try {
      const handle = vm.context.getProp(vm.progress, 'i');
      const index = vm.context.getNumber(handle);
      handle.dispose();
      return index;
    } catch {
      return -1;
    }
  }

  /** Whether a message ran out of memory (or the flag cannot even be read). */
  function readOutOfMemory() {
    try {
      const handle = vm.context.getProp(vm.progress, 'outOfMemory');
      const flag = vm.context.dump(handle);
      handle.dispose();
      return flag === true;
    } catch {
      return true;
    }
  }

  /**
   * Runs `count` messages (one JSON text a line); returns one result a line,
   * in order. `served`: the metadata members each message gets (see above), or ''.
   */
  function run(batch, count, served = '') {
    const pieces = [];
    let from = 0;
    while (from < count) {
      if (!vm) {
        try {
          start();
        } catch (e) {
          const line = failure(e instanceof Error ? e.message : String(e));
          for (let i = from; i < count; i++) pieces.push(line);
          return pieces.join('\n');
        }
      }
      armed = true;
      seenIndex = -2;
      timedOut = false;
      const result = call(vm.run, batch, from, served);
      armed = false;
      if (result.text !== undefined) {
        if (result.text !== '') pieces.push(result.text);
        // Memory the VM ran out of may have left it half-done; start clean next time.
        if (readOutOfMemory()) dispose();
        break;
      }
      // The batch call failed: an interrupt, or an error the VM could not catch.
      const index = readIndex();
      if (index < from) {
        // Not inside a message: nothing tells which one failed, so the rest all fail.
        const line = failure(`the sandbox failed: ${result.error}`);
        for (let i = from; i < count; i++) pieces.push(line);
        dispose();
        break;
      }
      const before = index > from ? call(vm.partial) : { text: '' };
      if (before.text === undefined) {
        const line = failure(`the sandbox failed: ${before.error}`);
        for (let i = from; i < index; i++) pieces.push(line);
      } else if (before.text !== '') {
        pieces.push(before.text);
      }
      pieces.push(
        failure(timedOut ? `the function ran longer than its limit of ${timeoutMs} ms` : `the sandbox failed: ${result.error}`),
      );
      dispose();
      from = index + 1;
    }
    return pieces.join('\n');
  }

  return { run, dispose };
}
