// pgoutput times are microseconds since the Unix epoch (as a BigInt from the
// library); the envelope wants ISO-8601 UTC with all six fractional digits.
export function isoFromMicros(micros: bigint): string {
  const ms = Number(micros / 1000n);
  const sub = Number(micros % 1_000_000n);
  const iso = new Date(ms).toISOString(); // 2026-11-23T20:15:01.123Z
  return iso.slice(0, 19) + '.' + String(sub < 0 ? sub + 1_000_000 : sub).padStart(6, '0') + 'Z';
}
