// `sluice listen` for real: the CLI as a child process, and the receiver in
// process for the answer modes (--status, --fail-rate, --forward).
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CliError } from '../src/cli/context.js';
import { parseListenArgs, startListener, type Listener } from '../src/cli/listen.js';
import { verifyWebhook } from '../src/receive/index.js';
import { generateKeyPair, generateSecret } from '../src/signing/index.js';
import { batchOf, orderChange, post, ROOT, signed } from './helpers/deliveries.js';

const SECRET = generateSecret();
const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => o.close()));
});

async function listen(args: string[]): Promise<{ url: string; out: string[] }> {
  const out: string[] = [];
  const listener: Listener = await startListener(parseListenArgs(['--port', '0', '--secret', SECRET, ...args], {}), (t) => out.push(t));
  opened.push(listener);
  return { url: listener.url + '/webhooks', out };
}

/** Waits (bounded) for the printed output to contain `text`; printing follows the reply. */
async function printed(out: string[], text: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const all = out.join('\n');
    if (all.includes(text)) return all;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`output never contained ${JSON.stringify(text)}:\n${out.join('\n')}`);
}

describe('sluice listen (CLI process)', () => {
  it('verifies, pretty-prints each delivery and stops on SIGINT', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'listen', '--port', '0'], {
      cwd: ROOT,
      env: { ...process.env, SLUICE_WEBHOOK_SECRET: SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const waitFor = async (text: string) => {
        for (let i = 0; i < 300 && !stdout.includes(text); i++) await new Promise((r) => setTimeout(r, 50));
        expect(stdout).toContain(text);
      };
      await waitFor('Ctrl-C to stop');
      expect(stdout).toContain('verifying with whsec_…'); // masked: a given secret is never echoed
      expect(stdout).not.toContain(SECRET);
      const url = /receiving webhooks on (http:\/\/\S+)/.exec(stdout)![1] + '/hooks/orders';

      const update = orderChange('update', 42);
      const d = signed(batchOf([orderChange('insert', 41), update]), [SECRET]);
      const ok = await post(url, d);
      expect(ok.status).toBe(200);
      await waitFor('-> 200');
      expect(stdout).toContain(`webhook-id ${d.id}  attempt ${new Date(d.timestamp * 1000).toISOString().replace('.000Z', 'Z')}  2 messages`);
      expect(stdout).toContain('orders-webhook  public.orders  insert  key 41\n');
      expect(stdout).toContain('orders-webhook  public.orders  update  key 42  changed: status\n');

      const stale = signed(batchOf([orderChange()]), [SECRET], { timestamp: Math.floor(Date.now() / 1000) - 600 });
      const bad = await post(url, stale);
      expect(bad.status).toBe(400);
      expect(bad.json?.error).toBe('timestamp_too_old');
      await waitFor(`webhook-id ${stale.id}\n  VERIFICATION FAILED (timestamp_too_old)`);
    } finally {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      expect(await exited).toBe(0);
      clearTimeout(timer);
    }
  });
});

