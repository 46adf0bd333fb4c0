// Schema validation with ajv, and the translation of ajv's errors into issues a
// person can act on: "sources[0].tabels: unknown key (did you mean "tables"?)"
// rather than "must NOT have additional properties".
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { didYouMean, issue, type PathSegment, type RawIssue } from './errors.js';
import { FORMATS, configSchema, consumerSchema, sourceSchema, streamSchema } from './schema.js';

const ajv = new Ajv({
  allErrors: true,
  // verbose: errors carry the failing value and the schema that failed, which
  // the translation below reads (allowed keys, descriptions).
  verbose: true,
  strict: true,
  // Durations and sizes are `string | integer`; the union is intended.
  allowUnionTypes: true,
  schemas: [sourceSchema, streamSchema, consumerSchema, configSchema],
});
for (const [name, validate] of Object.entries(FORMATS)) ajv.addFormat(name, { type: 'string', validate });

function compiled(id: string): ValidateFunction {
  const fn = ajv.getSchema(id);
  if (!fn) throw new Error(`schema ${id} is not registered`);
  return fn;
}

export const validators = {
  config: compiled(configSchema.$id),
  source: compiled(sourceSchema.$id),
  stream: compiled(streamSchema.$id),
  consumer: compiled(consumerSchema.$id),
};

/** Runs a validator; returns the problems, with paths under `base`. */
export function schemaIssues(validate: ValidateFunction, data: unknown, base: PathSegment[] = []): RawIssue[] {
  if (validate(data)) return [];
  const out: RawIssue[] = [];
  for (const e of validate.errors ?? []) {
    const translated = translate(e, [...base, ...pointerSegments(data, e.instancePath)]);
    if (translated) out.push(translated);
  }
  return out;
}

/** A JSON pointer as path segments; array positions become numbers (read from the data). */
function pointerSegments(root: unknown, pointer: string): PathSegment[] {
  if (!pointer) return [];
  const out: PathSegment[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      out.push(Number(key));
      node = node[Number(key)];
    } else {
      out.push(key);
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  object: 'a map',
  array: 'a list',
  null: 'empty',
};

function translate(e: ErrorObject, segments: PathSegment[]): RawIssue | undefined {
  const schema = (e.parentSchema ?? {}) as { description?: string; properties?: Record<string, unknown> };
  const described = schema.description ? `must be ${schema.description}` : undefined;
  // Errors inside `propertyNames` name the offending key; place them on it.
  if (e.propertyName !== undefined) return issue([...segments, e.propertyName], described ?? `invalid key: ${e.message}`);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'propertyNames':
      return undefined; // the summary of the per-key errors above
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      return issue([...segments, key], `unknown key${didYouMean(key, Object.keys(schema.properties ?? {}))}`);
    }
    case 'required':
      return issue([...segments, String(p.missingProperty)], 'is required');
    case 'type': {
      const types = Array.isArray(p.type) ? p.type : String(p.type).split(',');
      return issue(segments, described ?? `must be ${types.map((t) => TYPE_WORDS[t] ?? t).join(' or ')}`);
    }
    case 'enum':
      return issue(segments, `must be one of: ${(p.allowedValues as unknown[]).map(String).join(', ')}`);
    case 'uniqueItems': {
      const list = e.data as unknown[];
      return issue(segments, `lists ${JSON.stringify(list[Number(p.j)])} twice`);
    }
    case 'minItems':
      return issue(segments, p.limit === 1 ? 'must not be empty' : `must have at least ${p.limit} items`);
    case 'minimum':
      return issue(segments, described ?? `must be at least ${p.limit}`);
    case 'maximum':
      return issue(segments, `must be at most ${p.limit}`);
    default:
      // format, pattern, minLength: the description says what is accepted.
      return issue(segments, described ?? (e.message ? e.message.replace(/^must NOT/, 'must not') : 'is invalid'));
  }
}
