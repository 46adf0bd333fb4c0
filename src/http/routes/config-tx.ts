// Every management-API change to sources and consumers runs like a config
// apply: in one transaction holding the apply lock (so it cannot interleave
// with `sluice config apply` or another API call planning on stale rows),
// notifying 'sluice_config' at commit so every gateway reloads, then reloading
// this process's registry before answering, so the change is visible at once.
import { lockConfigApply, notifyConfigChanged } from '../../config/queries.js';
import { withTransaction, type PoolClient } from '../../db/pool.js';
import type { AppDeps } from '../deps.js';

export async function changeConfig<T>(deps: AppDeps, change: (db: PoolClient) => Promise<T>): Promise<T> {
  const out = await withTransaction(deps.pool, async (db) => {
    await lockConfigApply(db);
    const result = await change(db);
    await notifyConfigChanged(db);
    return result;
  });
  await deps.consumers.reload();
  return out;
}
