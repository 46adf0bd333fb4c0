// The address classifier against the IANA IPv4 and IPv6 Special-Purpose
// Address Registries (as of their 2025 updates), plus the ranges outside them
// that a webhook must not reach (multicast, site-local, cloud metadata). Each
// range is probed at its first and last address and just outside both ends.
//
// Policy: a range the registries mark globally reachable is dialled, the rest
// refused, except that 192.0.0.0/24 and 2001::/23 (IETF protocol assignments)
// are refused whole: their globally reachable members (PCP/TURN anycast, AMT,
// AS112, ORCHIDv2 and DRIP identifiers) are protocol infrastructure, never a
// webhook receiver. Ranges that embed an IPv4 address (IPv4-mapped, -translated,
// -compatible, NAT64, 6to4, Teredo) are judged by the IPv4 address they carry.
import { describe, expect, it } from 'vitest';
import { AddressGuard } from '../src/push/index.js';

const noDns = async () => {
  throw new Error('no DNS in this test');
};
const refusal = (address: string, allow: string[] = []) => new AddressGuard(allow, noDns).refusal(address);

const THIS_NETWORK = 'a "this network" address';
const PRIVATE = 'a private address';
const CGNAT = 'a shared (CGNAT) address';
const LOOPBACK = 'a loopback address';
const LINK_LOCAL = 'a link-local address';
const METADATA = 'a cloud metadata address';
const IETF = 'an IETF protocol address';
const DOCUMENTATION = 'a documentation address';
const RELAY_6TO4 = 'a deprecated 6to4 relay address';
const BENCHMARKING = 'a benchmarking address';
const MULTICAST = 'a multicast address';
const RESERVED = 'a reserved address';
const BROADCAST = 'the broadcast address';
const UNSPECIFIED = 'the unspecified address';
const COMPATIBLE = 'a deprecated IPv4-compatible address';
const NAT64_LOCAL = 'a local-use NAT64 address';
const DISCARD = 'a discard-only address';
const DUMMY = 'a dummy address';
const ORCHID = 'an ORCHID identifier, not an address';
const SRV6 = 'a segment routing (SRv6) address';
const UNIQUE_LOCAL = 'a unique-local address';
const SITE_LOCAL = 'a deprecated site-local address';

interface Range {
  range: string;
  /** The registry's name, or where the range comes from. */
  name: string;
  /** What every `inside` address is refused as; null: dialled. */
  kind: string | null;
  inside: string[];
  /** Just outside each end, with what they are instead. */
  outside: Array<[string, string | null]>;
}

