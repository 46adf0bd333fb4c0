// NOT part of a Next.js app: `next dev` / `next start` serve route.ts by
// themselves. This stand-in serves the same POST export on node:http, turning
// each request into a Web Request as Next does, so the example can run (and
// be tested) without installing Next.
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import { readSettings } from '../shared/env.js';
import { log } from '../shared/handler.js';
import { POST } from './app/api/webhooks/route.js';

const { port, host } = readSettings();
const ROUTE = '/api/webhooks';

const server = createServer(async (req, res) => {
  try {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== ROUTE) {
      res.writeHead(404).end();
      return;
    }
    const headers = new Headers();
    for (const [name, values] of Object.entries(req.headersDistinct)) for (const v of values ?? []) headers.append(name, v);
    // duplex 'half' is what a streamed request body requires in Node's fetch.
    const init: RequestInit & { duplex: 'half' } = {
      method: 'POST',
      headers,
      body: Readable.toWeb(req) as unknown as ReadableStream<Uint8Array>,
      duplex: 'half',
    };
    const response = await POST(new Request(`http://${host}${req.url}`, init));
    response.headers.forEach((value, name) => res.setHeader(name, value));
    res.writeHead(response.status);
    res.end(Buffer.from(await response.arrayBuffer()));
  } catch (err) {
    console.error(err);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  }
});

server.listen(port, host, () => {
  const addr = server.address();
  log({ event: 'listening', url: `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}${ROUTE}` });
});
