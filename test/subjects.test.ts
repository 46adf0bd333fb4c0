// Subject syntax and wildcard matching (src/pipeline/route/subjects.ts).
import { describe, expect, it } from 'vitest';
import { compileSubjects, patternError, subjectError } from '../src/pipeline/route/subjects.js';

describe('subject patterns', () => {
  const table: Array<[string, string, boolean]> = [
    ['a', 'a', true],
    ['a', 'b', false],
    ['a', 'a.b', false],
    ['a.b', 'a.b', true],
    ['a.b', 'a.c', false],
    ['a.*', 'a.b', true],
    ['a.*', 'a', false],
    ['a.*', 'a.b.c', false],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c', true],
    ['a.>', 'a', false],
    ['a.>', 'b.c', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['>', 'a', true],
    ['>', 'a.b.c', true],
    ['*.b', 'a.b', true],
    ['*.b', 'a.c', false],
    ['*.*.c', 'x.y.c', true],
    ['*.*.c', 'x.c', false],
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.b.d', false],
    ['a.*.>', 'a.b', false],
    ['a.*.>', 'a.b.c', true],
    ['a.*.>', 'a.b.c.d', true],
    ['orders.*', 'orders.new', true],
    ['sensors.>', 'sensors.temperature.us-west', true],
    ['app.public.orders.*', 'app.public.orders.insert', true],
    ['app.public.*.delete', 'app.public.orders.delete', true],
    ['app.public.*.delete', 'app.public.orders.update', false],
    ['A_b-1', 'A_b-1', true],
    ['A_b-1', 'a_b-1', false],
  ];
  it.each(table)('%s against %s: %s', (pattern, subject, expected) => {
    const m = compileSubjects([pattern]);
    expect(m.matches(subject)).toBe(expected);
    // Asked again: the answer comes from the matcher's cache.
    expect(m.matches(subject)).toBe(expected);
  });

  it('matches when any of several overlapping patterns does (a literal branch failing falls back to "*")', () => {
    const m = compileSubjects(['a.b.c', 'a.*.d', 'x.>', 'a.b']);
    expect(m.matches('a.b.d')).toBe(true);
    expect(m.matches('a.b.c')).toBe(true);
    expect(m.matches('a.b')).toBe(true);
    expect(m.matches('a.z.d')).toBe(true);
    expect(m.matches('a.b.e')).toBe(false);
    expect(m.matches('x')).toBe(false);
    expect(m.matches('x.y.z')).toBe(true);
    expect(compileSubjects([]).matches('a')).toBe(false);
  });

  it('names what is wrong with a malformed subject or pattern', () => {
    expect(subjectError('orders.new')).toBeNull();
    expect(patternError('orders.*')).toBeNull();
    expect(patternError('>')).toBeNull();
    expect(subjectError('')).toMatch(/non-empty/);
    expect(subjectError('a..b')).toMatch(/empty token \(at token 2\)/);
    expect(subjectError('.a')).toMatch(/empty token/);
    expect(subjectError('a.')).toMatch(/empty token/);
    expect(subjectError('a.*')).toMatch(/no wildcards/);
    expect(subjectError('a b')).toMatch(/characters other than/);
    expect(subjectError('ä')).toMatch(/characters other than/);
    expect(subjectError('x'.repeat(256))).toMatch(/longer than 255/);
    expect(patternError('a.>.b')).toMatch(/only be the last token/);
    expect(patternError('a*')).toMatch(/whole tokens/);
    expect(patternError('a.b>')).toMatch(/whole tokens/);
    expect(() => compileSubjects(['a..b'])).toThrow(/empty token/);
  });
});
