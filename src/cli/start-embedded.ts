// The embedded Postgres of `sluice start`, and what its failures tell the user:
// a data folder in use names the Postgres and the gateway holding it; any other
// failure is one line (never a stack trace, never `undefined`).
import { EmbeddedPostgresError, startEmbedded, type EmbeddedHandle } from '../db/embedded.js';
import type { Logger } from '../log.js';
import { CliError, runningEmbedded } from './context.js';
import { describeOwner, portOwner } from './port-owner.js';

export async function startEmbeddedPostgres(dir: string, port: number, log: Logger, env = process.env): Promise<EmbeddedHandle> {
  try {
    return await startEmbedded({ dataDir: dir, port, persistent: true }).catch(async (err: unknown) => {
      // Only a taken port is worked around: another program on the usual port, so take a free one
      // (the banner and .sluice/embedded.json show which). Anything else would fail again.
      if (!(err instanceof EmbeddedPostgresError) || err.reason !== 'port_in_use') throw err;
      const by = describeOwner(portOwner(port));
      log.warn({ port, ...(by && { by }) }, 'port in use: the embedded Postgres takes a free port');
      return startEmbedded({ dataDir: dir, port: 0, persistent: true });
    });
  } catch (err) {
    if (err instanceof EmbeddedPostgresError && err.reason === 'data_dir_in_use') {
      const gateway = runningEmbedded(env);
      // Without a live gateway it is a Postgres left behind (its gateway killed with -9): it is the one to stop.
      const holder = gateway ? `, run by the Sluice gateway pid ${gateway.pid} (another \`npm start\` from this folder)` : '';
      const stop = gateway ? `Ctrl-C in its terminal, or kill ${gateway.pid}` : err.holderPid ? `kill ${err.holderPid}` : 'see its postmaster.pid';
      throw new CliError(`${err.message}${holder}: stop it first (${stop}), or set SLUICE_DATA_DIR to another folder`);
    }
    throw new CliError(`embedded Postgres: ${err instanceof Error ? err.message : String(err)}`);
  }
}
