// The path and template forms: plain reads of the message, so they run in
// the gateway itself with no sandbox (nothing the user wrote is executed).
// Both are compiled once into a tree of wanted paths (scan.ts), so serving a
// message is one pass over its text plus a few string joins.
//
// Path syntax: keys joined by dots (`record.id`, `metadata.consumer.name`);
// a key of digits also indexes an array (`record.tags.0`). Only the message's
// own data is read: a key that is missing, or a key below a string, number or
// null, gives null.
import { collect, type PathNode } from './scan.js';
import { TransformError, type TemplateSpec } from './spec.js';

/** Message JSON text in, output JSON text out. Throws SyntaxError when the message is not a JSON object. */
export type Extract = (message: string) => string;

/** A template deeper than this or with more keys is a mistake, and costs every message. */
export const TEMPLATE_LIMITS = { depth: 8, keys: 100 } as const;

export function compilePath(path: string): Extract {
  const paths = new PathTree();
  const slot = paths.add(path, 'the path');
  return (message) => collect(message, paths.root, paths.slots)[slot] ?? 'null';
}

/**
 * The output's text is laid out at compile time: its keys and punctuation
 * are fixed strings, with a slot for each path's value between them.
 */
export function compileTemplate(template: TemplateSpec): Extract {
  const paths = new PathTree();
  const parts: Array<string | number> = [];
  layOut(template, [], paths, parts, { keys: 0 });
  // Adjacent fixed strings joined, so that serving alternates text and values.
  const merged: Array<string | number> = [];
  for (const part of parts) {
    const last = merged.length - 1;
    if (typeof part === 'string' && typeof merged[last] === 'string') merged[last] += part;
    else merged.push(part);
  }
  return (message) => {
    const values = collect(message, paths.root, paths.slots);
    let out = '';
    for (let i = 0; i < merged.length; i++) {
      const part = merged[i];
      out += typeof part === 'string' ? part : (values[part] ?? 'null');
    }
    return out;
  };
}

function layOut(template: TemplateSpec, at: string[], paths: PathTree, parts: Array<string | number>, budget: { keys: number }): void {
  const where = at.length === 0 ? 'the template' : `template key "${at.join('.')}"`;
  if (at.length >= TEMPLATE_LIMITS.depth) throw new TransformError(`${where} nests deeper than ${TEMPLATE_LIMITS.depth} objects`);
  const keys = Object.keys(template);
  if (keys.length === 0) throw new TransformError(`${where} is an empty object: give it at least one key`);
  budget.keys += keys.length;
  if (budget.keys > TEMPLATE_LIMITS.keys) throw new TransformError(`the template has more than ${TEMPLATE_LIMITS.keys} keys`);
  parts.push('{');
  keys.forEach((key, n) => {
    const inner = [...at, key];
    const name = `template key "${inner.join('.')}"`;
    parts.push(`${n > 0 ? ',' : ''}${JSON.stringify(key)}:`);
    const value: unknown = template[key];
    if (typeof value === 'string') parts.push(paths.add(value, `the path of ${name}`));
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) layOut(value as TemplateSpec, inner, paths, parts, budget);
    else throw new TransformError(`${name} is ${describe(value)}: a template's values are message paths (strings) or objects of them`);
  });
  parts.push('}');
}

/** The wanted paths as a tree; the same path added twice shares its slot. */
class PathTree {
  readonly root: PathNode = { slot: -1, children: new Map() };
  slots = 0;

  add(path: string, where: string): number {
    if (path === '') throw new TransformError(`${where} is empty`);
    const keys = path.split('.');
    if (keys.some((k) => k === '')) {
      throw new TransformError(`${where} "${path}" has an empty key: keys are joined by single dots, with none at either end`);
    }
    let node = this.root;
    for (const key of keys) {
      node.children ??= new Map();
      let child = node.children.get(key);
      if (!child) {
        child = { slot: -1, children: null };
        node.children.set(key, child);
      }
      node = child;
    }
    if (node.slot < 0) node.slot = this.slots++;
    return node.slot;
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
