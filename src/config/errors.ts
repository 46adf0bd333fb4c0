// Configuration problems. Every check (YAML syntax, ${VAR} substitution, schema,
// cross-references) reports the same way: a path into the YAML shape and a
// reason, all collected, so one run shows everything that needs fixing.

export type PathSegment = string | number;

export interface ConfigIssue {
  /** Where, in the YAML shape: `consumers[1].webhook.url`, `webhook.headers["x y"]`. */
  path: string;
  /** What is wrong, completing "<path>: …". */
  reason: string;
  /** 1-based line in the YAML file, when the problem came from one. */
  line?: number;
}

/** An issue before it is placed: path segments are kept so a line can be looked up. */
export interface RawIssue {
  segments: PathSegment[];
  reason: string;
}

export class ConfigError extends Error {
  readonly code = 'SLUICE_CONFIG_INVALID';

  constructor(
    readonly issues: ConfigIssue[],
    readonly origin?: string,
  ) {
    const where = origin ? ` in ${origin}` : '';
    const lines = issues.map((i) => `  ${i.path}: ${i.reason}${i.line ? ` (line ${i.line})` : ''}`);
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    super(`invalid configuration${where} (${count}):\n${lines.join('\n')}`);
    this.name = 'ConfigError';
  }
}

const PLAIN_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** ["consumers", 1, "webhook", "url"] → "consumers[1].webhook.url". */
export function formatPath(segments: PathSegment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (PLAIN_KEY_RE.test(s)) out += out ? `.${s}` : s;
    // Keys such as "public.orders" or "X-Api-Key" would be ambiguous after a dot.
    else out += `[${JSON.stringify(s)}]`;
  }
  return out || '(top level)';
}

export function issue(segments: PathSegment[], reason: string): RawIssue {
  return { segments, reason };
}

/**
 * Places raw issues: formats paths, asks `lineOf` for a line, drops exact
 * duplicates, and orders them as they appear in the file.
 */
export function placeIssues(raw: RawIssue[], lineOf?: (segments: PathSegment[]) => number | undefined): ConfigIssue[] {
  const seen = new Set<string>();
  const out: ConfigIssue[] = [];
  for (const r of raw) {
    const placed: ConfigIssue = { path: formatPath(r.segments), reason: r.reason };
    const key = `${placed.path}\0${placed.reason}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const line = lineOf?.(r.segments);
    if (line !== undefined) placed.line = line;
    out.push(placed);
  }
  // Stable: issues without a line keep their relative order at the end.
  return out
    .map((item, index) => ({ item, index }))
    .sort((a, b) => (a.item.line ?? Infinity) - (b.item.line ?? Infinity) || a.index - b.index)
    .map(({ item }) => item);
}

/** The closest candidate within a couple of edits, for "did you mean …?". */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const guess = closest(word, candidates);
  return guess ? ` (did you mean "${guess}"?)` : '';
}

/** Optimal string alignment distance: a swapped pair ("tabels") counts as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
