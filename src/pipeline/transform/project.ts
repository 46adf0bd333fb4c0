// A message cut down to the parts a function transform reads (reads.ts), as
// JSON text for the sandbox. Values are sliced from the stored text as they
// stand (scan.ts), so what the function does read is exactly what it would
// have read in the whole message.
import type { ReadTree } from './reads.js';
import { cut, type PathNode } from './scan.js';

/** The cut for one function's reads: message text in, the smaller message's text out. */
export function projector(reads: ReadTree): (text: string) => string {
  // A node read whole has no children; one read in part, the keys read below it.
  const node = (t: ReadTree): PathNode => ({
    slot: -1,
    children: t.whole ? null : new Map([...t.children].map(([k, c]) => [k, node(c)])),
  });
  const root: PathNode = { slot: -1, children: new Map([...reads.children].map(([k, c]) => [k, node(c)])) };
  return (text) => {
    try {
      return cut(text, root);
    } catch {
      // Not a JSON object: handed over as it is, for the sandbox to say why it cannot be read.
      return text;
    }
  };
}
