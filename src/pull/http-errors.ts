// Validation and error replies of the pull routes, set on their own fastify
// context so they hold whatever the surrounding app configures:
//   400  the body is not JSON, or not a JSON object
//   413  the body is over the limit
//   415  a content type, charset or encoding the API does not accept (body.ts)
//   422  a value is wrong (type, range, unknown field, missing field)
//   5xx  masked as "internal error", with the request id in `request_id`; the
//        error is logged (src/http/errors.ts, as for every route).
import { Ajv, type ErrorObject } from 'ajv';
import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import { sendError } from '../http/errors.js';
import { invalidValues, type FieldErrors } from './errors.js';

/** No coercion and no silent removal of unknown fields: params.ts reads strings itself. */
export function pullValidatorCompiler(): FastifySchemaCompiler<unknown> {
  const ajv = new Ajv({ allErrors: true, coerceTypes: false, removeAdditional: false, useDefaults: false, allowUnionTypes: true, strict: false });
  return ({ schema }) => ajv.compile(schema as object);
}

function fieldErrors(issues: ErrorObject[], part: string): FieldErrors {
  const out: FieldErrors = {};
  for (const issue of issues) {
    // "/ack_ids/3" → "ack_ids[3]"
    let path = issue.instancePath
      .split('/')
      .filter(Boolean)
      .map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i ? `.${s}` : s))
      .join('');
    let reason = issue.message ?? 'is invalid';
    if (issue.keyword === 'required') {
      path = String(issue.params.missingProperty);
      reason = 'is required';
    } else if (issue.keyword === 'additionalProperties') {
      path = (path ? path + '.' : '') + String(issue.params.additionalProperty);
      reason = 'is not a known field';
    } else if (issue.keyword === 'type') {
      reason = `must be ${String(issue.params.type).replace(',', ' or ')}`;
    }
    const key = path || part;
    (out[key] ??= []).includes(reason) || out[key].push(reason);
  }
  return out;
}

/**
 * The pull routes' own wording of validation errors (`ack_ids[3]`, an example
 * body); everything else is answered as on every other route (sendError), so
 * 5xx carry `request_id` and fastify's refusals have the same shape.
 */
export function pullErrorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
  const e = error as Partial<FastifyError>;
  if (Array.isArray(e.validation)) {
    const issues = e.validation as ErrorObject[];
    // The body itself is not an object (a JSON array, string, null, no body).
    if (e.validationContext === 'body' && issues.some((i) => i.instancePath === '' && i.keyword === 'type')) {
      const example = request.url.split('?')[0].endsWith('/receive') ? '{"batch_size": 10}' : '{"ack_ids": ["…"]}';
      return reply.status(400).send({ summary: `The request body must be a JSON object, such as ${example}.` });
    }
    return sendError(invalidValues(fieldErrors(issues, e.validationContext ?? 'request')), request, reply);
  }
  return sendError(error, request, reply);
}
