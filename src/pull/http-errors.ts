// Validation and error replies of the pull routes, set on their own fastify
// context so they hold whatever the surrounding app configures:
//   400  the body is not JSON, or not a JSON object
//   413  the body is over the limit
//   415  a Content-Type header that does not parse
//   422  a value is wrong (type, range, unknown field, missing field)
//   5xx  masked as "internal error" with the request id; the error is logged.
import { Ajv, type ErrorObject } from 'ajv';
import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import { PullError, type FieldErrors } from './errors.js';

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

const CLIENT_ERRORS: Record<string, [number, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'The request body is not valid JSON.'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'The request body is empty; send a JSON object.'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'The request body is larger than this server accepts.'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'The Content-Type header is not valid; send application/json or none.'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'The Content-Length header does not match the body.'],
};

export function pullErrorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof PullError) return reply.status(error.statusCode).send(error.toBody());
  const e = error as Partial<FastifyError>;
  if (Array.isArray(e.validation)) {
    const issues = e.validation as ErrorObject[];
    // The body itself is not an object (a JSON array, string, null, no body).
    if (e.validationContext === 'body' && issues.some((i) => i.instancePath === '' && i.keyword === 'type')) {
      const example = request.url.split('?')[0].endsWith('/receive') ? '{"batch_size": 10}' : '{"ack_ids": ["…"]}';
      return reply.status(400).send({ summary: `The request body must be a JSON object, such as ${example}.` });
    }
    const fields = fieldErrors(issues, e.validationContext ?? 'request');
    const first = Object.entries(fields)[0];
    const more = Object.keys(fields).length > 1 ? ` (and ${Object.keys(fields).length - 1} more)` : '';
    return reply
      .status(422)
      .send({ summary: `Invalid request: ${first[0]} ${first[1][0]}${more}.`, validation_errors: fields });
  }
  const known = e.code ? CLIENT_ERRORS[e.code] : undefined;
  if (known) return reply.status(known[0]).send({ summary: known[1] });
  if (error instanceof SyntaxError) return reply.status(400).send({ summary: CLIENT_ERRORS.FST_ERR_CTP_INVALID_JSON_BODY[1] });
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) return reply.status(status).send({ summary: error.message || 'The request was refused.' });
  request.log.error({ err: error }, 'pull request failed');
  return reply.status(500).send({ summary: `internal error (request ${String(request.id)})` });
}
