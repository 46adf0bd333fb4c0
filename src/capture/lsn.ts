// LSNs as 64-bit integers. Postgres prints them "XXXXXXXX/XXXXXXXX"; the message
// envelope carries commit_lsn as an integer, and arithmetic (the -1 before the
// library's +1 acknowledge) needs the full 64 bits.

export function lsnToBigInt(lsn: string): bigint {
  const slash = lsn.indexOf('/');
  if (slash < 0) throw new Error(`not an LSN: ${lsn}`);
  return (BigInt('0x' + lsn.slice(0, slash)) << 32n) | BigInt('0x' + lsn.slice(slash + 1));
}

export function bigIntToLsn(n: bigint): string {
  const hi = Number(n >> 32n);
  const lo = Number(n & 0xffffffffn);
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

export const ZERO_LSN = '0/0';
