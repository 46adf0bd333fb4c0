// Rewind: N retained changes in the log, all already taken in and acked by a
// pull consumer (its position at the end, no delivery rows), then a rewind
// to the earliest change (sluice.rewind_consumer). Times the rewind itself
// and the first claim after it (rewind → first message in hand), then drains
// the rest with the pull bench's HTTP workers. Prints figures; asserts nothing.
//   npx tsx bench/rewind.ts [changes] [workers]
import { pathToFileURL } from 'node:url';
import { ack, claim } from '../src/buffer/claim.js';
import { insertSeries } from '../test/helpers/buffer.js';
import { runPullBench } from './pull.js';

export interface RewindBenchResult {
  changes: number;
  /** What sluice.rewind_consumer said it will redeliver. */
  redelivering: number;
  rewindMs: number;
  /** From the start of the rewind to the first claimed message. */
  firstMessageMs: number;
  drainPerSecond: number;
  drainSeconds: number;
}

const MIN_LSN = '-9223372036854775808';

export async function runRewindBench(changes = 1_000_000, workers = 8, log = console.log): Promise<RewindBenchResult> {
  let redelivering = 0;
  let rewindMs = 0;
  let firstMessageMs = 0;
  const r = await runPullBench({
    messages: changes,
    workers,
    batchSize: 100,
    log,
    prepare: async (pool, consumerId) => {
      const fill0 = performance.now();
      const chunk = 250_000;
      for (let at = 0; at < changes; at += chunk) await insertSeries(pool, consumerId, 1_000 + at, Math.min(chunk, changes - at), Math.max(1, Math.floor(changes / 10)));
      await pool.query('VACUUM ANALYZE sluice.log');
      // Acked already: the consumer took in every change, and holds no delivery rows.
      await pool.query('UPDATE sluice.consumer_positions SET commit_lsn = $2, commit_idx = 0 WHERE consumer_id = $1', [consumerId, 1_000 + changes - 1]);
      await pool.query('DELETE FROM sluice.messages WHERE consumer_id = $1', [consumerId]);
      await pool.query('CHECKPOINT');
      log(`rewind: ${changes.toLocaleString('en')} retained changes, acked, in ${((performance.now() - fill0) / 1000).toFixed(1)} s`);

      const t0 = performance.now();
      redelivering = Number((await pool.query('SELECT sluice.rewind_consumer($1, $2::bigint, 0) AS n', [consumerId, MIN_LSN])).rows[0].n);
      rewindMs = performance.now() - t0;
      const first = await claim(pool, { consumerId, limit: 100, visibilityMs: 60_000, maxAckPending: 10_000, deadLetterBlocksGroup: false });
      firstMessageMs = performance.now() - t0;
      if (first.messages.length === 0) throw new Error('bench: nothing claimed after the rewind');
      const acked = await ack(pool, consumerId, first.messages.map((m) => m.ackId));
      log(`rewind: ${redelivering} to redeliver; rewind ${rewindMs.toFixed(0)} ms, first claim (${first.messages.length} messages, first at LSN ${first.messages[0].commitLsn}) ${firstMessageMs.toFixed(0)} ms after the rewind began`);
      return changes - acked.applied;
    },
  });
  return { changes, redelivering, rewindMs, firstMessageMs, drainPerSecond: r.messagesPerSecond, drainSeconds: r.seconds };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [changes, workers] = process.argv.slice(2).map(Number);
  await runRewindBench(changes || undefined, workers || undefined);
}
