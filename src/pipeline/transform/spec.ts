// A consumer's transform as it arrives from config or the API, checked once
// here so that the rest of the module works on a shape it can trust. Specs
// come from JSON, so the TypeScript type is a promise the checks keep: every
// field is read as unknown and anything unexpected is refused with a sentence
// a user can act on, never silently dropped.

/** A template: an object whose leaves are message paths (see path.ts). */
export interface TemplateSpec {
  [key: string]: string | TemplateSpec;
}

export type TransformSpec =
  | { path: string }
  | { template: TemplateSpec }
  | { function: string; timeout_ms?: number; memory_mb?: number };

/** A refusal at compile time. line and column (1-based) are set for a function's syntax errors. */
export class TransformError extends Error {
  constructor(
    message: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(message);
    this.name = 'TransformError';
  }
}

/** The function form's bounds: defaults and the most a spec may ask for. */
export const FUNCTION_LIMITS = {
  timeoutMs: { default: 50, min: 1, max: 1000 },
  memoryMb: { default: 32, min: 8, max: 256 },
  /** Characters of source: a transform is a few lines, not a bundle. */
  sourceChars: 64 * 1024,
} as const;

export type CheckedSpec =
  | { kind: 'path'; path: string }
  | { kind: 'template'; template: TemplateSpec }
  | { kind: 'function'; source: string; timeoutMs: number; memoryMb: number };

const FORMS = ['path', 'template', 'function'] as const;
const FUNCTION_OPTIONS = ['timeout_ms', 'memory_mb'];

/** Which form the spec is, with its options checked and defaulted (the template and path themselves are checked by path.ts). */
export function checkSpec(spec: unknown): CheckedSpec {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
    throw new TransformError('a transform is an object with one of "path", "template" or "function"');
  }
  const fields = spec as Record<string, unknown>;
  const forms = FORMS.filter((f) => Object.hasOwn(fields, f));
  if (forms.length !== 1) {
    throw new TransformError(
      forms.length === 0
        ? 'a transform needs one of "path", "template" or "function"'
        : `a transform has one form, not several: ${forms.map((f) => `"${f}"`).join(' and ')}`,
    );
  }
  const form = forms[0];
  const allowed = form === 'function' ? [form, ...FUNCTION_OPTIONS] : [form];
  const unknown = Object.keys(fields).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    throw new TransformError(`a "${form}" transform does not take ${unknown.map((k) => `"${k}"`).join(', ')}`);
  }
  if (form === 'path') {
    if (typeof fields.path !== 'string') throw new TransformError('"path" is a string, such as "record.id"');
    return { kind: 'path', path: fields.path };
  }
  if (form === 'template') {
    const t = fields.template;
    if (t === null || typeof t !== 'object' || Array.isArray(t)) {
      throw new TransformError('"template" is an object whose values are message paths, such as {"id": "record.id"}');
    }
    return { kind: 'template', template: t as TemplateSpec };
  }
  const source = fields.function;
  if (typeof source !== 'string' || source.trim() === '') {
    throw new TransformError('"function" is the source of a JavaScript function, such as "(message) => message.record"');
  }
  if (source.length > FUNCTION_LIMITS.sourceChars) {
    throw new TransformError(`the function is longer than ${FUNCTION_LIMITS.sourceChars} characters`);
  }
  return {
    kind: 'function',
    source,
    timeoutMs: integerOption(fields, 'timeout_ms', FUNCTION_LIMITS.timeoutMs),
    memoryMb: integerOption(fields, 'memory_mb', FUNCTION_LIMITS.memoryMb),
  };
}

function integerOption(fields: Record<string, unknown>, name: string, bounds: { default: number; min: number; max: number }): number {
  const value = fields[name];
  if (value === undefined) return bounds.default;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < bounds.min || value > bounds.max) {
    throw new TransformError(`"${name}" is a whole number from ${bounds.min} to ${bounds.max}`);
  }
  return value;
}
