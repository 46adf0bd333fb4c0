// A message cut down to the parts a function transform reads (reads.ts), as
// JSON text for the sandbox. Values are sliced from the stored text as they
// stand (scan.ts), so what the function does read is exactly what it would
// have read in the whole message.
import type { ReadTree } from './reads.js';
import { collect, type PathNode } from './scan.js';

/** The cut for one function's reads: message text in, the smaller message's text out. */
export function projector(reads: ReadTree): (text: string) => string {
  let slots = 0;
  // Every node gets a slot: an object kept in part is rebuilt from its
  // children, and a value that is not an object there is kept whole.
  const node = (t: ReadTree): PathNode => {
    const slot = slots++;
    if (t.whole) return { slot, children: null };
    return { slot, children: new Map([...t.children].map(([k, c]) => [k, node(c)])) };
  };
  const root: PathNode = { slot: -1, children: new Map([...reads.children].map(([k, c]) => [k, node(c)])) };
  const keys = new Map<PathNode, string>();
  const label = (n: PathNode): void => {
    for (const [k, c] of n.children ?? []) {
      keys.set(c, `${JSON.stringify(k)}:`);
      label(c);
    }
  };
  label(root);

  const build = (n: PathNode, values: Array<string | undefined>): string => {
    let out = '{';
    for (const c of n.children!.values()) {
      const raw = values[c.slot];
      if (raw === undefined) continue;
      if (out.length > 1) out += ',';
      out += keys.get(c)! + (c.children === null || raw.charCodeAt(0) !== 0x7b /* { */ ? raw : build(c, values));
    }
    return `${out}}`;
  };

  return (text) => {
    try {
      return build(root, collect(text, root, slots));
    } catch {
      // Not a JSON object: handed over as it is, for the sandbox to say why it cannot be read.
      return text;
    }
  };
}
