// Which parts of the message a function transform can read, found from its
// source before it runs, so the sandbox is handed only those parts.
//
// Why: QuickJS parses JSON at about 35 MB/s, and parsing the whole envelope
// was most of a typical function's cost. A function that picks five fields of
// a 364-character envelope took 14.0 µs a message in the sandbox (best of
// ten rounds); handed the 132 characters it reads, 8.3 µs, plus ~1.5 µs to
// cut the text on the gateway's thread.
//
// The rule that keeps this invisible to the function: a part of the message
// is left out only when the function provably never looks at it. The
// parameter must appear only as the start of fixed property reads
// (`m.record.id`, `m["action"]`, `m.metadata?.commit_timestamp`) or be
// destructured with fixed keys; each such read keeps the value at its path,
// and a value kept whole keeps everything below it. Any other use of the
// parameter (passing it to a function, spreading it, `Object.keys(m)`,
// `for…in`, `m[key]`, `typeof m`, assigning it, `arguments`, `eval`) keeps
// the whole message. So an object that reaches anything able to list,
// stringify or test its keys is always whole; a partly kept object is only
// ever read key by key, and every key read is kept.
//
// Two details make that hold:
//  - A method called on a read (`m.record.hasOwnProperty('x')`,
//    `m.record.id.toFixed(2)`) sees its receiver: the receiver is kept whole
//    and the method's name is not taken for a field.
//  - A path through a value that turns out not to be an object (null, a
//    string's `.length`, an array) keeps that value whole (see project.ts).
//
// One way remains for a function to notice, and it is left open on purpose:
// a getter it installs on Object.prototype and then reaches through a missing
// key of a partly kept object sees that object's `this`. Closing it would
// take freezing Object.prototype for every function, which breaks ordinary
// assignments such as `out.toString = …` (the "override mistake"); a function
// that goes this far only changes its own output.
//
// The analysis is conservative by construction: an identifier with the
// parameter's name counts as the parameter wherever it appears (an inner
// variable that shadows it can only make more of the message kept).
import { parseFunctionSource } from './syntax.js';

/** What a function reads: `whole`, or the keys below this point it reads (each with what it reads below). */
export interface ReadTree {
  whole: boolean;
  children: Map<string, ReadTree>;
}

interface AnyNode {
  type: string;
  [key: string]: unknown;
}

/**
 * The parts of the message the function reads, or null when it may read all
 * of it (or the source is not a function checkFunctionSource accepts).
 */
export function messageReads(source: string): ReadTree | null {
  let fn: AnyNode;
  try {
    fn = parseFunctionSource(source) as unknown as AnyNode;
  } catch {
    return null;
  }

  const root = tree();
  const params = fn.params as AnyNode[];
  let name: string | null = null;
  let param: AnyNode | null = params.length > 0 ? params[0] : null;
  if (param?.type === 'AssignmentPattern') param = param.left as AnyNode;
  if (param?.type === 'Identifier') name = param.name as string;
  else if (param?.type === 'ObjectPattern') {
    if (!pattern(param, root)) return null;
  } else if (param !== null) return null;

  const references: Array<{ node: AnyNode; parents: AnyNode[] }> = [];
  let opaque = false;
  const visit = (node: AnyNode, parents: AnyNode[]): void => {
    if (opaque) return;
    if (node.type === 'Identifier') {
      const id = node.name as string;
      if (id === 'arguments' || id === 'eval') opaque = true;
      else if (id === name && node !== param) references.push({ node, parents: [...parents] });
      return;
    }
    if (node.type === 'WithStatement') {
      opaque = true;
      return;
    }
    parents.push(node);
    for (const [key, value] of Object.entries(node)) {
      if (!isChild(node, key)) continue;
      if (Array.isArray(value)) {
        for (const item of value) if (isNode(item)) visit(item, parents);
      } else if (isNode(value)) visit(value, parents);
    }
    parents.pop();
  };
  visit(fn, []);
  if (opaque) return null;

  for (const { node, parents } of references) {
    const path = readPath(node, parents);
    if (path === null || path.length === 0) return null;
    keep(root, path);
  }
  return root;
}

