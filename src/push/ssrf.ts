// The SSRF guard: webhook URLs are user input, so the gateway must not become a
// way to reach its own network (databases, admin ports, cloud metadata). The
// check runs in undici's connect step on the address actually dialled, after
// our own DNS lookup: a name that resolves to 10.0.0.1, or that changes its
// answer between two lookups, cannot get past it. Refused before any packet.
import { promises as dns } from 'node:dns';
import net from 'node:net';
import { buildConnector } from 'undici';
import { inCidr, parseCidr, parseIp, type Cidr, type Ip } from './ip.js';

// First match names the reason, so the specific ranges come before the wide ones.
const BLOCKED: ReadonlyArray<readonly [string, string]> = [
  ['0.0.0.0/8', 'a "this network" address'],
  ['10.0.0.0/8', 'a private address'],
  ['100.64.0.0/10', 'a shared (CGNAT) address'],
  ['127.0.0.0/8', 'a loopback address'],
  ['169.254.169.254/32', 'a cloud metadata address'],
  ['169.254.0.0/16', 'a link-local address'],
  ['172.16.0.0/12', 'a private address'],
  ['192.0.0.0/24', 'an IETF protocol address'],
  ['192.168.0.0/16', 'a private address'],
  ['198.18.0.0/15', 'a benchmarking address'],
  ['224.0.0.0/4', 'a multicast address'],
  ['240.0.0.0/4', 'a reserved address'],
  ['::/128', 'the unspecified address'],
  ['::1/128', 'a loopback address'],
  // IPv4-compatible (deprecated) addresses embed an IPv4 address we'd otherwise not check.
  ['::/96', 'an IPv4-compatible address'],
  ['fd00:ec2::254/128', 'a cloud metadata address'],
  ['fc00::/7', 'a unique-local address'],
  ['fe80::/10', 'a link-local address'],
  ['ff00::/8', 'a multicast address'],
];
const BLOCKED_RULES: ReadonlyArray<readonly [Cidr, string]> = BLOCKED.map(([c, kind]) => [parseCidr(c), kind]);
// NAT64 (RFC 6052): the last 4 bytes are an IPv4 address, judged as such.
const NAT64 = parseCidr('64:ff9b::/96');

export class SsrfRefusedError extends Error {
  readonly code = 'SLUICE_SSRF_REFUSED';
  constructor(message: string) {
    super(message);
    this.name = 'SsrfRefusedError';
  }
}

/** Why the address is off limits by default, or null for a public address. */
export function blockedKind(ip: Ip): string | null {
  if (inCidr(ip, NAT64)) {
    const v4 = new Uint8Array(16);
    v4.set([0xff, 0xff], 10);
    v4.set(ip.subarray(12), 12);
    const inner = blockedKind(v4);
    if (inner) return `${inner} (behind NAT64)`;
  }
  for (const [cidr, kind] of BLOCKED_RULES) if (inCidr(ip, cidr)) return kind;
  return null;
}

export type Lookup = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

const systemLookup: Lookup = (hostname) => dns.lookup(hostname, { all: true, verbatim: true });

const HINT = 'allow it with webhook.allow_private_ranges';

/** Per consumer: the default refusals minus its allow_private_ranges. */
export class AddressGuard {
  private readonly allowed: Cidr[];

  constructor(
    allowPrivateRanges: readonly string[],
    private readonly lookup: Lookup = systemLookup,
  ) {
    this.allowed = allowPrivateRanges.map(parseCidr);
  }

  /** Null when the address may be dialled, else why not. */
  refusal(address: string): string | null {
    const ip = parseIp(address);
    if (!ip) return 'not an IP address';
    const kind = blockedKind(ip);
    if (!kind || this.allowed.some((c) => inCidr(ip, c))) return null;
    return kind;
  }

  /** The address to dial for `hostname`: the first answer that passes. Throws SsrfRefusedError or the DNS error. */
  async resolve(hostname: string): Promise<{ address: string; family: number }> {
    const bare = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    const literal = net.isIP(bare);
    if (literal) {
      const why = this.refusal(bare);
      if (why) throw new SsrfRefusedError(`refused: ${bare} is ${why}; ${HINT}`);
      return { address: bare, family: literal };
    }
    let answers: Array<{ address: string; family: number }>;
    try {
      answers = await this.lookup(bare);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw Object.assign(new Error(`DNS lookup of ${bare} failed: ${code}`), { code: 'SLUICE_DNS' });
    }
    if (answers.length === 0) throw Object.assign(new Error(`DNS lookup of ${bare} found no address`), { code: 'SLUICE_DNS' });
    const ok = answers.find((a) => this.refusal(a.address) === null);
    if (ok) return ok;
    const first = answers[0];
    throw new SsrfRefusedError(`refused: ${bare} resolves to ${first.address}, ${this.refusal(first.address)}; ${HINT}`);
  }
}

/**
 * An undici connector that dials only what the guard resolved. TLS still
 * verifies the certificate against the original name (undici derives the
 * servername from the Host, which stays the URL's host).
 */
export function guardedConnector(guard: AddressGuard, options: buildConnector.BuildOptions = {}): buildConnector.connector {
  const connect = buildConnector(options);
  return (opts, callback) => {
    guard.resolve(opts.hostname).then(
      ({ address }) => connect({ ...opts, hostname: address }, callback),
      (err: Error) => callback(err, null),
    );
  };
}