const IPV4: Range[] = [
  { range: '0.0.0.0/8', name: '"This network" (0.0.0.0/32 "This host on this network" inside)', kind: THIS_NETWORK, inside: ['0.0.0.0', '0.0.0.1', '0.255.255.255'], outside: [['1.0.0.0', null]] },
  { range: '10.0.0.0/8', name: 'Private-Use', kind: PRIVATE, inside: ['10.0.0.0', '10.0.0.1', '10.255.255.255'], outside: [['9.255.255.255', null], ['11.0.0.0', null]] },
  { range: '100.64.0.0/10', name: 'Shared Address Space', kind: CGNAT, inside: ['100.64.0.0', '100.127.255.255'], outside: [['100.63.255.255', null], ['100.128.0.0', null]] },
  { range: '127.0.0.0/8', name: 'Loopback', kind: LOOPBACK, inside: ['127.0.0.0', '127.0.0.1', '127.255.255.255'], outside: [['126.255.255.255', null], ['128.0.0.0', null]] },
  { range: '169.254.0.0/16', name: 'Link Local', kind: LINK_LOCAL, inside: ['169.254.0.0', '169.254.255.255'], outside: [['169.253.255.255', null], ['169.255.0.0', null]] },
  { range: '169.254.169.254/32', name: 'cloud metadata (AWS, GCP, Azure, OCI)', kind: METADATA, inside: ['169.254.169.254'], outside: [['169.254.169.253', LINK_LOCAL], ['169.254.169.255', LINK_LOCAL]] },
  { range: '168.63.129.16/32', name: 'Azure host endpoint (WireServer)', kind: METADATA, inside: ['168.63.129.16'], outside: [['168.63.129.15', null], ['168.63.129.17', null]] },
  { range: '172.16.0.0/12', name: 'Private-Use', kind: PRIVATE, inside: ['172.16.0.0', '172.31.255.255'], outside: [['172.15.255.255', null], ['172.32.0.0', null]] },
  {
    range: '192.0.0.0/24',
    // 192.0.0.0/29 DS-Lite, .8 dummy, .170/.171 NAT64 discovery: not globally
    // reachable; .9 PCP anycast and .10 TURN anycast are, and are refused all the same.
    name: 'IETF Protocol Assignments',
    kind: IETF,
    inside: ['192.0.0.0', '192.0.0.7', '192.0.0.8', '192.0.0.9', '192.0.0.10', '192.0.0.170', '192.0.0.171', '192.0.0.255'],
    outside: [['191.255.255.255', null], ['192.0.1.0', null]],
  },
  { range: '192.0.2.0/24', name: 'Documentation (TEST-NET-1)', kind: DOCUMENTATION, inside: ['192.0.2.0', '192.0.2.255'], outside: [['192.0.1.255', null], ['192.0.3.0', null]] },
  { range: '192.31.196.0/24', name: 'AS112-v4 (globally reachable)', kind: null, inside: ['192.31.196.0', '192.31.196.255'], outside: [] },
  { range: '192.52.193.0/24', name: 'AMT (globally reachable)', kind: null, inside: ['192.52.193.0', '192.52.193.255'], outside: [] },
  {
    range: '192.88.99.0/24',
    name: 'Deprecated (6to4 Relay Anycast), with 192.88.99.2/32 6a44-relay anycast',
    kind: RELAY_6TO4,
    inside: ['192.88.99.0', '192.88.99.1', '192.88.99.2', '192.88.99.255'],
    outside: [['192.88.98.255', null], ['192.88.100.0', null]],
  },
  { range: '192.168.0.0/16', name: 'Private-Use', kind: PRIVATE, inside: ['192.168.0.0', '192.168.255.255'], outside: [['192.167.255.255', null], ['192.169.0.0', null]] },
  { range: '192.175.48.0/24', name: 'Direct Delegation AS112 Service (globally reachable)', kind: null, inside: ['192.175.48.0', '192.175.48.255'], outside: [] },
  { range: '198.18.0.0/15', name: 'Benchmarking', kind: BENCHMARKING, inside: ['198.18.0.0', '198.19.255.255'], outside: [['198.17.255.255', null], ['198.20.0.0', null]] },
  { range: '198.51.100.0/24', name: 'Documentation (TEST-NET-2)', kind: DOCUMENTATION, inside: ['198.51.100.0', '198.51.100.255'], outside: [['198.51.99.255', null], ['198.51.101.0', null]] },
  { range: '203.0.113.0/24', name: 'Documentation (TEST-NET-3)', kind: DOCUMENTATION, inside: ['203.0.113.0', '203.0.113.255'], outside: [['203.0.112.255', null], ['203.0.114.0', null]] },
  { range: '224.0.0.0/4', name: 'Multicast (its own registry)', kind: MULTICAST, inside: ['224.0.0.0', '224.0.0.1', '239.255.255.255'], outside: [['223.255.255.255', null], ['240.0.0.0', RESERVED]] },
  { range: '240.0.0.0/4', name: 'Reserved', kind: RESERVED, inside: ['240.0.0.0', '255.255.255.254'], outside: [['239.255.255.255', MULTICAST], ['255.255.255.255', BROADCAST]] },
  { range: '255.255.255.255/32', name: 'Limited Broadcast', kind: BROADCAST, inside: ['255.255.255.255'], outside: [['255.255.255.254', RESERVED]] },
];

// Teredo (RFC 4380): 2001:0:<server IPv4>:<flags>:<port ^ 0xffff>:<client IPv4 ^ 0xffffffff>.
// Server 65.54.227.120 is 4136:e378; client 8.8.8.8 is f7f7:f7f7 once obfuscated.
const TEREDO_PUBLIC = '2001:0:4136:e378:8000:63bf:f7f7:f7f7';

