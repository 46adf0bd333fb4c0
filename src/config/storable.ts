// What Postgres can store of a value from outside (a request, a config file):
// no NUL character (\u0000) in any string or key, since text and jsonb cannot
// hold one (and the error Postgres raised quoted the whole value, secrets
// included), and bounded nesting, since serialising a value thousands of
// levels deep overflows the stack. One walk, cut off at the depth cap, so a
// hostile value costs what its size costs.
import { issue, type PathSegment, type RawIssue } from './errors.js';

const NUL_VALUE = 'must not contain a NUL character (\\u0000)';
const NUL_KEY = 'is a key with a NUL character (\\u0000), which cannot be stored';
/** Problems named at once: enough to fix the input, bounded for a hostile one. */
const MAX_REPORTED = 20;

/** Issues of `value`, with paths under `base`; objects and lists deeper than `maxDepth` levels are one issue each. */
export function storableIssues(value: unknown, base: PathSegment[], maxDepth: number): RawIssue[] {
  const out: RawIssue[] = [];
  const path = [...base];
  const visit = (v: unknown, depth: number): void => {
    if (out.length >= MAX_REPORTED) return;
    if (typeof v === 'string') {
      if (v.includes('\0')) out.push(issue([...path], NUL_VALUE));
      return;
    }
    if (v === null || typeof v !== 'object') return;
    if (depth > maxDepth) {
      out.push(issue([...path], `nests deeper than ${maxDepth} levels of objects and lists`));
      return;
    }
    const entries: Array<[PathSegment, unknown]> = Array.isArray(v) ? v.map((c, i) => [i, c]) : Object.entries(v);
    for (const [key, child] of entries) {
      if (typeof key === 'string' && key.includes('\0')) out.push(issue([...path, key], NUL_KEY));
      path.push(key);
      visit(child, depth + 1);
      path.pop();
      if (out.length >= MAX_REPORTED) return;
    }
  };
  visit(value, 1);
  return out;
}
