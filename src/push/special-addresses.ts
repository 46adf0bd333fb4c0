// Which addresses a webhook may not reach by default, and why: the IANA IPv4
// and IPv6 Special-Purpose Address Registries, plus multicast, site-local and
// cloud metadata. The rule is the registries' "Globally Reachable" column
// (true: dialled, false: refused) with two deliberate departures: 192.0.0.0/24
// and 2001::/23 (IETF protocol assignments) are refused whole, because their
// globally reachable members (PCP/TURN anycast, AMT, AS112, ORCHIDv2 and DRIP
// identifiers) are protocol infrastructure, never a webhook receiver. IPv6
// outside 2000::/3 is refused unless listed: IANA allocates unicast only there.
//
// Ranges that carry an IPv4 address (mapped, translated, compatible, NAT64,
// 6to4, Teredo) are judged by that address, so 2002:7f00:1:: is loopback.
//
// A hand-written table rather than ipaddr.js's range() or net.BlockList: the
// message names the range (ipaddr.js folds TEST-NETs, benchmarking and 240/4
// into "reserved"; BlockList only answers yes or no), and neither extracts the
// IPv4 address that 6to4, Teredo or NAT64 carry.
import { inCidr, parseCidr, v4, type Cidr, type Ip } from './ip.js';

interface Rule {
  cidr: string;
  /** Why an address here is refused; null: it may be dialled. */
  kind: string | null;
  /** The IPv4 addresses it carries, each judged on its own; `via` is said after their reason. */
  carries?: { via: string; v4s: (ip: Ip) => Ip[] };
}

const last4 = (ip: Ip) => [v4(ip.subarray(12, 16))];
const RESERVED = 'a reserved address';

const RULES: Rule[] = [
  // IPv6 by default; IPv4 space (as ::ffff:0:0/96) and global unicast dialled.
  { cidr: '::/0', kind: RESERVED },
  { cidr: '::ffff:0:0/96', kind: null },
  { cidr: '2000::/3', kind: null },

  // IPv4 special-purpose registry (globally reachable ones are left to the default).
  { cidr: '0.0.0.0/8', kind: 'a "this network" address' },
  { cidr: '10.0.0.0/8', kind: 'a private address' },
  { cidr: '100.64.0.0/10', kind: 'a shared (CGNAT) address' },
  { cidr: '127.0.0.0/8', kind: 'a loopback address' },
  { cidr: '169.254.0.0/16', kind: 'a link-local address' },
  { cidr: '172.16.0.0/12', kind: 'a private address' },
  { cidr: '192.0.0.0/24', kind: 'an IETF protocol address' },
  { cidr: '192.0.2.0/24', kind: 'a documentation address' },
  { cidr: '192.88.99.0/24', kind: 'a deprecated 6to4 relay address' },
  { cidr: '192.168.0.0/16', kind: 'a private address' },
  { cidr: '198.18.0.0/15', kind: 'a benchmarking address' },
  { cidr: '198.51.100.0/24', kind: 'a documentation address' },
  { cidr: '203.0.113.0/24', kind: 'a documentation address' },
  { cidr: '224.0.0.0/4', kind: 'a multicast address' },
  { cidr: '240.0.0.0/4', kind: RESERVED },
  { cidr: '255.255.255.255/32', kind: 'the broadcast address' },
  // Instance metadata: AWS, GCP, Azure, OCI; Azure's host endpoint (a public address).
  { cidr: '169.254.169.254/32', kind: 'a cloud metadata address' },
  { cidr: '168.63.129.16/32', kind: 'a cloud metadata address' },
  { cidr: 'fd00:ec2::254/128', kind: 'a cloud metadata address' },

  // IPv6 special-purpose registry.
  { cidr: '::/128', kind: 'the unspecified address' },
  { cidr: '::1/128', kind: 'a loopback address' },
  // Deprecated (RFC 4291): refused even when what it carries is public.
  { cidr: '::/96', kind: 'a deprecated IPv4-compatible address', carries: { via: 'in an IPv4-compatible address', v4s: last4 } },
  { cidr: '::ffff:0:0:0/96', kind: null, carries: { via: 'in an IPv4-translated address', v4s: last4 } },
  { cidr: '64:ff9b::/96', kind: null, carries: { via: 'behind NAT64', v4s: last4 } },
  // Where a local-use prefix puts the IPv4 address depends on its length, unknown here.
  { cidr: '64:ff9b:1::/48', kind: 'a local-use NAT64 address' },
  { cidr: '100::/64', kind: 'a discard-only address' },
  { cidr: '100:0:0:1::/64', kind: 'a dummy address' },
  { cidr: '2001::/23', kind: 'an IETF protocol address' },
  // Teredo (RFC 4380): the server's IPv4 address in bits 32-63, the client's,
  // inverted, in the last 32 bits.
  {
    cidr: '2001::/32',
    kind: null,
    carries: { via: 'in a Teredo address', v4s: (ip) => [v4(ip.subarray(4, 8)), v4(ip.subarray(12, 16).map((b) => b ^ 0xff))] },
  },
  { cidr: '2001:2::/48', kind: 'a benchmarking address' },
  { cidr: '2001:10::/28', kind: 'an ORCHID identifier, not an address' },
  { cidr: '2001:20::/28', kind: 'an ORCHID identifier, not an address' },
  { cidr: '2001:db8::/32', kind: 'a documentation address' },
  { cidr: '2002::/16', kind: null, carries: { via: 'in a 6to4 address', v4s: (ip) => [v4(ip.subarray(2, 6))] } },
  { cidr: '3fff::/20', kind: 'a documentation address' },
  { cidr: '5f00::/16', kind: 'a segment routing (SRv6) address' },
  { cidr: 'fc00::/7', kind: 'a unique-local address' },
  { cidr: 'fe80::/10', kind: 'a link-local address' },
  // IPv6 address space registry: deprecated site-local (RFC 3879), multicast.
  { cidr: 'fec0::/10', kind: 'a deprecated site-local address' },
  { cidr: 'ff00::/8', kind: 'a multicast address' },
];

// Longest prefix first, so the first match is the most specific rule.
const PARSED = RULES.map((r) => ({ ...r, range: parseCidr(r.cidr) })).sort((a, b) => b.range.bits - a.range.bits);

/**
 * Why `ip` may not be dialled, or null. `allowed` (a consumer's
 * allow_private_ranges) lets an address through when it covers the address, or
 * the IPv4 address it carries.
 */
export function blockedKind(ip: Ip, allowed: readonly Cidr[] = []): string | null {
  if (allowed.some((c) => inCidr(ip, c))) return null;
  const rule = PARSED.find((r) => inCidr(ip, r.range))!;
  for (const inner of rule.carries?.v4s(ip) ?? []) {
    const why = blockedKind(inner, allowed);
    if (why) return `${why} (${rule.carries!.via})`;
  }
  return rule.kind;
}