const IPV6: Range[] = [
  { range: '::1/128', name: 'Loopback Address', kind: LOOPBACK, inside: ['::1', '[::1]', '0:0:0:0:0:0:0:1'], outside: [['::', UNSPECIFIED], ['::2', `${THIS_NETWORK} (in an IPv4-compatible address)`]] },
  { range: '::/128', name: 'Unspecified Address', kind: UNSPECIFIED, inside: ['::', '0:0:0:0:0:0:0:0'], outside: [['::1', LOOPBACK]] },
  {
    range: '::ffff:0:0/96',
    name: 'IPv4-mapped Address: judged by its IPv4 address',
    kind: null,
    inside: ['::ffff:8.8.8.8', '::ffff:808:808', '::ffff:1.0.0.0', '::ffff:dfff:ffff'],
    outside: [['::fffe:ffff:ffff', RESERVED], ['::1:0:0:0', RESERVED]],
  },
  { range: '::ffff:0:0/96 (embedded)', name: 'IPv4-mapped, private inside', kind: LOOPBACK, inside: ['::ffff:127.0.0.1', '::ffff:7f00:1', '0:0:0:0:0:ffff:7f00:1'], outside: [] },
  {
    range: '::ffff:0:0:0/96',
    name: 'IPv4-translated (RFC 6145): judged by its IPv4 address',
    kind: null,
    inside: ['::ffff:0:8.8.8.8', '::ffff:0:808:808'],
    outside: [['::fffe:ffff:ffff:ffff', RESERVED], ['::ffff:1:0:0', RESERVED]],
  },
  { range: '::ffff:0:0:0/96 (embedded)', name: 'IPv4-translated, loopback inside', kind: `${LOOPBACK} (in an IPv4-translated address)`, inside: ['::ffff:0:127.0.0.1', '::ffff:0:7f00:1'], outside: [] },
  {
    range: '::/96',
    name: 'IPv4-compatible (RFC 4291, deprecated): refused, naming the IPv4 address when it is itself refused',
    kind: COMPATIBLE,
    // "::8.8.8.8" is ::0:808:808, not ::ffff:8.8.8.8 (ipaddr.js conflates them).
    inside: ['::8.8.8.8', '::808:808', '::1.0.0.0'],
    outside: [['::1:0:0', RESERVED]],
  },
  { range: '::/96 (embedded)', name: 'IPv4-compatible, metadata inside', kind: `${METADATA} (in an IPv4-compatible address)`, inside: ['::169.254.169.254', '::a9fe:a9fe'], outside: [] },
  {
    range: '64:ff9b::/96',
    name: 'IPv4-IPv6 Translat. (NAT64 well-known prefix, globally reachable): judged by its IPv4 address',
    kind: null,
    inside: ['64:ff9b::808:808', '64:ff9b::8.8.8.8'],
    outside: [['64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff', RESERVED], ['64:ff9b::1:0:0', RESERVED]],
  },
  { range: '64:ff9b::/96 (private)', name: 'NAT64 to a private address', kind: `${PRIVATE} (behind NAT64)`, inside: ['64:ff9b::a00:1', '64:ff9b::10.0.0.1'], outside: [] },
  { range: '64:ff9b::/96 (metadata)', name: 'NAT64 to metadata', kind: `${METADATA} (behind NAT64)`, inside: ['64:ff9b::a9fe:a9fe'], outside: [] },
  {
    range: '64:ff9b:1::/48',
    name: 'IPv4-IPv6 Translat. (local-use)',
    kind: NAT64_LOCAL,
    inside: ['64:ff9b:1::', '64:ff9b:1::808:808', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff'],
    outside: [['64:ff9b:0:ffff:ffff:ffff:ffff:ffff', RESERVED], ['64:ff9b:2::', RESERVED]],
  },
  { range: '100::/64', name: 'Discard-Only Address Block', kind: DISCARD, inside: ['100::', '100::ffff:ffff:ffff:ffff'], outside: [['ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', RESERVED], ['100:0:0:1::', DUMMY]] },
  { range: '100:0:0:1::/64', name: 'Dummy IPv6 Prefix', kind: DUMMY, inside: ['100:0:0:1::', '100:0:0:1:ffff:ffff:ffff:ffff'], outside: [['100:0:0:2::', RESERVED]] },
  {
    range: '2001::/23',
    // Inside, globally reachable and refused all the same: 2001:1::1, ::2, ::3
    // (PCP, TURN, DNS-SD SRP anycast), 2001:3::/32 AMT, 2001:4:112::/48 AS112-v6,
    // 2001:30::/28 DRIP entity tags.
    name: 'IETF Protocol Assignments',
    kind: IETF,
    inside: ['2001:1::', '2001:1::1', '2001:1::2', '2001:1::3', '2001:3::', '2001:4:112::1', '2001:30::1', '2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff'],
    outside: [['2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null], ['2001:200::', null]],
  },
  {
    range: '2001::/32',
    name: 'TEREDO: judged by its server and (de-obfuscated) client IPv4 addresses',
    kind: null,
    // Client 7f00:1 read without the XOR is 128.255.255.254: public.
    inside: [TEREDO_PUBLIC, '2001:0:4136:e378:8000:63bf:7f00:1'],
    outside: [['2001:1::', IETF], ['2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null]],
  },
  // Client 127.0.0.1 obfuscated is 80ff:fffe; 169.254.169.254 is 5601:5601.
  { range: '2001::/32 (client)', name: 'Teredo, loopback client', kind: `${LOOPBACK} (in a Teredo address)`, inside: ['2001:0:4136:e378:8000:63bf:80ff:fffe'], outside: [] },
  { range: '2001::/32 (client)', name: 'Teredo, metadata client', kind: `${METADATA} (in a Teredo address)`, inside: ['2001:0:4136:e378:8000:63bf:5601:5601'], outside: [] },
  { range: '2001::/32 (server)', name: 'Teredo, private server', kind: `${PRIVATE} (in a Teredo address)`, inside: ['2001:0:a00:1:8000:63bf:f7f7:f7f7'], outside: [] },
  { range: '2001:2::/48', name: 'Benchmarking', kind: BENCHMARKING, inside: ['2001:2::', '2001:2:0:ffff:ffff:ffff:ffff:ffff'], outside: [['2001:1:ffff:ffff:ffff:ffff:ffff:ffff', IETF], ['2001:2:1::', IETF]] },
  { range: '2001:10::/28', name: 'Deprecated (previously ORCHID)', kind: ORCHID, inside: ['2001:10::', '2001:1f:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['2001:f:ffff:ffff:ffff:ffff:ffff:ffff', IETF]] },
  { range: '2001:20::/28', name: 'ORCHIDv2 (identifiers, RFC 7343: not routable)', kind: ORCHID, inside: ['2001:20::', '2001:2f:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['2001:30::', IETF]] },
  { range: '2001:db8::/32', name: 'Documentation', kind: DOCUMENTATION, inside: ['2001:db8::', '2001:db8::1', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', null], ['2001:db9::', null]] },
  {
    range: '2002::/16',
    name: '6to4: judged by its IPv4 address',
    kind: null,
    inside: ['2002:808:808::', '2002:808:808:1::1'],
    outside: [['2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null], ['2003::', null]],
  },
  { range: '2002::/16 (loopback)', name: '6to4 of 127.0.0.1', kind: `${LOOPBACK} (in a 6to4 address)`, inside: ['2002:7f00:1::', '2002:7f00:1::1'], outside: [] },
  { range: '2002::/16 (metadata)', name: '6to4 of 169.254.169.254', kind: `${METADATA} (in a 6to4 address)`, inside: ['2002:a9fe:a9fe::'], outside: [] },
  { range: '2002::/16 (private)', name: '6to4 of 192.168.1.1', kind: `${PRIVATE} (in a 6to4 address)`, inside: ['2002:c0a8:101::1'], outside: [] },
  { range: '2620:4f:8000::/48', name: 'Direct Delegation AS112 Service (globally reachable)', kind: null, inside: ['2620:4f:8000::', '2620:4f:8000:ffff:ffff:ffff:ffff:ffff'], outside: [] },
  { range: '3fff::/20', name: 'Documentation', kind: DOCUMENTATION, inside: ['3fff::', '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null], ['3fff:1000::', null]] },
  { range: '5f00::/16', name: 'Segment Routing (SRv6) SIDs', kind: SRV6, inside: ['5f00::', '5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', RESERVED], ['5f01::', RESERVED]] },
  { range: 'fc00::/7', name: 'Unique-Local', kind: UNIQUE_LOCAL, inside: ['fc00::', 'fd12:3456::1', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', RESERVED], ['fe00::', RESERVED]] },
  { range: 'fd00:ec2::254/128', name: 'AWS metadata over IPv6', kind: METADATA, inside: ['fd00:ec2::254', '[fd00:ec2::254]'], outside: [['fd00:ec2::253', UNIQUE_LOCAL], ['fd00:ec2::255', UNIQUE_LOCAL]] },
  { range: 'fe80::/10', name: 'Link-Local Unicast', kind: LINK_LOCAL, inside: ['fe80::', 'fe80::1%eth0', 'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', RESERVED], ['fec0::', SITE_LOCAL]] },
  { range: 'fec0::/10', name: 'Site-local (RFC 3879, deprecated; address space registry)', kind: SITE_LOCAL, inside: ['fec0::', 'fec0::1', 'feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['ff00::', MULTICAST]] },
  { range: 'ff00::/8', name: 'Multicast (address space registry)', kind: MULTICAST, inside: ['ff00::', 'ff02::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', SITE_LOCAL]] },
  {
    range: '2000::/3',
    name: 'Global Unicast (address space registry); everything else outside it is reserved',
    kind: null,
    inside: ['2000::', '2606:4700::1111', '2a00:1450:4001::1', '3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    outside: [['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', RESERVED], ['4000::', RESERVED], ['8000::1', RESERVED]],
  },
];

describe.each([
  ['IPv4', IPV4],
  ['IPv6', IPV6],
])('%s special-purpose ranges', (_family, table) => {
  const rows = table.flatMap((r) => [
    ...r.inside.map((address) => [r.range, r.name, address, r.kind] as const),
    ...r.outside.map(([address, kind]) => [r.range, `just outside ${r.name}`, address, kind] as const),
  ]);
  it.each(rows)('%s %s: %s is %s', (_range, _name, address, expected) => {
    expect(refusal(address)).toBe(expected);
  });
});

describe('IPv4 ranges in their IPv6 forms', () => {
  // Every refused IPv4 range is refused as an IPv4-mapped address too, and,
  // through NAT64 and 6to4, as what those carry.
  const v4 = IPV4.filter((r) => r.kind !== null).flatMap((r) => r.inside.map((a) => [a, r.kind!] as const));
  const hex = (a: string) => {
    const [b0, b1, b2, b3] = a.split('.').map(Number);
    return `${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  };
  it.each(v4)('%s', (address, kind) => {
    expect(refusal(`::ffff:${address}`)).toBe(kind);
    expect(refusal(`64:ff9b::${hex(address)}`)).toBe(`${kind} (behind NAT64)`);
    expect(refusal(`2002:${hex(address)}::1`)).toBe(`${kind} (in a 6to4 address)`);
  });
});

describe('allow_private_ranges', () => {
  it('covers an address, or the IPv4 address it carries', () => {
    expect(refusal('10.1.2.3', ['10.0.0.0/8'])).toBeNull();
    expect(refusal('::ffff:10.1.2.3', ['10.0.0.0/8'])).toBeNull();
    expect(refusal('64:ff9b::a01:203', ['10.0.0.0/8'])).toBeNull();
    expect(refusal('2002:7f00:1::', ['127.0.0.0/8'])).toBeNull();
    expect(refusal('2002:7f00:1::', ['2002::/16'])).toBeNull();
    expect(refusal('2001:0:4136:e378:8000:63bf:80ff:fffe', ['127.0.0.0/8'])).toBeNull();
    expect(refusal('2001:db8::1', ['2001:db8::/32'])).toBeNull();
    expect(refusal('fec0::1', ['fec0::/10'])).toBeNull();
  });

  it('covers nothing else', () => {
    expect(refusal('10.1.2.3', ['10.0.0.0/16'])).toBe(PRIVATE);
    expect(refusal('2002:a00:1::', ['127.0.0.0/8'])).toBe(`${PRIVATE} (in a 6to4 address)`);
    // The IPv4-compatible form is refused for itself, whatever it carries.
    expect(refusal('::127.0.0.1', ['127.0.0.0/8'])).toBe(COMPATIBLE);
    expect(refusal('::127.0.0.1', ['::/96'])).toBeNull();
  });

  it('strictly parses what it judges', () => {
    for (const text of ['0x7f.1', '2130706433', '127.1', '0177.0.0.1', 'localhost', '1.2.3.4.5', '[::1', ':::1']) {
      expect(refusal(text), text).toBe('not an IP address');
    }
  });
});