describe('sluice listen (answer modes)', () => {
  it('answers 400 with the code to a wrong secret or a tampered body, and prints why', async () => {
    const { url, out } = await listen([]);
    const wrong = await post(url, signed(batchOf([orderChange()]), [generateSecret()]));
    expect([wrong.status, wrong.json?.error]).toEqual([400, 'no_matching_signature']);
    const d = signed(batchOf([orderChange()]), [SECRET]);
    const tampered = await post(url, d, { body: d.body.replace('"paid"', '"void"') });
    expect([tampered.status, tampered.json?.error]).toEqual([400, 'no_matching_signature']);
    expect((await printed(out, `${d.id}\n  VERIFICATION FAILED`)).match(/VERIFICATION FAILED \(no_matching_signature\)/g)).toHaveLength(2);
  });

  it('verifies v1a deliveries with a whpk_ public key, and refuses the whsk_ private key as --secret', async () => {
    const { privateKey, publicKey } = generateKeyPair();
    const out: string[] = [];
    const listener = await startListener(parseListenArgs(['--port', '0', '--secret', publicKey], {}), (t) => out.push(t));
    opened.push(listener);
    const url = listener.url + '/webhooks';
    expect((await post(url, signed(batchOf([orderChange()]), [privateKey]))).status).toBe(200);
    const other = await post(url, signed(batchOf([orderChange()]), [generateKeyPair().privateKey]));
    expect([other.status, other.json?.error]).toEqual([400, 'no_matching_signature']);
    expect(() => parseListenArgs(['--secret', privateKey], {})).toThrow(/a whsk_ key signs; give its whpk_ public key/);
  });

  it('--status answers a chosen status to verified deliveries only', async () => {
    const { url, out } = await listen(['--status', '503']);
    const m = orderChange('insert', 7);
    expect((await post(url, signed(m.text, [SECRET]))).status).toBe(503);
    const all = await printed(out, '-> 503');
    expect(all).toContain('1 message (unbatched)');
    expect((await post(url, signed(m.text, [generateSecret()]))).status).toBe(400);
  });

  it('--fail-rate 1 fails every verified delivery with 500', async () => {
    const { url, out } = await listen(['--fail-rate', '1']);
    for (let i = 0; i < 3; i++) expect((await post(url, signed(batchOf([orderChange()]), [SECRET]))).status).toBe(500);
    expect((await printed(out, 'failed on purpose')).match(/-> 500 \(failed on purpose/g)?.length).toBe(3);
  });

  it('--tolerance widens the timestamp window', async () => {
    const { url } = await listen(['--tolerance', '900']);
    const d = signed(batchOf([orderChange()]), [SECRET], { timestamp: Math.floor(Date.now() / 1000) - 600 });
    expect((await post(url, d)).status).toBe(200);
  });

  it('--forward passes the exact bytes and webhook headers on and answers with the target status', async () => {
    // A real receiver behind the forward: it verifies what it gets with the same secret.
    const received: Array<{ headers: Record<string, unknown> }> = [];
    const target: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers });
        try {
          verifyWebhook(Buffer.concat(chunks), req.headers, SECRET);
          res.writeHead(202, { 'content-type': 'application/json' }).end('{"queued":true}');
        } catch {
          res.writeHead(401).end();
        }
      });
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', () => r()));
    opened.push({ close: () => new Promise<void>((r) => target.close(() => r())) });
    const port = (target.address() as { port: number }).port;

    const { url, out } = await listen(['--forward', `http://127.0.0.1:${port}/webhooks`]);
    const d = signed(batchOf([orderChange('update')]), [SECRET]);
    const reply = await post(url, d, { headers: { ...d.headers, 'x-endpoint-header': 'kept' } });
    expect(reply.status).toBe(202);
    expect(reply.json).toEqual({ queued: true });
    expect(received[0].headers).toMatchObject({
      'webhook-id': d.id,
      'webhook-timestamp': String(d.timestamp),
      'webhook-signature': d.headers['webhook-signature'],
      'content-type': 'application/json',
      'user-agent': 'sluice/test',
      'x-endpoint-header': 'kept',
    });
    await printed(out, `-> forwarded to http://127.0.0.1:${port}/webhooks: 202`);
  });

  it('--forward to a closed port answers 502 and says so', async () => {
    const { freePort } = await import('../src/db/embedded.js');
    const dead = `http://127.0.0.1:${await freePort()}/webhooks`;
    const { url, out } = await listen(['--forward', dead]);
    expect((await post(url, signed(batchOf([orderChange()]), [SECRET]))).status).toBe(502);
    expect(await printed(out, `-> 502: forward to ${dead} failed: ECONNREFUSED`)).toBeTruthy();
  });
});

describe('sluice listen arguments', () => {
  const fails = (args: string[], env = {}) => {
    try {
      parseListenArgs(args, env);
    } catch (err) {
      expect(err).toBeInstanceOf(CliError);
      return (err as CliError).message;
    }
    throw new Error('expected a usage error');
  };

  it('generates a secret when none is given, else uses --secret or the env', () => {
    const made = parseListenArgs([], {});
    expect(made.generatedSecret).toBe(true);
    expect(made.secrets[0]).toMatch(/^whsec_/);
    expect(parseListenArgs([], { SLUICE_WEBHOOK_SECRET: SECRET }).secrets).toEqual([SECRET]);
    const other = generateSecret();
    expect(parseListenArgs(['--secret', `${SECRET} ${other}`], {}).secrets).toEqual([SECRET, other]);
    expect(parseListenArgs([], {})).toMatchObject({ port: 7377, host: '127.0.0.1', status: 200, failRate: 0, toleranceSeconds: 300 });
  });

  it('refuses bad values with the usage', () => {
    expect(fails(['--fail-rate', '1.5'])).toContain('--fail-rate must be a fraction');
    expect(fails(['--status', '99'])).toContain('--status must be');
    expect(fails(['--secret', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'])).toContain('--secret: secret must start with "whsec_"');
    expect(fails(['--forward', 'localhost:3000'])).toContain('--forward must be an http');
    expect(fails(['--forward', 'http://127.0.0.1:1/', '--status', '500'])).toContain('exclude each other');
    expect(fails(['--prot', '1'])).toContain('unexpected --prot');
  });
});
