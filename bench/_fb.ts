import { runFilterBench } from './filters.js';
await runFilterBench(Number(process.argv[2] ?? 100000), 1);
