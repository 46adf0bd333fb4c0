// `sluice config export` without secrets in it. A masked value (as in a plan)
// would be applied back as the new value, so the exported file instead leaves
// webhook signing secrets out (apply keeps the ones a consumer has when the file
// declares none) and turns every other secret into a ${VAR} reference, which the
// loader fills from the environment. Applied back with those variables set, the
// file still changes nothing.
import { parseDocument, Scalar } from 'yaml';
import type { SluiceConfig } from './types.js';
import { stringifyConfig } from './yaml-shape.js';

export interface SecretReference {
  /** The environment variable the file reads, e.g. SLUICE_SOURCE_APP_PASSWORD. */
  variable: string;
  /** What it stands for, e.g. "consumer orders-hook: webhook.headers.Authorization". */
  field: string;
}

export interface RedactedExport {
  yaml: string;
  /** Webhook consumers whose signing secrets were left out. */
  omittedSecrets: string[];
  references: SecretReference[];
}

type Path = Array<string | number>;

/** Hands out variable names, each once: two fields never share a variable. */
function variableNames(): (base: string) => string {
  const taken = new Set<string>();
  return (base) => {
    const name = base.toUpperCase().replace(/[^A-Z0-9]/g, '_');
    let out = name;
    for (let n = 2; taken.has(out); n++) out = `${name}_${n}`;
    taken.add(out);
    return out;
  };
}

/**
 * The YAML stringifyConfig prints, without secrets. References are written after
 * stringifyConfig has escaped "${" everywhere, so they stay references; they are
 * double-quoted so that a value such as "123" is not re-read as a number.
 */
export function redactExport(config: SluiceConfig): RedactedExport {
  const name = variableNames();
  const references: SecretReference[] = [];
  const omittedSecrets: string[] = [];
  const replace: Array<[Path, string]> = [];
  const remove: Path[] = [];

  const refer = (base: string, field: string): string => {
    const variable = name(base);
    references.push({ variable, field });
    return `\${${variable}}`;
  };
  const url = (path: Path, value: string | undefined, base: string, owner: string, field: string) => {
    const text = value ? urlWithReferences(value, base, (b, what) => refer(b, `${owner}: ${field}${what}`)) : undefined;
    if (text !== undefined) replace.push([path, text]);
  };

  url(['buffer', 'url'], config.buffer.url, 'SLUICE_BUFFER', 'buffer', 'url');
  if (config.auth.admin_token) replace.push([['auth', 'admin_token'], refer('SLUICE_ADMIN_TOKEN', 'auth.admin_token')]);
  if (config.metrics?.token) replace.push([['metrics', 'token'], refer('SLUICE_METRICS_TOKEN', 'metrics.token')]);
  config.sources.forEach((s, i) => url(['sources', i, 'url'], s.url, `SLUICE_SOURCE_${s.name}`, `source ${s.name}`, 'url'));
  config.consumers.forEach((c, i) => {
    const w = c.webhook;
    if (!w) return;
    const base = `SLUICE_CONSUMER_${c.name}`;
    const owner = `consumer ${c.name}`;
    url(['consumers', i, 'webhook', 'url'], w.url, base, owner, 'webhook.url');
    for (const [header, value] of Object.entries(w.headers)) {
      // An empty value hides nothing, and a variable for it would only be a chore.
      if (value === '') continue;
      const reference = refer(`${base}_HEADER_${header}`, `${owner}: webhook.headers.${header}`);
      replace.push([['consumers', i, 'webhook', 'headers', header], reference]);
    }
    remove.push(['consumers', i, 'webhook', 'secrets']);
    if (w.secrets.length > 0) omittedSecrets.push(c.name);
  });

  const doc = parseDocument(stringifyConfig(config));
  for (const [path, text] of replace) {
    const node = new Scalar(text);
    node.type = Scalar.QUOTE_DOUBLE;
    doc.setIn(path, node);
  }
  for (const path of remove) doc.deleteIn(path);
  return { yaml: doc.toString({ lineWidth: 0 }), omittedSecrets, references };
}

/** A literal "${" in the rest of a URL must stay literal, as stringifyConfig would write it. */
const escape = (text: string) => text.replaceAll('${', () => '$${');

/**
 * The URL with its password (userinfo, and a libpq-style ?password=) replaced by
 * references; the whole URL becomes one reference when its password cannot be
 * cut out cleanly. Undefined when it has no password.
 */
function urlWithReferences(url: string, base: string, refer: (base: string, what: string) => string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (!parsed.password && !parsed.searchParams.getAll('password').some(Boolean)) return undefined;
  const spans = passwordSpans(url);
  if (!hidesPasswords(url, spans)) return refer(`${base}_URL`, '');
  let out = '';
  let at = 0;
  for (const [start, end, what] of spans) {
    out += escape(url.slice(at, start)) + refer(`${base}_PASSWORD`, what);
    at = end;
  }
  return out + escape(url.slice(at));
}

type Span = [start: number, end: number, what: string];

/** Where the password text sits in the URL as written. */
function passwordSpans(url: string): Span[] {
  const spans: Span[] = [];
  const authorityStart = url.indexOf('//') + 2;
  if (authorityStart < 2) return spans;
  const rest = url.slice(authorityStart).search(/[/?#]/);
  const authorityEnd = rest < 0 ? url.length : authorityStart + rest;
  const at = url.lastIndexOf('@', authorityEnd - 1);
  const colon = url.indexOf(':', authorityStart);
  if (at >= authorityStart && colon >= 0 && colon + 1 < at) spans.push([colon + 1, at, ' password']);

  const query = url.indexOf('?', authorityEnd);
  if (query < 0) return spans;
  const hash = url.indexOf('#', query);
  let start = query + 1;
  for (const part of url.slice(start, hash < 0 ? url.length : hash).split('&')) {
    const eq = part.indexOf('=');
    if (eq > 0 && eq + 1 < part.length && decode(part.slice(0, eq)) === 'password') {
      spans.push([start + eq + 1, start + part.length, ' ?password=']);
    }
    start += part.length + 1;
  }
  return spans;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return text;
  }
}

/** True when cutting out the spans leaves no password in the URL as a URL parser reads it. */
function hidesPasswords(url: string, spans: Span[]): boolean {
  let probe = url;
  for (const [start, end] of [...spans].reverse()) probe = probe.slice(0, start) + 'x' + probe.slice(end);
  try {
    const u = new URL(probe);
    return (u.password === '' || u.password === 'x') && u.searchParams.getAll('password').every((v) => v === '' || v === 'x');
  } catch {
    return false;
  }
}

/** The note printed after an export: what is not in the file, and the variables it reads. Names only. */
export function formatExportNote(r: RedactedExport): string {
  if (r.omittedSecrets.length === 0 && r.references.length === 0) return '';
  const lines = ['sluice config export: the file holds no secrets (--show-secrets prints them).'];
  if (r.omittedSecrets.length > 0) {
    lines.push(
      `Left out: the webhook signing secrets of ${r.omittedSecrets.join(', ')}.`,
      '  apply keeps the secrets a consumer has; where it must create the consumer (a new database), it generates new ones.',
    );
  }
  if (r.references.length > 0) {
    lines.push('Replaced by ${VAR} references; set these variables to the values before plan or apply:');
    const width = Math.max(...r.references.map((ref) => ref.variable.length));
    for (const ref of r.references) lines.push(`  ${ref.variable.padEnd(width)}  ${ref.field}`);
  }
  return lines.join('\n');
}
