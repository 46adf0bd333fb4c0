// The thread a function transform runs in (started by sandbox-worker.ts).
// A user's function that loops runs here, where it blocks no one but its own
// transform: the gateway's event loop keeps serving. Batches are run one at a
// time, in the order they arrive.
import { parentPort, workerData } from 'node:worker_threads';
import { createSandbox } from './sandbox.mjs';

const sandbox = await createSandbox(workerData);

parentPort.on('message', ({ id, batch, count, served }) => {
  parentPort.postMessage({ id, lines: sandbox.run(batch, count, served) });
});
