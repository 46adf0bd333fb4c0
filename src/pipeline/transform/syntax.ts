// A function transform's source is parsed in the gateway (with acorn, a
// standard-conformant JavaScript parser) before it ever reaches the sandbox:
// QuickJS would also refuse bad syntax, but only once a message arrives, and
// with a position in our wrapper rather than in the user's text. Parsing here
// gives the user's own line and column at save time, and lets us require the
// one shape the sandbox expects: a single synchronous function expression.
import { parse, type ArrowFunctionExpression, type FunctionExpression } from 'acorn';
import { TransformError } from './spec.js';

/** Throws TransformError when the source is not one synchronous function expression (see parseFunctionSource). */
export function checkFunctionSource(source: string): void {
  parseFunctionSource(source);
}

/**
 * The source, wrapped as `(<source>\n)`, must parse as one expression
 * statement that is a function: this refuses `1+1`, statement lists, and
 * sources that close the parenthesis themselves to smuggle in more code.
 * Returns that function's syntax tree (reads.ts reads it); throws TransformError.
 */
export function parseFunctionSource(source: string): ArrowFunctionExpression | FunctionExpression {
  const wrapped = `(${source}\n)`;
  let program: ReturnType<typeof parse>;
  try {
    program = parse(wrapped, { ecmaVersion: 'latest', sourceType: 'script' });
  } catch (e) {
    const { message, pos } = e as { message: string; pos?: number };
    const reason = message.replace(/ \(\d+:\d+\)$/, '');
    // Past the user's text: the wrapper's closing line, reached because the source ended too early.
    const offset = typeof pos === 'number' ? pos - 1 : source.length;
    const { line, column } = lineColumn(source, Math.max(0, Math.min(offset, source.length)));
    const what = offset >= source.length ? 'the source ends too early' : reason;
    throw new TransformError(`the transform does not compile: ${what} (line ${line}, column ${column})`, line, column);
  }
  const statement = program.body.length === 1 ? program.body[0] : undefined;
  const fn = statement?.type === 'ExpressionStatement' ? statement.expression : undefined;
  if (!fn || (fn.type !== 'ArrowFunctionExpression' && fn.type !== 'FunctionExpression')) {
    throw new TransformError(
      'the transform is not a function: give one function expression, such as "(message) => message.record" or "function (message) { return message.record }"',
    );
  }
  if (fn.async || fn.generator) {
    throw new TransformError(`the transform's function is ${fn.async ? 'async' : 'a generator'}: it must return its result directly`);
  }
  return fn;
}

/** 1-based line and column of a character offset, counting line breaks as JavaScript does. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (const m of text.slice(0, offset).matchAll(/\r\n?|[\n\u2028\u2029]/g)) {
    line++;
    lineStart = m.index + m[0].length;
  }
  return { line, column: offset - lineStart + 1 };
}
