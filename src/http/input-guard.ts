// What every request's input must be before validation looks at it and before
// a handler can reach the database, checked in one place for every route:
//   - no NUL character (\u0000) in any string or key of the path parameters,
//     the query string or the body: Postgres text and jsonb cannot hold one,
//     and the error it raised quoted the whole value (secrets included);
//   - a body nests at most MAX_BODY_DEPTH levels: serialising a much deeper
//     value overflowed the stack.
// One walk, cut off at the depth cap, so a hostile body costs what its size costs.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { formatPath, type PathSegment } from '../config/errors.js';
import { acceptJsonBodies } from './body.js';
import { invalid, type FieldErrors } from './errors.js';

/** Levels of objects and arrays in a request body; the deepest resource (annotations) needs 34. */
export const MAX_BODY_DEPTH = 64;
/** Problems named in one answer: enough to fix a request, bounded for a hostile one. */
const MAX_REPORTED = 20;

const NUL_VALUE = 'must not contain a NUL character (\\u0000)';
const NUL_KEY = 'is a key with a NUL character (\\u0000), which cannot be stored';

class Walk {
  readonly errors: FieldErrors = {};
  private count = 0;
  private readonly path: PathSegment[] = [];

  constructor(private readonly maxDepth: number) {}

  get full(): boolean {
    return this.count >= MAX_REPORTED;
  }

  private report(reason: string, extra?: PathSegment): void {
    const at = formatPath(extra === undefined ? this.path : [...this.path, extra]);
    (this.errors[at] ??= []).push(reason);
    this.count++;
  }

  visit(value: unknown, depth: number): void {
    if (this.full) return;
    if (typeof value === 'string') {
      if (value.includes('\0')) this.report(NUL_VALUE);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    if (depth > this.maxDepth) {
      this.report(`nests deeper than ${this.maxDepth} levels of objects and lists`);
      return;
    }
    const entries: Array<[PathSegment, unknown]> = Array.isArray(value)
      ? value.map((v, i) => [i, v])
      : Object.entries(value as Record<string, unknown>);
    for (const [key, child] of entries) {
      if (typeof key === 'string' && key.includes('\0')) this.report(NUL_KEY, key);
      this.path.push(key);
      this.visit(child, depth + 1);
      this.path.pop();
      if (this.full) return;
    }
  }
}

/**
 * The problems of a request's parsed input, by field: body fields by their
 * path (`webhook.headers["X-Api-Key"]`), path and query parameters by name.
 */
export function inputProblems(request: Pick<FastifyRequest, 'params' | 'query' | 'body'>): FieldErrors | undefined {
  const walk = new Walk(MAX_BODY_DEPTH);
  // Parameters are flat strings (or lists of them); depth 1 keeps them so.
  walk.visit(request.params, 1);
  walk.visit(request.query, 1);
  walk.visit(request.body, 1);
  return Object.keys(walk.errors).length ? walk.errors : undefined;
}

/**
 * On the root instance, before routes are registered: the body parser of
 * body.ts and the check above, for every route of every context.
 */
export function guardInput(app: FastifyInstance): void {
  acceptJsonBodies(app);
  app.addHook('preValidation', async (request) => {
    const problems = inputProblems(request);
    if (problems) throw invalid(problems);
  });
}
