// The package's main entry (`import … from 'sluice'`): server-side Standard
// Webhooks signing, the same code Sluice signs its deliveries with, for
// services that send their own webhooks beside it or test receivers. Receivers
// verify with 'sluice/webhooks' (src/receive), which has no dependencies.
export * from './signing/index.js';
