import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One embedded Postgres per test file is started by test/helpers/pg.ts;
    // two files at once keeps a 2-core machine busy without starving either.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
