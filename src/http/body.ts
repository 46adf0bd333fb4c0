// Request bodies: JSON text in UTF-8, under exactly the content types
// docs/api.md lists, and nothing guessed at:
//   - application/json;
//   - no Content-Type at all (some clients send none);
//   - application/x-www-form-urlencoded, what `curl -d '{"ack_ids": [...]}'`
//     sends (Sequin's own guide acks that way): the body is still JSON;
//   - a charset parameter, when there is one, of utf-8.
// Any other type (text/plain, application/octet-stream…) or charset, a
// Content-Encoding such as gzip, and bytes that are not UTF-8 are 415; text
// that is not JSON is 400. An empty body means "no parameters", as for a GET.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

export const ACCEPTED_TYPES = ['application/json', 'application/x-www-form-urlencoded'] as const;

const unsupported = (summary: string) => new ApiError(415, summary, undefined, 'SLUICE_UNSUPPORTED_MEDIA_TYPE');
const notJson = () => new ApiError(400, 'The request body is not valid JSON.', undefined, 'FST_ERR_CTP_INVALID_JSON_BODY');
const protoKey = (key: string) => new ApiError(400, `The request body may not contain a "${key}" key.`, undefined, 'SLUICE_PROTO_KEY');

const SEND = 'send JSON as application/json (or with no Content-Type, or as application/x-www-form-urlencoded), in UTF-8';

/** Why this request's headers rule its body out, or undefined when they don't. */
function refusedHeaders(request: FastifyRequest): ApiError | undefined {
  const encoding = request.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    return unsupported(`Content-Encoding "${encoding}" is not accepted; ${SEND}, uncompressed.`);
  }
  const header = request.headers['content-type'];
  if (header === undefined) return undefined;
  const [type = '', ...params] = header.split(';').map((s) => s.trim());
  if (!(ACCEPTED_TYPES as readonly string[]).includes(type.toLowerCase())) {
    return unsupported(`Content-Type "${type}" is not accepted; ${SEND}.`);
  }
  for (const param of params) {
    const [name = '', value = ''] = param.split('=').map((s) => s.trim());
    if (name.toLowerCase() === 'charset' && value.replace(/^"|"$/g, '').toLowerCase() !== 'utf-8') {
      return unsupported(`charset "${value}" is not accepted; ${SEND}.`);
    }
  }
  return undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

// Same stance as fastify's own JSON parser: a body that names __proto__ (or a
// constructor.prototype) is refused rather than risk a prototype being
// polluted by code that merges request bodies into objects.
function refusePrototypeKeys(key: string, value: unknown): unknown {
  if (key === '__proto__') throw protoKey('__proto__');
  if (key === 'constructor' && value !== null && typeof value === 'object' && Object.hasOwn(value, 'prototype')) {
    throw protoKey('constructor.prototype');
  }
  return value;
}

function parseBody(request: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void): void {
  const refused = refusedHeaders(request);
  if (refused) return done(refused);
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    // Replacing bad bytes with U+FFFD would store something nobody sent.
    return done(unsupported(`The request body is not valid UTF-8; ${SEND}.`));
  }
  // No body at all is "no parameters", as with a GET.
  if (text.trim() === '') return done(null, undefined);
  try {
    // A reviver costs a call per value; only bodies that could carry the keys pay it.
    const risky = text.includes('__proto__') || text.includes('constructor');
    done(null, risky ? JSON.parse(text, refusePrototypeKeys) : JSON.parse(text));
  } catch (err) {
    done(err instanceof ApiError ? err : notJson());
  }
}

/**
 * Replaces every body parser of `app` (call it on the root instance, before
 * routes are registered) with the one above: one parser for all types, which
 * refuses the ones it does not accept with a 415 in the API's error shape.
 */
export function acceptJsonBodies(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, parseBody);
}
