// Signatures per second for a 20 KB body (npx tsx bench/signing.ts).
// Per-POST cost of signing, next to the receiver's verify for scale.

import { createHmac } from 'node:crypto';
import { verifyWebhook, verifyWebhookAsync } from '../src/receive/index.js';
import { createSigner, generateKeyPair, generateSecret } from '../src/signing/index.js';

// A batch of realistic messages, about 20 KB of JSON.
const message = {
  record: { id: 1, status: 'paid', note: 'x'.repeat(150) },
  changes: null,
  action: 'insert',
  metadata: { table_schema: 'public', table_name: 'orders', commit_lsn: 23923704, commit_idx: 3 },
};
const data: unknown[] = [];
while (JSON.stringify({ data }).length < 20_000) data.push(message);
const body = JSON.stringify({ data });
const bodyBuf = Buffer.from(body);

// Best of 3 rounds: the machine is shared, and the best round is the least disturbed one.
function rate(name: string, fn: (i: number) => unknown, ms = 700): void {
  for (let i = 0; i < 2000; i++) fn(i); // warm up
  let per = 0;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < ms) for (let k = 0; k < 100; k++) fn(n++);
    per = Math.max(per, n / ((performance.now() - start) / 1000));
  }
  console.log(`${name.padEnd(48)} ${Math.round(per).toLocaleString('en-US').padStart(9)} /s  ${(1e6 / per).toFixed(1)} µs`);
}

async function rateAsync(name: string, fn: (i: number) => Promise<unknown>, ms = 1500): Promise<void> {
  for (let i = 0; i < 500; i++) await fn(i);
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) await fn(n++);
  const per = n / ((performance.now() - start) / 1000);
  console.log(`${name.padEnd(48)} ${Math.round(per).toLocaleString('en-US').padStart(9)} /s  ${(1e6 / per).toFixed(1)} µs`);
}

const secret = generateSecret();
const rawKey = Buffer.from(secret.slice(6), 'base64');
const sign1 = createSigner([secret]);
const sign2 = createSigner([secret, generateSecret()]);
const signEd = createSigner([generateKeyPair().privateKey]);
const ts = Math.floor(Date.now() / 1000);

console.log(`body ${bodyBuf.length} bytes, node ${process.version}`);
rate('createSigner, 1 whsec_, string body', (i) => sign1({ id: `msg_${i}`, timestamp: ts, body }));
rate('createSigner, 1 whsec_, Buffer body', (i) => sign1({ id: `msg_${i}`, timestamp: ts, body: bodyBuf }));
rate('createSigner, 2 whsec_ (rotation), string body', (i) => sign2({ id: `msg_${i}`, timestamp: ts, body }));
rate('createSigner, 1 whsk_ (ed25519), string body', (i) => signEd({ id: `msg_${i}`, timestamp: ts, body }));
rate('baseline: createHmac(raw Buffer key) per call', (i) =>
  createHmac('sha256', rawKey).update(`msg_${i}.${ts}.`).update(body).digest('base64'),
);
rate('baseline: parse secret on every call', (i) =>
  createSigner([secret])({ id: `msg_${i}`, timestamp: ts, body }),
);

const headers = { 'webhook-id': 'msg_v', 'webhook-timestamp': String(ts), 'webhook-signature': sign1({ id: 'msg_v', timestamp: ts, body }) };
const tiny = '{"data":[]}';
const tinyHeaders = { ...headers, 'webhook-signature': sign1({ id: 'msg_v', timestamp: ts, body: tiny }) };
rate('verifyWebhook (sync), incl. JSON.parse', () => verifyWebhook(bodyBuf, headers, secret));
rate('verifyWebhook (sync), tiny body', () => verifyWebhook(tiny, tinyHeaders, secret));
await rateAsync('verifyWebhookAsync (WebCrypto), incl. JSON.parse', () => verifyWebhookAsync(bodyBuf, headers, secret));
