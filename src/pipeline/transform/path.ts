// The path and template forms: plain reads of the parsed message, so they run
// in the gateway itself with no sandbox (nothing the user wrote is executed).
// A path is compiled once into its keys, so reading one costs a few property
// lookups per message.
//
// Path syntax: keys joined by dots (`record.id`, `metadata.consumer.name`);
// a key of digits indexes an array (`record.tags.0`). Only the message's own
// data is read: `record.constructor` or `changes.length` give null, as does
// any key that is missing, so a path never reaches into JavaScript itself.
import { TransformError, type TemplateSpec } from './spec.js';

/** Reads a value out of a parsed message; null when the path leads nowhere. */
export type Reader = (message: unknown) => unknown;

const INDEX = /^(0|[1-9][0-9]*)$/;
/** A template deeper than this or with more keys is a mistake, and costs every message. */
export const TEMPLATE_LIMITS = { depth: 8, keys: 100 } as const;

export function compilePath(path: string, where = 'the path'): Reader {
  if (path === '') throw new TransformError(`${where} is empty`);
  const keys = path.split('.');
  if (keys.some((k) => k === '')) {
    throw new TransformError(`${where} "${path}" has an empty key: keys are joined by single dots, with none at either end`);
  }
  const indexes = keys.map((k) => (INDEX.test(k) ? Number(k) : -1));
  return (message) => {
    let value = message;
    for (let i = 0; i < keys.length; i++) {
      if (value === null || typeof value !== 'object') return null;
      if (Array.isArray(value)) {
        const at = indexes[i];
        if (at < 0 || at >= value.length) return null;
        value = value[at];
      } else {
        if (!Object.hasOwn(value, keys[i])) return null;
        value = (value as Record<string, unknown>)[keys[i]];
      }
    }
    return value === undefined ? null : value;
  };
}

export function compileTemplate(template: TemplateSpec): Reader {
  const budget = { keys: 0 };
  return compileObject(template, [], budget);
}

function compileObject(template: TemplateSpec, at: string[], budget: { keys: number }): Reader {
  const where = at.length === 0 ? 'the template' : `template key "${at.join('.')}"`;
  if (at.length >= TEMPLATE_LIMITS.depth) {
    throw new TransformError(`${where} nests deeper than ${TEMPLATE_LIMITS.depth} objects`);
  }
  const keys = Object.keys(template);
  if (keys.length === 0) throw new TransformError(`${where} is an empty object: give it at least one key`);
  budget.keys += keys.length;
  if (budget.keys > TEMPLATE_LIMITS.keys) throw new TransformError(`the template has more than ${TEMPLATE_LIMITS.keys} keys`);
  const fields: Array<[string, Reader]> = keys.map((key) => {
    const inner = [...at, key];
    const name = `template key "${inner.join('.')}"`;
    // An output object built with ordinary assignment would take this key as its prototype.
    if (key === '__proto__') throw new TransformError(`${name} cannot be used as an output key`);
    const value: unknown = template[key];
    if (typeof value === 'string') return [key, compilePath(value, `the path of ${name}`)];
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      return [key, compileObject(value as TemplateSpec, inner, budget)];
    }
    throw new TransformError(`${name} is ${describe(value)}: a template's values are message paths (strings) or objects of them`);
  });
  return (message) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < fields.length; i++) out[fields[i][0]] = fields[i][1](message);
    return out;
  };
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
