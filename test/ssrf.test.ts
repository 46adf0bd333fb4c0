// The SSRF guard: addresses refused by default, allow_private_ranges, names
// judged by what they resolve to, and refusals recorded as failed attempts
// before any connection is made. Only loopback is ever dialled here.
import { describe, expect, it } from 'vitest';
import { parseCidr, parseIp, inCidr } from '../src/push/ip.js';
import { AddressGuard, SsrfRefusedError } from '../src/push/ssrf.js';
import { blockedKind } from '../src/push/special-addresses.js';
import { eventually } from './helpers/capture.js';
import { insertMessages, insertWebhookConsumer, messagesFor, usePushEnv, webhookSettings } from './helpers/receiver.js';

const kind = (a: string) => blockedKind(parseIp(a)!);

describe('address classification', () => {
  it.each([
    ['127.0.0.1', 'a loopback address'],
    ['127.255.0.9', 'a loopback address'],
    ['10.0.0.1', 'a private address'],
    ['172.16.5.4', 'a private address'],
    ['172.31.255.255', 'a private address'],
    ['192.168.1.1', 'a private address'],
    ['169.254.169.254', 'a cloud metadata address'],
    ['169.254.1.1', 'a link-local address'],
    ['100.64.0.1', 'a shared (CGNAT) address'],
    ['0.0.0.0', 'a "this network" address'],
    ['::1', 'a loopback address'],
    ['::', 'the unspecified address'],
    ['fe80::1', 'a link-local address'],
    ['fc00::1', 'a unique-local address'],
    ['fd12:3456::1', 'a unique-local address'],
    ['fd00:ec2::254', 'a cloud metadata address'],
    ['::ffff:10.0.0.1', 'a private address'],
    ['::ffff:7f00:1', 'a loopback address'],
    ['::ffff:169.254.169.254', 'a cloud metadata address'],
    ['64:ff9b::a00:1', 'a private address (behind NAT64)'],
    ['224.0.0.1', 'a multicast address'],
  ])('%s is %s', (address, expected) => {
    expect(kind(address)).toBe(expected);
  });

  it.each(['8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])('%s is public', (a) => {
    expect(kind(a)).toBeNull();
  });

  it('parses CIDRs in one 128-bit space', () => {
    expect(inCidr(parseIp('::ffff:127.0.0.1')!, parseCidr('127.0.0.0/8'))).toBe(true);
    expect(inCidr(parseIp('128.0.0.1')!, parseCidr('127.0.0.0/8'))).toBe(false);
    expect(inCidr(parseIp('fe80::abcd')!, parseCidr('fe80::/10'))).toBe(true);
    expect(inCidr(parseIp('fec0::1')!, parseCidr('fe80::/10'))).toBe(false);
    expect(() => parseCidr('10.0.0.0/33')).toThrow(RangeError);
    expect(() => parseCidr('nonsense/8')).toThrow(RangeError);
  });
});

