// `sluice start`: the gateway, and with no DATABASE_URL an embedded Postgres
// (source and buffer at once) with a demo table, so `npm ci && npm start` on a
// fresh machine shows a captured insert within a minute.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { EmbeddedHandle } from '../db/embedded.js';
import { Gateway } from '../gateway.js';
import { startDemoReceiver } from '../push/demo-receiver.js';
import { createLogger, maskUrl } from '../log.js';
import type { SluiceConfig } from '../config/types.js';
import { configPath, dataDir, readConfig, writeEmbeddedNote } from './context.js';
import { checkHttpPort, httpPortInUse } from './http-port.js';
import { startEmbeddedPostgres } from './start-embedded.js';

const DEMO_TABLE = `
CREATE TABLE IF NOT EXISTS public.demo_orders (
  id          bigserial PRIMARY KEY,
  customer_id integer NOT NULL,
  status      text NOT NULL DEFAULT 'new',
  amount      numeric(10,2) NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
)`;

const EMBEDDED_PORT = 5488;

/** The embedded default's admin token: made once, kept in .sluice/admin-token, printed only when made. */
function embeddedAdminToken(env: NodeJS.ProcessEnv): { token: string; fresh: boolean } {
  const file = path.join(dataDir(env), 'admin-token');
  if (existsSync(file)) return { token: readFileSync(file, 'utf8').trim(), fresh: false };
  const token = 'slk_' + randomBytes(32).toString('base64url');
  writeFileSync(file, token + '\n', { mode: 0o600 });
  return { token, fresh: true };
}

export async function startCommand(flags: Record<string, string | true>, env = process.env): Promise<void> {
  const file = configPath(flags, env);
  const config: SluiceConfig = readConfig(file, env);
  const log = createLogger();
  let embedded: EmbeddedHandle | null = null;
  let bufferUrl = config.buffer.url || env.DATABASE_URL || '';
  let banner: string[] = [];

  await checkHttpPort(config.http.host, config.http.port, file, env);
  if (!bufferUrl) {
    const dir = path.join(dataDir(env), 'pg');
    log.info({ dir }, 'no DATABASE_URL: starting the embedded Postgres');
    embedded = await startEmbeddedPostgres(dir, Number(env.SLUICE_EMBEDDED_PORT ?? EMBEDDED_PORT), log, env);
    // As root, out of the postgres user's reach, the data lives elsewhere: say where, every time.
    if (embedded.linkedFrom) log.info({ dir: embedded.linkedFrom, data: embedded.dataDir }, 'the embedded Postgres data is in a folder the postgres OS user can reach (README: running as root)');
    bufferUrl = embedded.url;
    writeEmbeddedNote({ url: bufferUrl, pid: process.pid }, env);
    const c = new pg.Client({ connectionString: bufferUrl });
    await c.connect();
    await c.query(DEMO_TABLE);
    await c.end();
    if (!config.auth.admin_token) {
      const { token, fresh } = embeddedAdminToken(env);
      config.auth.admin_token = token;
      banner.push(fresh ? `  Admin token (shown once, kept in .sluice/admin-token): ${token}` : '  Admin token: in .sluice/admin-token');
    }
    banner = [
      '',
      'Sluice is running on an embedded Postgres (source and buffer).',
      `  Connect:   psql ${bufferUrl}`,
      `  Try:       psql ${bufferUrl} -c "INSERT INTO demo_orders (customer_id, amount) VALUES (7, 19.90)"`,
      '  Then:      npm run sluice -- status',
      ...(config.http.console === false ? [] : [`  Console:   http://${config.http.host}:${config.http.port}/ (sign in with the admin token)`]),
      ...(embedded.linkedFrom ? [`  Data:      ${embedded.dataDir} (${embedded.linkedFrom} links there; README: running as root)`] : []),
      ...banner,
    ];
  }

  const secretsShown: string[] = [];
  const gateway = new Gateway({
    config,
    bufferUrl,
    log,
    onStopped: async () => {
      await embedded?.stop();
    },
    // Shown once, on the terminal, never through the logger.
    onGeneratedSecret: (consumer, secret) => secretsShown.push(`  Signing secret of ${consumer} (shown once): ${secret}`),
    beforeDispatch: embedded ? (gw) => startDemo(gw, log, banner) : undefined,
  });

  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) process.exit(130);
    log.info({ signal }, 'shutting down');
    gateway.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));

  try {
    await gateway.start();
  } catch (err) {
    await gateway.stop().catch(() => {});
    // Taken between the check above and the gateway's listen.
    if ((err as NodeJS.ErrnoException)?.code === 'EADDRINUSE') throw httpPortInUse(config.http.host, config.http.port, file, env);
    throw err;
  }
  log.info({ buffer: maskUrl(bufferUrl), sources: config.sources.map((s) => s.name), http: gateway.httpAddress }, 'sluice started');
  if (!config.auth.admin_token) {
    log.warn(
      { fix: 'set SLUICE_ADMIN_TOKEN (auth.admin_token) to a long random value, e.g. slk_$(openssl rand -base64 32)' },
      'no admin token: the management API answers 401 to everything, and pull clients need tokens stored earlier',
    );
  }
  banner.push(...secretsShown);
  if (banner.length) process.stdout.write(banner.join('\n') + '\n\n');
}

/** The webhook consumer config/sluice.yaml declares for the embedded demo. */
export const DEMO_CONSUMER = 'demo-webhook';
const DEMO_PORT = 7377;

/** The one URL the demo receiver serves: where config/sluice.yaml points demo-webhook by default. */
export function demoReceiverUrl(env: NodeJS.ProcessEnv = process.env): string {
  return `http://127.0.0.1:${Number(env.SLUICE_DEMO_PORT ?? DEMO_PORT)}/webhook`;
}

/**
 * The embedded default's demo webhook points at a receiver built into the
 * gateway, which verifies each POST as a user's app would and prints it. It
 * serves the consumer named demo-webhook alone, and only while that consumer
 * targets the demo receiver's own URL (DEMO_WEBHOOK_URL pointed elsewhere:
 * no receiver). It never binds another consumer's port, and answers 409 to
 * any delivery not made for that consumer, so it can never ack someone else's
 * messages (they stay pending and are retried).
 */
async function startDemo(gateway: Gateway, log: ReturnType<typeof createLogger>, banner: string[]) {
  const demo = gateway.consumers.get(DEMO_CONSUMER);
  const url = demoReceiverUrl();
  if (demo?.kind !== 'webhook' || demo.config.webhook?.url !== url) return;
  const port = Number(new URL(url).port);
  const receiver = await startDemoReceiver({ port, consumerId: demo.id, secret: demo.config.webhook.secrets, log }).catch((err: Error) => {
    log.warn({ port, err: err.message }, 'demo receiver not started (port busy?)');
    return null;
  });
  if (!receiver) return;
  banner.push(`  Webhooks:  ${demo.name} POSTs each change, signed, to the demo receiver at ${receiver.url}; it verifies and prints them here.`);
  return () => receiver.close();
}
