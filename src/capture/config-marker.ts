// The 'sluice_config' marker: after a config change commits, its version is
// written into each source's WAL as a non-transactional logical message. A
// capture that reads it waits until its registry holds that version before it
// decodes anything after it (src/capture/session.ts), so a change made on a
// source after the config call returned is always routed by the new config,
// whichever process made the call (this gateway, another one, the CLI).
import pg from 'pg';
import type { SourceConfig } from '../config/types.js';

export const CONFIG_MARKER_PREFIX = 'sluice_config';

const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Writes the marker on every source's database (once per distinct URL). A
 * database that cannot be reached is reported, not thrown: no change can be
 * made on it meanwhile either, and every gateway reloads on the NOTIFY anyway.
 */
export async function markConfigChange(
  version: number,
  sources: ReadonlyArray<{ config: SourceConfig }>,
  bufferUrl: string,
  onError: (source: string, err: Error) => void,
): Promise<void> {
  const byUrl = new Map<string, string>();
  for (const s of sources) byUrl.set(s.config.url || bufferUrl, s.config.name);
  await Promise.all(
    [...byUrl].map(async ([url, name]) => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: 'sluice-config-marker' });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT pg_logical_emit_message(false, $1, $2)', [CONFIG_MARKER_PREFIX, String(version)]);
      } catch (err) {
        onError(name, err as Error);
      } finally {
        await client.end().catch(() => {});
      }
    }),
  );
}
