// The SSRF guard: webhook URLs are user input, so the gateway must not become a
// way to reach its own network (databases, admin ports, cloud metadata). The
// check runs in undici's connect step on the address actually dialled, after
// our own DNS lookup: a name that resolves to 10.0.0.1, or that changes its
// answer between two lookups, cannot get past it. Refused before any packet.
import { promises as dns } from 'node:dns';
import net from 'node:net';
import { buildConnector } from 'undici';
import { parseCidr, parseIp, type Cidr } from './ip.js';
import { blockedKind } from './special-addresses.js';

export class SsrfRefusedError extends Error {
  readonly code = 'SLUICE_SSRF_REFUSED';
  constructor(message: string) {
    super(message);
    this.name = 'SsrfRefusedError';
  }
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
    return ip ? blockedKind(ip, this.allowed) : 'not an IP address';
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
