import { runPullBench } from './pull.js';
const COLUMNS = { id: 'int8', group: 'text', status: 'text', amount: 'numeric', customer: 'text', note: 'text' };
const filtered = process.argv[3] === 'f';
await runPullBench({ messages: Number(process.argv[2]), workers: 8, batchSize: 100, consumerPatch: filtered ? { config: { filter: { where: { 'public.orders': "status = 'paid' AND amount >= 10 AND customer LIKE 'customer-%'" } } }, filterColumns: { 'public.orders': COLUMNS } } : undefined });