const tree = (): ReadTree => ({ whole: false, children: new Map() });

const isNode = (v: unknown): v is AnyNode => v !== null && typeof v === 'object' && typeof (v as AnyNode).type === 'string';

/** Whether node[key] holds nodes that may be references (names of keys, labels and the like are not). */
function isChild(node: AnyNode, key: string): boolean {
  if (key === 'type' || key === 'start' || key === 'end' || key === 'loc' || key === 'range') return false;
  switch (node.type) {
    case 'MemberExpression':
      return key !== 'property' || node.computed === true;
    case 'Property':
    case 'MethodDefinition':
    case 'PropertyDefinition':
      return key !== 'key' || node.computed === true;
    case 'LabeledStatement':
    case 'BreakStatement':
    case 'ContinueStatement':
      return key !== 'label';
    case 'MetaProperty':
      return false;
    default:
      return true;
  }
}

/**
 * The fixed path a reference to the parameter starts, as far as it goes; []
 * when the parameter is used some other way (the whole message), null when
 * the analysis gives up.
 */
function readPath(node: AnyNode, parents: AnyNode[]): string[] | null {
  const path: string[] = [];
  let current = node;
  let at = parents.length - 1;
  for (; at >= 0; at--) {
    const parent = parents[at];
    if (parent.type === 'ChainExpression') {
      current = parent;
      continue;
    }
    if (parent.type !== 'MemberExpression' || parent.object !== current) break;
    const key = memberKey(parent);
    if (key === null) break;
    path.push(key);
    current = parent;
  }
  const parent = at >= 0 ? parents[at] : null;
  // A method call's receiver is the object before the method's name.
  const called = (parent?.type === 'CallExpression' && parent.callee === current) || (parent?.type === 'TaggedTemplateExpression' && parent.tag === current);
  if (called) path.pop();
  return path;
}

/** A member's fixed key: `.name`, `["text"]`, `[0]`; null when computed from anything else. */
function memberKey(member: AnyNode): string | null {
  const property = member.property as AnyNode;
  if (!member.computed) return property.type === 'Identifier' ? (property.name as string) : null;
  if (property.type !== 'Literal') return null;
  const value = property.value;
  // String(number) is how JavaScript turns a number into a property key.
  return typeof value === 'string' || typeof value === 'number' ? String(value) : null;
}

/** The keys an object pattern reads into `node`; false when it reads in a way that needs the whole object (a rest element). */
function pattern(objectPattern: AnyNode, node: ReadTree): boolean {
  for (const property of objectPattern.properties as AnyNode[]) {
    if (property.type !== 'Property' || property.computed) return false;
    const keyNode = property.key as AnyNode;
    const key =
      keyNode.type === 'Identifier' ? (keyNode.name as string) : keyNode.type === 'Literal' && (typeof keyNode.value === 'string' || typeof keyNode.value === 'number') ? String(keyNode.value) : null;
    if (key === null) return false;
    let value = property.value as AnyNode;
    if (value.type === 'AssignmentPattern') value = value.left as AnyNode;
    if (value.type === 'ObjectPattern') {
      const child = node.children.get(key) ?? tree();
      node.children.set(key, child);
      if (!child.whole && !pattern(value, child)) keep(node, [key]);
    } else {
      keep(node, [key]);
    }
  }
  return true;
}

/** Marks the value at `path` below `node` as read whole. */
function keep(node: ReadTree, path: string[]): void {
  let at = node;
  for (const key of path) {
    if (at.whole) return;
    let child = at.children.get(key);
    if (!child) {
      child = tree();
      at.children.set(key, child);
    }
    at = child;
  }
  at.whole = true;
  at.children.clear();
}
