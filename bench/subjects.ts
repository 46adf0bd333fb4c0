// Subject matching: a consumer with 100 patterns (literal, "*" and ">"
// tokens mixed) against subjects of 3-5 tokens. Prints the cost per message
// when every subject is new (more distinct subjects than the matcher's cache
// holds) and when subjects repeat (a stream's usual case). Asserts nothing.
//   npx tsx bench/subjects.ts
import { pathToFileURL } from 'node:url';
import { compileSubjects } from '../src/pipeline/route/subjects.js';

export interface SubjectsBenchResult {
  patterns: number;
  uncachedNs: number;
  cachedNs: number;
}

export function runSubjectsBench(log = console.log): SubjectsBenchResult {
  const areas = ['orders', 'sensors', 'users', 'billing', 'app', 'audit', 'search', 'mail', 'jobs', 'cache'];
  const verbs = ['new', 'paid', 'shipped', 'deleted', 'updated', 'insert', 'update', 'delete'];
  const patterns: string[] = [];
  for (let i = 0; patterns.length < 100; i++) {
    const a = areas[i % areas.length];
    const kind = i % 4;
    if (kind === 0) patterns.push(`${a}.r${i}.${verbs[i % verbs.length]}`);
    else if (kind === 1) patterns.push(`${a}.*.${verbs[i % verbs.length]}`);
    else if (kind === 2) patterns.push(`${a}.r${i}.>`);
    else patterns.push(`${a}.*.x${i}.*`);
  }
  // The middle token is the message's own (an id), so that subjects are distinct.
  const subject = (n: number) => `${areas[n % areas.length]}.r${n}.${verbs[n % verbs.length]}${n % 3 === 0 ? `.x${n % 97}` : ''}${n % 5 === 0 ? '.tail' : ''}`;
  const distinct = Array.from({ length: 200_000 }, (_, n) => subject(n));
  const repeat = Array.from({ length: 1000 }, (_, n) => subject(n));
  const time = (subjects: string[], rounds: number) => {
    const m = compileSubjects(patterns);
    let hits = 0;
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < rounds; r++) for (const s of subjects) if (m.matches(s)) hits++;
    const ns = Number(process.hrtime.bigint() - t0) / (subjects.length * rounds);
    return { ns, hits };
  };
  time(distinct, 1); // warm up
  const uncached = time(distinct, 2);
  const cached = time(repeat, 200);
  const result = { patterns: patterns.length, uncachedNs: uncached.ns, cachedNs: cached.ns };
  log(
    `subjects: ${patterns.length} patterns; ${(uncached.ns / 1000).toFixed(2)} µs a message when every subject is new ` +
      `(${((uncached.hits / (2 * distinct.length)) * 100).toFixed(0)}% match), ${(cached.ns / 1000).toFixed(3)} µs when subjects repeat`,
  );
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) runSubjectsBench();
