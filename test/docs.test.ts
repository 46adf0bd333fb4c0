// The docs stand alone and tell the truth about what exists: every relative
// link in README.md, docs/ and examples/ resolves to a file in the repository,
// nothing cites the private spec folder, and config/sluice.yaml promises no
// endpoint the HTTP server does not have.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const markdown = [
  'README.md',
  ...readdirSync('docs').map((f) => path.join('docs', f)),
  ...readdirSync('examples', { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md') && !f.includes('node_modules'))
    .map((f) => path.join('examples', f)),
].filter((f) => f.endsWith('.md'));

describe('docs', () => {
  it('every relative link points at a file that exists', () => {
    const broken: string[] = [];
    for (const file of markdown) {
      const text = readFileSync(file, 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
        const resolved = path.join(path.dirname(file), decodeURIComponent(target.split('#')[0]));
        if (!existsSync(resolved)) broken.push(`${file}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('never cites spec files that are not in the repository', () => {
    // examples/*/ may point at examples/shared/, which is in the repository.
    for (const file of markdown) expect(readFileSync(file, 'utf8'), file).not.toMatch(/shared\/spec/);
    for (const file of markdown.filter((f) => !f.startsWith('examples'))) expect(readFileSync(file, 'utf8'), file).not.toMatch(/\.\.\/shared\//);
  });

  it('config/sluice.yaml promises no metrics endpoint while there is none', () => {
    const routes = readdirSync('src/http', { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(path.join('src/http', f), 'utf8'))
      .join('\n');
    if (!routes.includes("'/metrics'")) expect(readFileSync('config/sluice.yaml', 'utf8')).not.toMatch(/metrics/i);
  });
});
