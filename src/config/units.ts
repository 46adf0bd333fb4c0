// Durations and sizes as people write them in YAML ("30s", "1h30m", "64KB") and
// as the code uses them (milliseconds, bytes). Parsing and formatting live
// together so that toYamlShape() writes back exactly what parse accepts.

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** One or more number+unit parts, Go style: "500ms", "1.5s", "1h30m". */
export const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Binary multiples (1KB = 1024 bytes), as fastify's bodyLimit and most config files count. */
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1024,
  kib: 1024,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};
export const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)$/i;

/** Milliseconds from an integer or a duration string; undefined when it is neither. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string' || !DURATION_RE.test(value)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of value.matchAll(DURATION_PART_RE)) ms += Number(amount) * DURATION_UNITS_MS[unit];
  // "0.0005s" would be a fraction of a millisecond; the code counts whole ones.
  return Math.round(ms);
}

/** Bytes from an integer or a size string; undefined when it is neither. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = SIZE_RE.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
}

/** The shortest exact spelling: 86400000 → "24h", 1500 → "1500ms", 90000 → "90s". */
export function formatDuration(ms: number): string {
  // Hours rather than days: "24h" is how the specs and most people write a day of retries.
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1_000]] as const) {
    if (ms > 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** 65536 → "64KB"; sizes that are not whole multiples stay integers. */
export function formatSize(bytes: number): string | number {
  for (const [unit, size] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) {
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return bytes;
}
