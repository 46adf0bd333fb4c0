// A consumer's transform: what each message becomes when it is served
// (webhook or pull). Three forms, checked and compiled once when the consumer
// is saved or loaded:
//   {"path": "record"}                 the value at a path of the message
//   {"template": {"id": "record.id"}}  an object of such values
//   {"function": "(message) => …"}     a user's JavaScript function, run in
//                                      QuickJS on a worker thread
// The path and template forms only read data, so they run in the gateway, on
// the message's text (values keep their exact digits); a function is user
// code and never runs in Node itself (no vm, no eval).
//
// apply() works on the served JSON text and returns JSON text (or an error)
// per message, in order, so one bad message never holds up the others: the
// caller sends what succeeded and dead-letters what failed.
import { withConsumer } from '../../buffer/message.js';
import { compilePath, compileTemplate, type Extract } from './path.js';
import { projector } from './project.js';
import { messageReads } from './reads.js';
import { SandboxWorker } from './sandbox-worker.js';
import { checkSpec, type TransformSpec } from './spec.js';
import { checkFunctionSource } from './syntax.js';

export { TransformError, type TemplateSpec, type TransformSpec } from './spec.js';

/**
 * One message's outcome. `fault` marks a failure of the sandbox itself (its
 * thread died or is being restarted, the transform was closed), which says
 * nothing about the message: the caller retries it rather than dead-lettering it.
 */
export type TransformResult = { ok: true; json: string } | { ok: false; error: string; fault?: true };

export interface Transform {
  /**
   * Messages in as JSON text; one result per message, in order: the output's
   * JSON text, or why there is none. `served`, when given, is the
   * `,"consumer":{…},"database":{…}` a consumer adds to each stored message
   * (src/buffer/message.ts) and the messages are stored payloads without it;
   * absent, they are whole envelopes already.
   */
  apply(messages: string[], served?: string): Promise<TransformResult[]>;
  /** Frees what the transform holds (a function's worker thread). Idempotent. */
  close(): Promise<void>;
}

/** Throws TransformError when the spec is malformed or the function does not parse. */
export function compileTransform(spec: TransformSpec): Transform {
  const checked = checkSpec(spec);
  switch (checked.kind) {
    case 'path':
      return textTransform(compilePath(checked.path));
    case 'template':
      return textTransform(compileTemplate(checked.template));
    case 'function': {
      checkFunctionSource(checked.source);
      const sandbox = new SandboxWorker({ source: checked.source, timeoutMs: checked.timeoutMs, memoryMb: checked.memoryMb });
      // The sandbox gets only the parts of each message the function reads (reads.ts).
      const reads = messageReads(checked.source);
      const cut = reads ? projector(reads) : null;
      return { apply: (messages, served) => sandbox.run(cut ? messages.map(cut) : messages, served), close: () => sandbox.close() };
    }
  }
}

/**
 * The checks compileTransform makes (spec, path, template, the function's
 * syntax), without starting anything: for config loading and saving, where a
 * function's worker thread would be wasted. Throws TransformError.
 */
export function checkTransform(spec: unknown): void {
  const checked = checkSpec(spec);
  if (checked.kind === 'path') compilePath(checked.path);
  else if (checked.kind === 'template') compileTemplate(checked.template);
  else checkFunctionSource(checked.source);
}

/** For "test this transform": the spec compiled, run on one message, and closed. Throws TransformError as compileTransform does. */
export async function tryTransform(spec: TransformSpec, message: string): Promise<TransformResult> {
  const transform = compileTransform(spec);
  try {
    const [result] = await transform.apply([message]);
    return result;
  } finally {
    await transform.close();
  }
}

function textTransform(extract: Extract): Transform {
  return {
    // Paths read the envelope's text: the served metadata is spliced in first.
    apply: async (messages, served) => (served ? messages.map((m) => withConsumer(m, served)) : messages).map(applyExtract, extract),
    close: async () => {},
  };
}

function applyExtract(this: Extract, message: string): TransformResult {
  try {
    return { ok: true, json: this(message) };
  } catch (e) {
    return { ok: false, error: `the message is not JSON: ${(e as Error).message}` };
  }
}
