// What every request's input must be before validation looks at it and before
// a handler can reach the database, checked in one place for every route: no
// NUL character in any string or key of the path parameters, the query string
// or the body, and a body nested at most MAX_BODY_DEPTH levels
// (src/config/storable.ts says why).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { formatPath } from '../config/errors.js';
import { storableIssues } from '../config/storable.js';
import { acceptJsonBodies } from './body.js';
import { invalid, type FieldErrors } from './errors.js';

/** Levels of objects and arrays in a request body; the deepest resource (annotations) needs 34. */
export const MAX_BODY_DEPTH = 64;

/**
 * The problems of a request's parsed input, by field: body fields by their
 * path (`webhook.headers["X-Api-Key"]`), path and query parameters by name.
 */
export function inputProblems(request: Pick<FastifyRequest, 'params' | 'query' | 'body'>): FieldErrors | undefined {
  const issues = [request.params, request.query, request.body].flatMap((part) => storableIssues(part, [], MAX_BODY_DEPTH));
  if (issues.length === 0) return undefined;
  const errors: FieldErrors = {};
  for (const { segments, reason } of issues) (errors[formatPath(segments)] ??= []).push(reason);
  return errors;
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
