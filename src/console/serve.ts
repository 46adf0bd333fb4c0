// Serves the web console (built into dist/console by scripts/build-console.mjs)
// at / and /console. The files hold no data and no secret, so they need no
// token; everything the console shows comes from /api with the token the user
// signs in with, so it can never do more than that token may.
//
// The files are read once, at startup, into memory (about 40 KiB gzipped).
// Hashed asset names are cached for a year; the page itself never is, so a
// new build is picked up on the next load. A strict Content-Security-Policy
// allows only this origin's script, style and API: no inline script, no
// third party, no framing.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../http/errors.js';

export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../../dist/console/', import.meta.url));

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

interface Asset {
  body: Buffer;
  gzip?: Buffer;
  type: string;
  immutable: boolean;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
};

function typeOf(name: string): string | undefined {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? undefined : TYPES[name.slice(dot)];
}

/** The built console, or null when it was never built (a checkout where `npm ci` ran with --ignore-scripts). */
export function loadConsole(dir = DEFAULT_CONSOLE_DIR): { page: Asset; assets: Map<string, Asset> } | null {
  if (!existsSync(join(dir, 'index.html'))) return null;
  const read = (path: string, immutable: boolean): Asset => {
    const gz = `${path}.gz`;
    return { body: readFileSync(path), gzip: existsSync(gz) ? readFileSync(gz) : undefined, type: typeOf(path) ?? 'application/octet-stream', immutable };
  };
  const assets = new Map<string, Asset>();
  const assetDir = join(dir, 'assets');
  if (existsSync(assetDir)) {
    for (const name of readdirSync(assetDir)) {
      if (typeOf(name)) assets.set(name, read(join(assetDir, name), true));
    }
  }
  return { page: read(join(dir, 'index.html'), false), assets };
}

function send(request: FastifyRequest, reply: FastifyReply, asset: Asset) {
  reply
    .header('content-type', asset.type)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
    .header('vary', 'accept-encoding');
  if (asset.type.startsWith('text/html')) {
    reply.header('content-security-policy', CSP).header('x-frame-options', 'DENY');
  }
  const accepts = /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
  if (asset.gzip && accepts) return reply.header('content-encoding', 'gzip').send(asset.gzip);
  return reply.send(asset.body);
}

export async function consoleRoutes(app: FastifyInstance, opts: { dir?: string }) {
  const built = loadConsole(opts.dir);
  const page = async (request: FastifyRequest, reply: FastifyReply) => {
    // Sent here: the error handler masks every 5xx as "internal error", and this one has a fix to tell.
    if (!built) return reply.status(503).send({ summary: 'The console is not built: run "npm run build:console" (npm ci does it unless scripts are ignored).' });
    return send(request, reply, built.page);
  };
  const hide = { schema: { hide: true } };
  app.get('/', hide, page);
  app.get('/console', hide, page);
  app.get('/console/', hide, page);
  app.get<{ Params: { file: string } }>('/console/assets/:file', hide, async (request, reply) => {
    const asset = built?.assets.get(request.params.file);
    if (!asset) throw new ApiError(404, `No console file "${request.params.file}".`);
    return send(request, reply, asset);
  });
}
