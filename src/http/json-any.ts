// JSON bodies whatever the Content-Type says. Sequin's own guide acks with
// `curl -d '{"ack_ids": [...]}'`, which sends application/x-www-form-urlencoded,
// and other clients send no Content-Type at all; both must parse as JSON.
// The only export is the registration function (the app loads it by that).
import type { FastifyInstance } from 'fastify';

interface HttpError extends Error {
  statusCode: number;
  code: string;
}

function badBody(message: string, code: string): HttpError {
  return Object.assign(new Error(message), { statusCode: 400, code });
}

// Same stance as fastify's own JSON parser: a body that names __proto__ (or a
// constructor.prototype) is refused rather than risk a prototype being
// polluted by code that merges request bodies into objects.
function refusePrototypeKeys(key: string, value: unknown): unknown {
  if (key === '__proto__') throw badBody('The request body may not contain a "__proto__" key.', 'SLUICE_PROTO_KEY');
  if (key === 'constructor' && value !== null && typeof value === 'object' && Object.hasOwn(value, 'prototype')) {
    throw badBody('The request body may not contain a "constructor.prototype" key.', 'SLUICE_PROTO_KEY');
  }
  return value;
}

function parseJsonBody(_req: unknown, body: string | Buffer, done: (err: Error | null, body?: unknown) => void): void {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  // No body at all is "no parameters", as with a GET.
  if (text.trim() === '') return done(null, undefined);
  try {
    // A reviver costs a call per value; only bodies that could carry the keys pay it.
    const risky = text.includes('__proto__') || text.includes('constructor');
    done(null, risky ? JSON.parse(text, refusePrototypeKeys) : JSON.parse(text));
  } catch (err) {
    if ((err as HttpError).code === 'SLUICE_PROTO_KEY') return done(err as Error);
    done(badBody('The request body is not valid JSON.', 'FST_ERR_CTP_INVALID_JSON_BODY'));
  }
}

/**
 * Parses bodies without a Content-Type, with an unknown one, or form-encoded,
 * as JSON (bounded by the route's body limit). With `jsonToo`, also replaces
 * the application/json and text/plain parsers in this (encapsulated) context,
 * so that an empty JSON body means "no parameters" instead of an error, and
 * JSON sent as text/plain parses. Safe to call twice.
 */
export async function registerJsonAnyParser(app: FastifyInstance, opts: { jsonToo?: boolean } = {}): Promise<void> {
  const types: string[] = ['*', 'application/x-www-form-urlencoded'];
  if (opts.jsonToo) {
    // text/plain too: some HTTP clients label any string body that way.
    app.removeContentTypeParser(['application/json', 'text/plain']);
    types.push('application/json', 'text/plain');
  }
  for (const type of types) {
    try {
      app.addContentTypeParser(type, { parseAs: 'string' }, parseJsonBody);
    } catch (err) {
      // Already registered by a parent context (fastify's hasContentTypeParser
      // does not see '*'), which is the same parser.
      if ((err as { code?: string }).code !== 'FST_ERR_CTP_ALREADY_PRESENT') throw err;
    }
  }
}
