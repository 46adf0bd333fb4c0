// Push delivery (signed webhooks): what the gateway wires in.
export { Dispatcher, type DispatcherDeps, type DispatcherStatus } from './dispatcher.js';
export { startDemoReceiver, type DemoReceiver, type DemoReceiverOptions } from './demo-receiver.js';
export { AddressGuard, SsrfRefusedError } from './ssrf.js';
export { blockedKind } from './special-addresses.js';
export { USER_AGENT, webhookId } from './deliver.js';
export { listAttempts, getHealth, pruneAttempts, type AttemptRow, type HealthRow } from './attempt-queries.js';
export { rotateConsumerSecret } from './secrets.js';
export type { Log } from './worker.js';
