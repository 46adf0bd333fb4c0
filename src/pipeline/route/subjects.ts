// Subjects and subject patterns, as Sequin's streams and NATS have them:
//   subject   dot-separated tokens of [A-Za-z0-9_-]: "orders.new",
//             "sensors.temperature.us-west"
//   pattern   the same, where a token may be "*" (exactly one token) or, as the
//             last token only, ">" (one or more tokens): "orders.*",
//             "sensors.>". "a.*" matches "a.b", not "a" nor "a.b.c"; "a.>"
//             matches "a.b" and "a.b.c", not "a".
// A consumer's patterns are compiled once into a tree of tokens, so a message
// is matched by one walk down it however many patterns there are (a literal
// token is a map lookup; only "*" branches), and subjects seen recently are
// answered from a small cache: a stream's subjects repeat.

/** Longest subject or pattern accepted (NATS allows more; nothing real needs it). */
export const SUBJECT_MAX_LENGTH = 255;

const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Why `s` is not a subject, or null when it is one. */
export function subjectError(s: string): string | null {
  return syntaxError(s, false);
}

/** Why `s` is not a subject pattern, or null when it is one. */
export function patternError(s: string): string | null {
  return syntaxError(s, true);
}

function syntaxError(s: string, pattern: boolean): string | null {
  if (typeof s !== 'string' || s.length === 0) return 'must be a non-empty string';
  if (s.length > SUBJECT_MAX_LENGTH) return `is longer than ${SUBJECT_MAX_LENGTH} characters`;
  const tokens = s.split('.');
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === '') return `has an empty token (at token ${i + 1}): tokens are separated by single dots, with none at either end`;
    if (pattern && t === '*') continue;
    if (pattern && t === '>') {
      if (i !== tokens.length - 1) return '">" may only be the last token';
      continue;
    }
    if (!TOKEN.test(t)) {
      const wild = t.includes('*') || t.includes('>');
      if (wild && !pattern) return `token "${t}": a subject has no wildcards ("*" and ">" are for patterns)`;
      if (wild) return `token "${t}": "*" and ">" must be whole tokens`;
      return `token "${t}" has characters other than A-Z, a-z, 0-9, "_" and "-"`;
    }
  }
  return null;
}

/**
 * A name as one subject token: each character outside A-Z a-z 0-9 _ - becomes
 * "_" ("order items" -> "order_items"; "" -> "_"). Two names that differ only
 * there share a token: select such tables by the table list instead.
 */
export function subjectToken(name: string): string {
  return name.length === 0 ? '_' : name.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** The subject of a captured change: <database>.<schema>.<table>.<action>. */
export function changeSubject(database: string, schema: string, table: string, action: string): string {
  return `${subjectToken(database)}.${subjectToken(schema)}.${subjectToken(table)}.${subjectToken(action)}`;
}

interface Node {
  literal: Map<string, Node>;
  star: Node | null;
  /** A pattern ends here with ">": anything of one token or more below matches. */
  rest: boolean;
  /** A pattern ends exactly here. */
  end: boolean;
}

const node = (): Node => ({ literal: new Map(), star: null, rest: false, end: false });

const CACHE_SIZE = 4096;

export interface SubjectMatcher {
  /** Whether `subject` matches any of the patterns. */
  matches(subject: string): boolean;
  readonly patterns: readonly string[];
}

/** Compiles valid patterns (check each with patternError first); throws on an invalid one. */
export function compileSubjects(patterns: readonly string[]): SubjectMatcher {
  const root = node();
  for (const p of patterns) {
    const why = patternError(p);
    if (why) throw new Error(`subject pattern "${p}" ${why}`);
    let at = root;
    const tokens = p.split('.');
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t === '>') {
        at.rest = true;
        break;
      }
      let next = t === '*' ? at.star : at.literal.get(t);
      if (!next) {
        next = node();
        if (t === '*') at.star = next;
        else at.literal.set(t, next);
      }
      at = next;
      if (i === tokens.length - 1) at.end = true;
    }
  }
  // Cleared when full rather than evicted one by one: cheap, and a stream's
  // working set of subjects is usually far smaller.
  const cache = new Map<string, boolean>();
  return {
    patterns: [...patterns],
    matches(subject: string): boolean {
      const hit = cache.get(subject);
      if (hit !== undefined) return hit;
      const result = walk(root, subject.split('.'), 0);
      if (cache.size >= CACHE_SIZE) cache.clear();
      cache.set(subject, result);
      return result;
    },
  };
}

function walk(at: Node, tokens: string[], i: number): boolean {
  if (i === tokens.length) return at.end;
  // ">" here takes this token and all after it.
  if (at.rest) return true;
  const lit = at.literal.get(tokens[i]);
  if (lit && walk(lit, tokens, i + 1)) return true;
  return at.star !== null && walk(at.star, tokens, i + 1);
}
