// Scheduled jobs (node-cron).
export { Jobs, DEFAULT_ATTEMPT_RETENTION_MS, DEFAULT_VACUUM_MIN_DEAD_TUPLES, type JobsOptions } from './scheduler.js';
