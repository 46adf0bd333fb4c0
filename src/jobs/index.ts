// Scheduled jobs (node-cron).
export { Jobs, DEFAULT_ATTEMPT_RETENTION_MS, type JobsOptions } from './scheduler.js';
