// The receiving end of `npm start`'s embedded demo: a tiny node:http server on
// 127.0.0.1 that verifies every delivery the way a user's app should (raw body
// bytes, src/receive's verifyWebhook) and prints one line per message.
// Answers 204 when verified, 401 when not, 400 for a body that isn't JSON, 409
// for a delivery made for another consumer than the demo's.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhook, WebhookVerificationError } from '../receive/index.js';

export interface DemoReceiverOptions {
  /** 0: any free port. */
  port: number;
  /** The demo consumer's id: a delivery for any other consumer is refused (409), never acked. */
  consumerId: string;
  /** The consumer's whsec_ secret (or the list during a rotation). */
  secret: string | readonly string[];
  log: { info(obj: Record<string, unknown>, msg?: string): void; warn(obj: Record<string, unknown>, msg?: string): void };
  /** Where each message line goes (default: stdout). */
  print?: (line: string) => void;
}

export interface DemoReceiver {
  url: string;
  port: number;
  close(): Promise<void>;
}

// Deliveries are at most a few MB (batch_size × message size); anything bigger is not ours.
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export async function startDemoReceiver(opts: DemoReceiverOptions): Promise<DemoReceiver> {
  const print = opts.print ?? ((line: string) => process.stdout.write(line + '\n'));
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      try {
        const hook = verifyWebhook(Buffer.concat(chunks), req.headers, opts.secret);
        const stranger = hook.data.find((m) => m.metadata?.consumer?.id !== opts.consumerId);
        if (stranger) {
          opts.log.warn({ consumer: stranger.metadata?.consumer?.name }, 'demo receiver refused a delivery for another consumer');
          res.writeHead(409).end();
          return;
        }
        for (const m of hook.data) {
          const meta = m.metadata;
          print(`${meta.consumer.name}  ${meta.table_schema}.${meta.table_name}  ${m.action}  ${meta.record_pks.join(',')}`);
        }
        res.writeHead(204).end();
      } catch (err) {
        const verification = err instanceof WebhookVerificationError;
        opts.log.warn({ code: verification ? err.code : 'bad_body' }, 'demo receiver refused a delivery');
        res.writeHead(verification ? 401 : 400).end();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  opts.log.info({ port }, 'demo webhook receiver listening');
  return {
    url: `http://127.0.0.1:${port}/webhook`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
