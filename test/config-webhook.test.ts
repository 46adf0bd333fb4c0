import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, stringifyConfig } from '../src/config/load.js';

const base = (extra: string) => `
sources:
  - name: app
    tables: [public.orders]
consumers:
  - name: hook
    source: app
    kind: webhook
    tables: [public.orders]
    webhook:
      url: https://example.com/hook
${extra}`;

describe('webhook batching and auto-disable settings', () => {
  it('are optional, and absent from the normalised config when not given', () => {
    const c = loadConfig({ text: base('') }, {});
    expect(c.consumers[0].webhook).not.toHaveProperty('batched');
    expect(c.consumers[0].webhook).not.toHaveProperty('disable_after_ms');
  });

  it('batched: false and disable_after: 2d are read, and survive an export', () => {
    const c = loadConfig({ text: base('      batched: false\n      disable_after: 2d\n') }, {});
    expect(c.consumers[0].webhook?.batched).toBe(false);
    expect(c.consumers[0].webhook?.disable_after_ms).toBe(2 * 24 * 3600 * 1000);
    expect(loadConfig({ text: stringifyConfig(c) }, {}).consumers[0].webhook).toEqual(c.consumers[0].webhook);
  });

  it('bad values name their path', () => {
    expect(() => loadConfig({ text: base('      batched: sometimes\n') }, {})).toThrow(/consumers\[0\]\.webhook\.batched/);
    expect(() => loadConfig({ text: base('      disable_after: never\n') }, {})).toThrow(ConfigError);
  });
});
