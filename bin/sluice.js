#!/usr/bin/env node
// Runs the TypeScript entry point through tsx, so `npm start`, `npx sluice` and
// the Docker image all execute the same sources without a separate build step.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
