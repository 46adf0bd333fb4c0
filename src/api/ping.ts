// Is the buffer database answering? Used by /ready.
import type { QueryConfig } from 'pg';
import type { Pool } from '../db/pool.js';

/** Resolves true when `SELECT 1` succeeds within timeoutMs, false otherwise (never throws). */
export async function pingBuffer(pool: Pool, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  // The race also bounds the wait for a pool connection, which query_timeout would not.
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  // query_timeout (honoured by pg, missing from its types) frees the client if the server stalls.
  const query = pool.query({ text: 'SELECT 1', query_timeout: timeoutMs } as QueryConfig).then(
    () => true,
    () => false,
  );
  try {
    return await Promise.race([query, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
