// A taken HTTP port stops `sluice start` before anything starts (the gateway's
// own listen comes after migrations and capture), with who holds it.
import { createServer } from 'node:net';
import { CliError, runningEmbedded } from './context.js';
import { describeOwner, portOwner } from './port-owner.js';

export async function checkHttpPort(host: string, port: number, configFile: string, env = process.env): Promise<void> {
  if (!port) return;
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const probe = createServer();
    probe.once('error', resolve);
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
  });
  // Other failures (a host that is not ours, a privileged port) are the listen's own to report.
  if (err?.code === 'EADDRINUSE') throw httpPortInUse(host, port, configFile, env);
}

export function httpPortInUse(host: string, port: number, configFile: string, env = process.env): CliError {
  const owner = portOwner(port);
  const gateway = runningEmbedded(env);
  const by =
    owner && owner.pid === gateway?.pid ? ` by the Sluice gateway pid ${owner.pid} (another \`npm start\` from this folder)` : owner ? ` by ${describeOwner(owner)}` : '';
  return new CliError(`HTTP port ${port} on ${host} is in use${by}: stop that process, or give this one another port (http.port in ${configFile}; SLUICE_HTTP_PORT in the default config)`);
}
