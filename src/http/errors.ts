// One error shape for every failure the API reports:
//   {"summary": "<one clear sentence>", "validation_errors": {"<field path>": ["reason", ...]}}
// 4xx messages pass through (they are written for the caller); 5xx are masked
// as "internal error" with the request id, and the error is logged under that
// id (its safe fields only). No stack trace ever reaches a response. Fastify's
// own refusals (a URL that does not decode, a request Node cannot parse) are
// answered here too, so every status >= 400 has this shape.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ConfigError } from '../config/load.js';
import { safeError } from '../log.js';

export type FieldErrors = Record<string, string[]>;

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    summary: string,
    readonly validationErrors?: FieldErrors,
    readonly code = `SLUICE_${statusCode}`,
  ) {
    super(summary);
    this.name = 'ApiError';
  }
}

export const notFound = (what: string) => new ApiError(404, `${what} does not exist.`);
export const conflict = (summary: string) => new ApiError(409, summary);
export const invalid = (errors: FieldErrors, summary = summarise(errors)) => new ApiError(422, summary, errors);
/** Malformed rather than invalid: the pull routes answer the same (src/pull/http-errors.ts). */
export const notAnObject = () => new ApiError(400, 'The request body must be a JSON object.');

/** "Invalid request: webhook.url: must be an http or https URL (and 2 more)." — the first problem, named. */
export function summarise(errors: FieldErrors): string {
  const entries = Object.entries(errors).flatMap(([path, reasons]) => reasons.map((r) => `${path}: ${r}`));
  if (entries.length === 0) return 'The request is invalid.';
  const more = entries.length > 1 ? ` (and ${entries.length - 1} more)` : '';
  return `Invalid request: ${entries[0]}${more}.`;
}

/** The config loader's problems ({path, reason} list), as the API reports them. */
export function fromConfigError(err: ConfigError): ApiError {
  const fields: FieldErrors = {};
  for (const { path, reason } of err.issues) (fields[path] ??= []).push(reason);
  return invalid(fields);
}

interface AjvIssue {
  instancePath?: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

const PART_NAMES: Record<string, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

/** Ajv errors as {"webhook.url": ["must match format \"uri\""]}. */
export function fieldErrorsFromAjv(issues: AjvIssue[], part = 'body'): FieldErrors {
  const out: FieldErrors = {};
  for (const issue of issues) {
    const segments = (issue.instancePath ?? '').split('/').filter(Boolean).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    let reason = issue.message ?? issue.keyword;
    if (issue.keyword === 'required') {
      segments.push(String(issue.params.missingProperty));
      reason = 'is required';
    } else if (issue.keyword === 'additionalProperties') {
      segments.push(String(issue.params.additionalProperty));
      reason = 'is not a known field';
    } else if (issue.keyword === 'enum') {
      reason = `must be one of: ${(issue.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    }
    const path = segments.length ? segments.join('.') : (PART_NAMES[part] ?? part);
    (out[path] ??= []).includes(reason) || out[path].push(reason);
  }
  return out;
}

// Fastify's own 4xx whose default wording is worth making clearer (body.ts
// reports unparsable bodies under the first code too).
const CLEARER: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'The request body is not valid JSON.',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'The request body is empty; send a JSON object.',
  FST_ERR_CTP_BODY_TOO_LARGE: 'The request body is larger than this server accepts.',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'The Content-Type header does not parse; send application/json or none.',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'The Content-Length header does not match the body.',
  FST_ERR_BAD_URL: 'The URL does not decode: a "%" must start an escape such as %20.',
  FST_ERR_MAX_PARAM_LENGTH: 'A part of the URL path is longer than this server accepts.',
};

export interface ErrorBody {
  summary: string;
  validation_errors?: FieldErrors;
  request_id?: string;
}

/** Every error reply, of every route and of fastify itself, goes out through here. */
export function sendError(error: FastifyError | ApiError | Error, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof ConfigError) error = fromConfigError(error);
  const e = error as Partial<FastifyError> & { validationErrors?: FieldErrors };
  const status = typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  // An ApiError is a refusal written for the caller, a 503 ("try again in a
  // moment") included: sent as written. Any other 5xx is masked below.
  if (status < 500 || (error instanceof ApiError && status === 503)) {
    const body: ErrorBody = { summary: (e.code && CLEARER[e.code]) || error.message || 'The request was refused.' };
    if (e.validationErrors) body.validation_errors = e.validationErrors;
    return reply.status(status).send(body);
  }
  // Only fields that cannot quote a value (safeError): a database error's
  // detail, context or message may hold a connection string or a header value.
  // fastify's request logger carries reqId, which is what the caller receives.
  request.log.error({ error: safeError(error) }, 'request failed');
  return reply.status(status).send({ summary: 'internal error', request_id: String(request.id) } satisfies ErrorBody);
}

export function errorHandler(error: FastifyError | ApiError | Error, request: FastifyRequest, reply: FastifyReply) {
  const e = error as Partial<FastifyError>;
  // Schema validation: the JSON parsed but a value is wrong.
  if (Array.isArray(e.validation)) {
    const issues = e.validation as AjvIssue[];
    if (e.validationContext === 'body' && issues.some((i) => !i.instancePath && i.keyword === 'type')) {
      return sendError(notAnObject(), request, reply);
    }
    return sendError(invalid(fieldErrorsFromAjv(issues, e.validationContext)), request, reply);
  }
  return sendError(error, request, reply);
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply) {
  return reply.status(404).send({ summary: `No route for ${request.method} ${request.url.split('?')[0]}.` } satisfies ErrorBody);
}

// Requests Node's HTTP parser refuses before fastify sees a request (the
// clientErrorHandler option): answered in the same shape, then the connection
// is closed, as Node and fastify do.
const UNPARSED: Record<string, [number, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request took too long to arrive.'],
  HPE_HEADER_OVERFLOW: [431, 'The request line and headers are larger than this server accepts (16 KiB).'],
};
const NOT_HTTP: [number, string] = [400, 'The request is not valid HTTP; check that Content-Length matches the body and that headers hold no control characters.'];

export function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  // A reset connection has nobody left to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, summary] = (err.code && UNPARSED[err.code]) || NOT_HTTP;
  const body = JSON.stringify({ summary } satisfies ErrorBody);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
