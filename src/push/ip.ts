// IP addresses as 16 bytes (IPv4 as its IPv4-mapped IPv6 form, ::ffff:a.b.c.d),
// so one CIDR test covers both families and a mapped address can never slip
// past a rule written for IPv4. Parsing is strict: anything net.isIP rejects is
// not an address (the loose IPv4 forms "0x7f.1" or "2130706433" included: the
// WHATWG URL parser has normalised those before a hostname reaches us).
//
// Hand-written rather than ipaddr.js: ipaddr.js 2.5 reads "::a.b.c.d"
// (IPv4-compatible, ::0:a.b.c.d) as "::ffff:a.b.c.d" (IPv4-mapped), so the guard
// would judge a different address from the one the socket dials.
import net from 'node:net';

export type Ip = Uint8Array;

const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

function parseV4(text: string): number[] {
  return text.split('.').map(Number);
}

/** 16 bytes, or null when `text` is not an IP address. Brackets and a zone (%eth0) are accepted. */
export function parseIp(input: string): Ip | null {
  let text = input.startsWith('[') && input.endsWith(']') ? input.slice(1, -1) : input;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  const family = net.isIP(text);
  if (family === 4) return Uint8Array.from([...MAPPED_PREFIX, ...parseV4(text)]);
  if (family !== 6) return null;

  // An IPv4 tail (::ffff:10.0.0.1) becomes two groups.
  let groupsText = text;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = parseV4(text.slice(lastColon + 1));
    tail.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    // Two placeholder groups, so '::' expands to the right number of zeros.
    groupsText = text.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = groupsText.split('::') as [string, string | undefined];
  const toGroups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  let groups: number[];
  if (rest === undefined) {
    groups = toGroups(head);
  } else {
    const a = toGroups(head);
    const b = toGroups(rest);
    groups = [...a, ...new Array<number>(8 - a.length - b.length).fill(0), ...b];
  }
  if (tail.length) groups.splice(groups.length - 2, 2, ...tail);
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** An IPv4 address given as 4 bytes, as an Ip (its mapped form). */
export function v4(bytes: ArrayLike<number>): Ip {
  return Uint8Array.from([...MAPPED_PREFIX, ...Array.from(bytes)]);
}

export interface Cidr {
  base: Ip;
  /** Prefix length in the 128-bit space (an IPv4 /8 is /104 here). */
  bits: number;
  text: string;
}

/** "10.0.0.0/8", "fe80::/10", or a bare address (a /32 or /128). Throws on anything else. */
export function parseCidr(text: string): Cidr {
  const [addr, prefix, extra] = text.split('/');
  const base = parseIp(addr ?? '');
  const v4 = net.isIP(addr ?? '') === 4;
  const max = v4 ? 32 : 128;
  const n = prefix === undefined ? max : Number(prefix);
  if (!base || extra !== undefined || !Number.isInteger(n) || n < 0 || n > max || (prefix !== undefined && !/^\d+$/.test(prefix))) {
    throw new RangeError(`"${text}" is not a CIDR range`);
  }
  return { base, bits: v4 ? n + 96 : n, text };
}

export function inCidr(ip: Ip, cidr: Cidr): boolean {
  const full = cidr.bits >> 3;
  for (let i = 0; i < full; i++) if (ip[i] !== cidr.base[i]) return false;
  const rest = cidr.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (ip[full] & mask) === (cidr.base[full] & mask);
}
