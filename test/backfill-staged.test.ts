// The in-memory hand-off between a backfill worker and capture.
import { describe, expect, it } from 'vitest';
import { pack, StagedChunks, unpack } from '../src/backfill/staged.js';

const chunk = (n: number) => ({ chunk: n, schema: 'public', table: 't', records: '{}', recordEnds: Uint32Array.of(2), pks: '["1"]', pkEnds: Uint32Array.of(5) });

describe('pack / unpack', () => {
  it('gives back each text, empty ones and non-BMP characters included', () => {
    const texts = ['{"a":1}', '', '{"name":"𝄞 é\\n"}', '["1","2"]'];
    const { text, ends } = pack(texts);
    expect(texts.map((_, i) => unpack(text, ends, i))).toEqual(texts);
    expect(pack([]).ends.length).toBe(0);
  });
});

describe('StagedChunks', () => {
  it('gives a chunk only by its number, until replaced or dropped', () => {
    const s = new StagedChunks();
    s.put('1', chunk(4));
    expect(s.get('1', 3)).toBeUndefined();
    expect(s.get('1', 4)?.chunk).toBe(4);
    expect(s.get('1', 4)?.chunk).toBe(4); // kept: a failed write is retried
    s.put('1', chunk(5));
    expect(s.get('1', 4)).toBeUndefined();
    s.put('2', chunk(1));
    s.retain(new Set(['2']));
    expect(s.get('1', 5)).toBeUndefined();
    s.drop('2');
    expect(s.get('2', 1)).toBeUndefined();
  });

  it('wakes every waiter at a write, stale ones included, and times out otherwise', async () => {
    const s = new StagedChunks();
    // A waiter nobody awaits any more (its chunk was found stored) stays until its timeout.
    void s.nextWrite(1000);
    const t0 = performance.now();
    const woken = Promise.all([s.nextWrite(1000), s.nextWrite(1000)]);
    setTimeout(() => s.written(), 10);
    await woken;
    expect(performance.now() - t0).toBeLessThan(500);
    const t1 = performance.now();
    await s.nextWrite(30);
    expect(performance.now() - t1).toBeGreaterThanOrEqual(25);
  });
});
