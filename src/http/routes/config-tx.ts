// Every management-API change to sources and consumers runs like a config
// apply: in one transaction holding the apply lock (so it cannot interleave
// with `sluice config apply` or another API call planning on stale rows),
// notifying 'sluice_config' at commit so every gateway reloads, then reloading
// this process's registry before answering, so the change is visible at once,
// and marking each source's WAL with the new version, so every gateway routes
// the changes made after the answer by the new config (src/capture/config-marker.ts).
import { markConfigChange } from '../../capture/config-marker.js';
import { lockConfigApply, notifyConfigChanged } from '../../config/queries.js';
import { withTransaction, type PoolClient } from '../../db/pool.js';
import type { AppDeps } from '../deps.js';

export async function changeConfig<T>(deps: AppDeps, change: (db: PoolClient) => Promise<T>): Promise<T> {
  let version = 0;
  const out = await withTransaction(deps.pool, async (db) => {
    await lockConfigApply(db);
    const result = await change(db);
    version = await notifyConfigChanged(db);
    return result;
  });
  await deps.consumers.reload();
  await markConfigChange(version, deps.consumers.sources(), String(deps.pool.options.connectionString), () => {
    // Unreachable source: nothing new can be written there meanwhile; the NOTIFY reload covers it.
  });
  return out;
}
