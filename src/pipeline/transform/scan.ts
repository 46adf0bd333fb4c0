// Reads values out of a message's JSON text as text, without parsing it.
//
// The path and template forms must hand values on exactly as captured: an
// int8 is a JSON number with all its digits (docs/values.md), and floats keep
// the digits Postgres printed (`-0`, `1.5e-07`). JSON.parse followed by
// JSON.stringify would round the one and rewrite the others. So the wanted
// values are sliced out of the text as they stand, in one pass that steps
// over everything else and stops once every wanted value is found.
//
// The paths form a tree (PathNode); a node with a slot is a wanted value. A
// duplicate key (which the envelope never has) yields its first value.

export interface PathNode {
  /** Index in the output of the value at this node, or -1 when only its descendants are wanted. */
  slot: number;
  /** Wanted keys below (a key of digits also matches that index of an array); null for a leaf. */
  children: Map<string, PathNode> | null;
}

/** The raw JSON text of each slot's value; undefined where the path leads nowhere. Throws SyntaxError on malformed text. */
export function collect(text: string, root: PathNode, slots: number): Array<string | undefined> {
  const walk = new Walk(text, slots);
  walk.ws();
  if (text.charCodeAt(walk.i) !== OPEN_OBJECT) throw walk.error('the message is not a JSON object');
  walk.object(root);
  return walk.out;
}

/**
 * The message with only the members the tree wants, as JSON text: a node
 * without children keeps its value whole, as do values that are not objects
 * where the tree goes on below them. Members keep their order and their text.
 * Throws SyntaxError on malformed text.
 */
export function cut(text: string, root: PathNode): string {
  const walk = new Walk(text, 0);
  walk.ws();
  if (text.charCodeAt(walk.i) !== OPEN_OBJECT) throw walk.error('the message is not a JSON object');
  return walk.cutObject(root, true);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

class Walk {
  i = 0;
  readonly out: Array<string | undefined>;
  private remaining: number;

  constructor(
    private readonly s: string,
    slots: number,
  ) {
    this.out = new Array<string | undefined>(slots);
    this.remaining = slots;
  }

  error(what: string): SyntaxError {
    return new SyntaxError(`${what} (at character ${this.i + 1})`);
  }

  ws(): void {
    const s = this.s;
    let c = s.charCodeAt(this.i);
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = s.charCodeAt(++this.i);
  }

  /** At `{`: visits the wanted members, steps over the rest; returns early once nothing is left to find. */
  object(node: PathNode): void {
    const s = this.s;
    this.i++;
    this.ws();
    if (s.charCodeAt(this.i) === CLOSE_OBJECT) {
      this.i++;
      return;
    }
    for (;;) {
      const key = this.key();
      this.ws();
      if (s.charCodeAt(this.i) !== COLON) throw this.error('expected ":" in the message');
      this.i++;
      this.ws();
      const child = node.children!.get(key);
      if (child) this.member(child);
      else this.skip();
      if (this.remaining === 0) return;
      if (this.next(CLOSE_OBJECT)) return;
    }
  }

  /**
   * At `{`: see cut(). The root stops once it has every member it wants (the
   * rest is never read): its keys are the envelope's own, never repeated.
   * Below the root a repeated key is kept each time, so that JSON.parse of
   * the cut takes the last, as it would of the whole.
   */
  cutObject(node: PathNode, root = false): string {
    const s = this.s;
    const wanted = node.children!;
    if (root && wanted.size === 0) return '{}';
    this.i++;
    this.ws();
    if (s.charCodeAt(this.i) === CLOSE_OBJECT) {
      this.i++;
      return '{}';
    }
    let out = '{';
    let found = 0;
    for (;;) {
      this.ws();
      const keyStart = this.i;
      const child = wanted.get(this.key());
      const keyEnd = this.i;
      this.ws();
      if (s.charCodeAt(this.i) !== COLON) throw this.error('expected ":" in the message');
      this.i++;
      this.ws();
      if (child) {
        const start = this.i;
        let value: string;
        if (child.children !== null && s.charCodeAt(start) === OPEN_OBJECT) value = this.cutObject(child);
        else {
          this.skip();
          value = s.slice(start, this.i);
        }
        out += (found++ === 0 ? '' : ',') + s.slice(keyStart, keyEnd) + ':' + value;
        if (root && found === wanted.size) return out + '}';
      } else this.skip();
      if (this.next(CLOSE_OBJECT)) return out + '}';
    }
  }

  /** At `[`: as object(), the element's index standing for its key. */
  private array(node: PathNode): void {
    const s = this.s;
    this.i++;
    this.ws();
    if (s.charCodeAt(this.i) === CLOSE_ARRAY) {
      this.i++;
      return;
    }
    for (let index = 0; ; index++) {
      this.ws();
      const child = node.children!.get(String(index));
      if (child) this.member(child);
      else this.skip();
      if (this.remaining === 0) return;
      if (this.next(CLOSE_ARRAY)) return;
    }
  }

  /** After a member: true at the closing bracket (stepped over), false after a comma. */
  private next(close: number): boolean {
    this.ws();
    const c = this.s.charCodeAt(this.i++);
    if (c === close) return true;
    if (c !== COMMA) throw this.error(`expected "," or "${String.fromCharCode(close)}" in the message`);
    return false;
  }

  private member(node: PathNode): void {
    const start = this.i;
    const c = this.s.charCodeAt(start);
    if (node.children !== null && c === OPEN_OBJECT) this.object(node);
    else if (node.children !== null && c === OPEN_ARRAY) this.array(node);
    else this.skip();
    if (node.slot >= 0 && this.out[node.slot] === undefined) {
      this.out[node.slot] = this.s.slice(start, this.i);
      this.remaining--;
    }
  }

  /** A member's name, decoded only when it holds escapes. */
  private key(): string {
    this.ws();
    const start = this.i;
    if (this.s.charCodeAt(start) !== QUOTE) throw this.error('expected a key in the message');
    this.string();
    const raw = this.s.slice(start, this.i);
    return raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  }

  /** At `"`: steps past the string. indexOf finds the quotes: most of an envelope's text is inside strings. */
  private string(): void {
    const s = this.s;
    let from = this.i + 1;
    for (;;) {
      const quote = s.indexOf('"', from);
      if (quote < 0) throw this.error('a string in the message is not closed');
      // The quote closes the string unless an odd number of backslashes stands before it.
      let slashes = 0;
      while (s.charCodeAt(quote - 1 - slashes) === BACKSLASH) slashes++;
      if (slashes % 2 === 0) {
        this.i = quote + 1;
        return;
      }
      from = quote + 1;
    }
  }

  /** Steps over one value, leaving i just after it. */
  private skip(): void {
    const s = this.s;
    const c = s.charCodeAt(this.i);
    if (c === QUOTE) {
      this.string();
      return;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      let depth = 0;
      for (; this.i < s.length; this.i++) {
        const d = s.charCodeAt(this.i);
        if (d === QUOTE) {
          this.string();
          this.i--;
        } else if (d === OPEN_OBJECT || d === OPEN_ARRAY) depth++;
        else if ((d === CLOSE_OBJECT || d === CLOSE_ARRAY) && --depth === 0) {
          this.i++;
          return;
        }
      }
      throw this.error('an object or array in the message is not closed');
    }
    // A number, true, false or null: up to the next delimiter.
    const start = this.i;
    for (; this.i < s.length; this.i++) {
      const d = s.charCodeAt(this.i);
      if (d === COMMA || d === CLOSE_OBJECT || d === CLOSE_ARRAY || d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) break;
    }
    if (this.i === start) throw this.error('expected a value in the message');
  }
}
