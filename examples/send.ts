// Sends one signed test delivery to a running example, so you can try it
// without a running Sluice:
//   SLUICE_WEBHOOK_SECRET=whsec_… npx tsx examples/send.ts http://127.0.0.1:3000/webhooks
// Send twice with the same --id msg_… to see the webhook-id de-duplication.
import { randomUUID } from 'node:crypto';
import { webhookHeaders } from '../src/signing/index.js';

const [url, ...rest] = process.argv.slice(2);
const secret = process.env.SLUICE_WEBHOOK_SECRET;
if (!url || !secret) {
  console.error('usage: SLUICE_WEBHOOK_SECRET=whsec_… tsx examples/send.ts <url> [--id msg_…]');
  process.exit(2);
}
const idFlag = rest.indexOf('--id');
const id = idFlag >= 0 ? rest[idFlag + 1] : 'msg_' + randomUUID().replaceAll('-', '');

const lsn = 23_923_704 + Math.floor(Math.random() * 1_000_000);
const message = {
  record: { id: 42, status: 'paid', amount: '19.90' },
  changes: { status: 'pending' },
  action: 'update',
  metadata: {
    table_schema: 'public',
    table_name: 'orders',
    commit_timestamp: new Date().toISOString().replace('Z', '000Z'),
    commit_lsn: lsn,
    commit_idx: 0,
    idempotency_key: Buffer.from(`${lsn}:0`).toString('base64'),
    record_pks: ['42'],
    database_name: 'app',
    transaction_annotations: null,
    consumer: { id: randomUUID(), name: 'orders-webhook', annotations: {} },
  },
};
const body = JSON.stringify({ data: [message] });
const headers = { 'content-type': 'application/json', ...webhookHeaders({ id, body }, secret.split(/\s+/).filter(Boolean)) };
const res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
console.log(`${res.status} ${await res.text()}  (webhook-id ${id})`);
