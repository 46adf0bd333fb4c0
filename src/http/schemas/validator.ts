// Request validation. Two Ajv instances instead of fastify's one:
// - bodies are JSON, so a value of the wrong type is an error (no coercion:
//   {"all": "yes"} must be a 422, not silently become true);
// - path and query values are always strings on the wire, so they are coerced.
// Neither removes unknown fields: `additionalProperties: false` refuses them
// with a clear error instead of dropping them silently (fastify's default).
import { Ajv, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

// ajv-formats is CommonJS: under NodeNext the default import is module.exports,
// whose `default` property is the plugin.
const addFormats = addFormatsModule.default;

const common: Options = {
  removeAdditional: false,
  useDefaults: true,
  // Every problem at once, so a caller fixes a request in one round; bodies are
  // bounded by the body limit and our schemas bound string and array sizes.
  allErrors: true,
  allowUnionTypes: true,
};

function makeAjv(opts: Options): Ajv {
  const ajv = new Ajv({ ...common, ...opts });
  addFormats(ajv);
  return ajv;
}

export function schemaCompiler(): FastifySchemaCompiler<unknown> {
  const strict = makeAjv({ coerceTypes: false });
  const coercing = makeAjv({ coerceTypes: 'array' });
  return ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema as object);
}

/**
 * Route option for sources and consumers: their bodies are validated by the
 * config loader (validateSource / validateConsumer) in the handler, so the API
 * and config/sluice.yaml accept exactly the same resources with the same
 * messages; the body schema stays on the route for the OpenAPI document.
 */
export function loaderValidatesBody(compiler: FastifySchemaCompiler<unknown>): { validatorCompiler: FastifySchemaCompiler<unknown> } {
  return { validatorCompiler: (route) => (route.httpPart === 'body' ? () => true : compiler(route)) };
}
