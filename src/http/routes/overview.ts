// GET /api/overview: every source and consumer with its state and the last
// hour's activity, in one call the console polls every few seconds. Four
// statements whatever the number of consumers (src/metrics/queries.ts, the
// ones a /metrics scrape reads, and src/metrics/activity-queries.ts); a
// scoped token gets its own consumers and no sources.
import type { FastifyInstance } from 'fastify';
import { MINUTES, readActivity, type ActivityRow } from '../../metrics/activity-queries.js';
import { readConsumerBacklog, readConsumerGauges, readSourceGauges } from '../../metrics/queries.js';
import { SCOPED_READ, mayRead } from '../auth.js';
import type { AppDeps, SourceStatus } from '../deps.js';
import { overviewSchema, type SOURCE_STATUSES } from '../schemas/console.js';
import type { SchemaTypes } from '../schemas/from-schema.js';
import { scrubPassword } from './masking.js';

/** Per name, the MINUTES counts of one kind, oldest first (zeros where nothing moved). */
function perMinute(rows: ActivityRow[], kind: ActivityRow['kind']): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const r of rows) {
    if (r.kind !== kind || r.bucket < 0 || r.bucket >= MINUTES) continue;
    let series = out.get(r.name);
    if (!series) out.set(r.name, (series = new Array<number>(MINUTES).fill(0)));
    series[r.bucket] += r.n;
  }
  return out;
}

/** The capture state as this process sees it (GET /api/sources' `status`, in one word). */
function sourceStatus(s: SourceStatus | undefined): (typeof SOURCE_STATUSES)[number] {
  if (!s) return 'unknown';
  if (s.running) return 'running';
  if (s.standing_by) return 'standing_by';
  return s.last_error ? 'failing' : 'starting';
}

export async function overviewRoutes(parent: FastifyInstance, opts: { deps: AppDeps }) {
  const app = parent.withTypeProvider<SchemaTypes>();
  const { deps } = opts;
  const { pool } = deps;

  app.get('/overview', { schema: overviewSchema, config: SCOPED_READ }, async (request) => {
    const principal = request.principal;
    const admin = principal?.admin === true;
    const [sources, consumers, backlog, activity] = await Promise.all([
      // Sources are admin matters: a scoped token sees none (and costs no query for them).
      admin ? readSourceGauges(pool) : Promise.resolve([]),
      readConsumerGauges(pool),
      readConsumerBacklog(pool),
      readActivity(pool),
    ]);
    const captured = perMinute(activity.rows, 'captured');
    const delivered = perMinute(activity.rows, 'delivered');
    const zeros = () => new Array<number>(MINUTES).fill(0);
    const statuses = new Map((deps.capture?.status() ?? []).map((s) => [s.name, s]));
    // The registry's sources (no query): their URLs, to keep passwords out of errors.
    const urls = new Map(deps.consumers.sources().map((s) => [s.name, s.config.url]));
    return {
      generated_at: activity.now.toISOString(),
      window: { minutes: MINUTES, bucket_seconds: 60 },
      sources: sources.map((s) => {
        const status = statuses.get(s.name);
        return {
          name: s.name,
          status: sourceStatus(status),
          position: s.lsn,
          // The slot's lag is known only to the process that streams it.
          lag_bytes: status?.running ? status.lag_bytes : null,
          lag_seconds: s.lag_seconds,
          last_error: status?.last_error ? scrubPassword(status.last_error, urls.get(s.name)) : null,
          captured_per_minute: captured.get(s.name) ?? zeros(),
        };
      }),
      consumers: consumers
        .filter((c) => mayRead(principal, c.name))
        .map((c) => {
          const series = delivered.get(c.name) ?? zeros();
          const ahead = backlog.get(c.name);
          return {
            name: c.name,
            source: c.source,
            kind: c.kind as 'pull' | 'webhook',
            state: c.state as 'active' | 'paused' | 'disabled',
            // Taken in and waiting, plus not yet taken in from the log (GET …/stats' count).
            pending: c.pending + (ahead?.ahead ?? 0),
            pending_at_least: ahead?.capped ?? false,
            in_flight: c.in_flight,
            dead_lettered: c.dead_lettered,
            oldest_pending_age_ms: c.oldest_pending_age_seconds === null ? null : Math.round(c.oldest_pending_age_seconds * 1000),
            delivered_per_minute: series,
            delivered_per_second: series[MINUTES - 2] / 60,
          };
        }),
    };
  });
}
