// ${VAR} substitution. It runs on the parsed YAML document, scalar by scalar,
// not on the file's text: a value such as "a: b" or a newline coming from the
// environment can then never change the structure of the file.
//
//   ${VAR}            the variable; an error if it is not set
//   ${VAR:-default}   the default when VAR is unset or empty (as in the shell)
//   $${               a literal "${"
//
// Only values are substituted, never keys. An unquoted value that contained a
// reference is re-read as YAML would read it had the text been written there,
// so `port: ${PORT}` gives a number; quote it to keep a string.
import { isMap, isScalar, isSeq, parse, type Document, type Node } from 'yaml';
import { issue, type PathSegment, type RawIssue } from './errors.js';

export type Env = Record<string, string | undefined>;

const NAME_RE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([^]*))?$/;

/** Expands one string; problems are described without a path (the caller adds it). */
export function expand(text: string, env: Env): { value: string; problems: string[] } {
  let value = '';
  const problems: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      value += '${';
      i += 3;
      continue;
    }
    if (!text.startsWith('${', i)) {
      value += text[i++];
      continue;
    }
    const end = text.indexOf('}', i + 2);
    if (end < 0) {
      problems.push('has "${" without a closing "}" (write "$${" for a literal "${")');
      break;
    }
    const m = NAME_RE.exec(text.slice(i + 2, end));
    if (!m) {
      problems.push(`has a malformed reference "${text.slice(i, end + 1)}" (write \${NAME} or \${NAME:-default})`);
    } else {
      const [, name, fallback] = m;
      const set = env[name];
      if (fallback !== undefined && (set === undefined || set === '')) value += fallback;
      else if (set !== undefined) value += set;
      else problems.push(`variable ${name} is not set (give a default with \${${name}:-default})`);
    }
    i = end + 1;
  }
  return { value, problems };
}

/** Re-reads an unquoted value: numbers and booleans get their YAML type back. */
function retype(value: string): string | number | boolean {
  try {
    const parsed: unknown = parse(value);
    return typeof parsed === 'number' || typeof parsed === 'boolean' ? parsed : value;
  } catch {
    return value;
  }
}

/** Substitutes in place every string value of the document; returns the problems. */
export function substituteVariables(doc: Document, env: Env): RawIssue[] {
  const issues: RawIssue[] = [];
  const visit = (node: unknown, at: PathSegment[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        visit(pair.value, [...at, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => visit(item, [...at, i]));
    } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
      const { value, problems } = expand(node.value, env);
      for (const p of problems) issues.push(issue(at, p));
      node.value = node.type === 'PLAIN' ? retype(value) : value;
    }
    // Aliases point at a node visited where its anchor is defined.
  };
  visit(doc.contents as Node | null, []);
  return issues;
}
