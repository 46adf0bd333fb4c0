// The Node versions we promise are the ones our dependencies accept: `npm ci`
// on the oldest Node that package.json's engines admits installs every package
// without an EBADENGINE warning (cookie 2, pulled in by fastify's
// light-my-request, wants Node 22; package.json overrides it to cookie 1).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import semver from 'semver';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = <T>(file: string): T => JSON.parse(readFileSync(path.join(ROOT, file), 'utf8')) as T;
const pkg = read<{ engines: { node: string } }>('package.json');
const lock = read<{ packages: Record<string, { engines?: unknown; optional?: boolean }> }>('package-lock.json');
const oldestNode = semver.minVersion(pkg.engines.node)!.version;

describe('engines', () => {
  it('every installed package accepts the oldest Node package.json admits', () => {
    const refused: string[] = [];
    for (const [dir, entry] of Object.entries(lock.packages)) {
      const engines = entry.engines as { node?: unknown } | undefined;
      if (!dir || typeof engines?.node !== 'string') continue;
      // npm leaves out optional packages that do not fit the platform or the Node version.
      if (entry.optional && !existsSync(path.join(ROOT, dir))) continue;
      if (!semver.satisfies(oldestNode, engines.node)) refused.push(`${dir} (node ${engines.node})`);
    }
    expect(refused, `these refuse Node ${oldestNode}`).toEqual([]);
  });

  it('the README promises the same Node version', () => {
    const promise = /needs Node (\d+\.\d+) or later/.exec(readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
    expect(promise?.[1]).toBe(oldestNode.split('.').slice(0, 2).join('.'));
  });

  it('fastify inject (light-my-request) still sends cookies with the overridden cookie package', async () => {
    const app = Fastify();
    app.get('/', async (request) => ({ cookie: request.headers.cookie }));
    try {
      const res = await app.inject({ url: '/', cookies: { a: '1', b: 'x y' } });
      expect(res.json()).toEqual({ cookie: 'a=1; b=x%20y' });
    } finally {
      await app.close();
    }
  });
});
