// `sluice tail <consumer> [--ack]`: long-polls the pull API and prints each
// message as it arrives. Without --ack messages stay in flight until their
// visibility timeout and are then delivered again (to tail or to workers).
import { apiTarget } from './api-target.js';
import { CliError } from './context.js';

interface Item {
  ack_id: string;
  data: { action: string; record: unknown; changes: unknown; metadata: { table_schema: string; table_name: string; record_pks: string[]; commit_lsn: number; commit_idx: number } };
}

export async function tailCommand(positional: string[], flags: Record<string, string | true>, env = process.env): Promise<void> {
  const consumer = positional[0];
  if (!consumer) throw new CliError('usage: sluice tail <consumer> [--ack] [--url http://127.0.0.1:7376] [--token slk_…] [--max N]', 2);
  const { base, headers } = apiTarget(flags, env);
  const max = flags.max ? Number(flags.max) : Infinity;
  const url = `${base}/api/http_pull_consumers/${encodeURIComponent(consumer)}`;
  let seen = 0;
  let stop = false;
  process.once('SIGINT', () => (stop = true));
  while (!stop && seen < max) {
    const res = await fetch(`${url}/receive`, { method: 'POST', headers, body: JSON.stringify({ batch_size: 100, wait_for: 30_000 }) });
    const body = (await res.json()) as { data?: Item[]; summary?: string };
    if (!res.ok) throw new CliError(`receive failed (${res.status}): ${body.summary ?? 'no summary'}`);
    const items = body.data ?? [];
    for (const it of items) {
      const m = it.data;
      process.stdout.write(
        `${m.metadata.table_schema}.${m.metadata.table_name} ${m.action} [${m.metadata.record_pks.join(',')}] ` +
          `${JSON.stringify(m.record)}${m.changes && Object.keys(m.changes).length ? ` changes=${JSON.stringify(m.changes)}` : ''}\n`,
      );
    }
    seen += items.length;
    if (flags.ack && items.length) {
      const r = await fetch(`${url}/ack`, { method: 'POST', headers, body: JSON.stringify({ ack_ids: items.map((i) => i.ack_id) }) });
      if (!r.ok) throw new CliError(`ack failed (${r.status})`);
    }
  }
}