describe('AddressGuard', () => {
  const noDns = async () => {
    throw new Error('no DNS in this test');
  };

  it('refuses literals with a message that names the fix', async () => {
    const guard = new AddressGuard([], noDns);
    await expect(guard.resolve('10.0.0.1')).rejects.toThrow(
      'refused: 10.0.0.1 is a private address; allow it with webhook.allow_private_ranges',
    );
    for (const host of ['127.0.0.1', '169.254.169.254', '[::1]', '::1', '[fd00:ec2::254]']) {
      await expect(guard.resolve(host)).rejects.toBeInstanceOf(SsrfRefusedError);
    }
    await expect(guard.resolve('93.184.215.14')).resolves.toEqual({ address: '93.184.215.14', family: 4 });
  });

  it('judges a name by every address it resolves to', async () => {
    const privateOnly = new AddressGuard([], async () => [{ address: '10.1.2.3', family: 4 }]);
    await expect(privateOnly.resolve('evil.example')).rejects.toThrow(
      'refused: evil.example resolves to 10.1.2.3, a private address; allow it with webhook.allow_private_ranges',
    );
    const mixed = new AddressGuard([], async () => [
      { address: '127.0.0.1', family: 4 },
      { address: '93.184.215.14', family: 4 },
    ]);
    await expect(mixed.resolve('mixed.example')).resolves.toEqual({ address: '93.184.215.14', family: 4 });
    // The system resolver (/etc/hosts: no traffic) for localhost.
    await expect(new AddressGuard([]).resolve('localhost')).rejects.toThrow(/^refused: localhost resolves to (127\.0\.0\.1|::1), a loopback address/);
  });

  it('lets allow_private_ranges through, and nothing else', async () => {
    const guard = new AddressGuard(['127.0.0.0/8', 'fd00::/8'], noDns);
    await expect(guard.resolve('127.0.0.1')).resolves.toMatchObject({ address: '127.0.0.1' });
    await expect(guard.resolve('::ffff:127.0.0.1')).resolves.toMatchObject({ address: '::ffff:127.0.0.1' });
    await expect(guard.resolve('fd00::5')).resolves.toMatchObject({ family: 6 });
    await expect(guard.resolve('10.0.0.1')).rejects.toBeInstanceOf(SsrfRefusedError);
    await expect(guard.resolve('::1')).rejects.toBeInstanceOf(SsrfRefusedError);
  });

  it('reports DNS failures as such', async () => {
    const guard = new AddressGuard([], async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    });
    await expect(guard.resolve('nowhere.invalid')).rejects.toThrow('DNS lookup of nowhere.invalid failed: ENOTFOUND');
  });
});

describe('the dispatcher behind the guard', () => {
  const env = usePushEnv('push_ssrf');

  it('records refusals as failed attempts and never connects', async () => {
    const r = await env.receiver();
    const retry = { initial_ms: 20, factor: 1, cap_ms: 20, max_attempts: 1 };
    const urls = {
      private: 'http://10.0.0.1/hook',
      metadata: 'http://169.254.169.254/latest/meta-data/',
      loopback: `http://127.0.0.1:${r.port}/hook`,
      ipv6: `http://[::1]:${r.port}/hook`,
      localhost: `http://localhost:${r.port}/hook`,
    };
    const ids: Record<string, string> = {};
    for (const [name, url] of Object.entries(urls)) {
      ids[name] = await insertWebhookConsumer(env.pool, `ssrf-${name}`, webhookSettings(url, { retry, allow_private_ranges: [] }));
    }
    await env.run();
    for (const id of Object.values(ids)) await insertMessages(env.pool, id, messagesFor(['a'], 1));
    await eventually(async () => {
      for (const id of Object.values(ids)) if ((await env.remaining(id, 1)) !== 1) return false;
      return true;
    });
    const expected: Record<string, RegExp> = {
      private: /^refused: 10\.0\.0\.1 is a private address; allow it with webhook\.allow_private_ranges$/,
      metadata: /^refused: 169\.254\.169\.254 is a cloud metadata address/,
      loopback: /^refused: 127\.0\.0\.1 is a loopback address/,
      ipv6: /^refused: ::1 is a loopback address/,
      localhost: /^refused: localhost resolves to 127\.0\.0\.1, a loopback address/,
    };
    for (const [name, id] of Object.entries(ids)) {
      const [attempt] = await env.attempts(id);
      expect(attempt.error, name).toMatch(expected[name]);
      expect(attempt.status).toBeNull();
      // Refused before dialling: no connect timeout was waited for.
      expect(attempt.duration_ms).toBeLessThan(1000);
    }
    expect(r.connections).toBe(0);
  });

  it('delivers to a name that resolves into an allowed range', async () => {
    const r = await env.receiver();
    const id = await insertWebhookConsumer(env.pool, 'allowed', webhookSettings(`http://localhost:${r.port}/hook`, { allow_private_ranges: ['127.0.0.0/8'] }));
    await env.run();
    await insertMessages(env.pool, id, messagesFor(['a'], 2));
    await eventually(async () => (await env.remaining(id)) === 0);
    expect(r.accepted()).toHaveLength(2);
  });
});
