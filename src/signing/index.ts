// Server-side Standard Webhooks signing (node:crypto).
export * from './secrets.js';
export * from './sign.js';
export * from './rotation.js';
