// Secret rotation: the new secret signs at once; each older one keeps signing
// beside it until its expires_at, so receivers can switch secrets at any moment
// in the window without a failed verification (they accept any matching v1).

export const ROTATION_OVERLAP_MS = 24 * 60 * 60 * 1000;

export interface StoredSecret {
  secret: string;
  /** ISO-8601; null/absent = no expiry (the current secret). */
  expires_at?: string | null;
}

function expiry(s: StoredSecret): number {
  if (s.expires_at == null) return Infinity;
  const t = Date.parse(s.expires_at);
  // Never guess about a corrupt date: signing with or without that secret are both wrong.
  if (Number.isNaN(t)) throw new RangeError('a stored secret has an unparsable expires_at');
  return t;
}

/** The secrets that sign now, in the order given. */
export function activeSecrets(secrets: readonly StoredSecret[], now: Date): string[] {
  const at = now.getTime();
  return secrets.filter((s) => expiry(s) > at).map((s) => s.secret);
}

/**
 * The stored list after rotating to `newSecret`: new one first with no expiry,
 * older live ones expiring `overlapMs` from now (or sooner if already set),
 * expired ones dropped.
 */
export function rotateSecrets(
  secrets: readonly StoredSecret[],
  newSecret: string,
  now: Date,
  overlapMs: number = ROTATION_OVERLAP_MS,
): StoredSecret[] {
  const at = now.getTime();
  const end = at + overlapMs;
  const kept = secrets
    .filter((s) => expiry(s) > at)
    .map((s) => ({ secret: s.secret, expires_at: new Date(Math.min(expiry(s), end)).toISOString() }));
  return [{ secret: newSecret, expires_at: null }, ...kept];
}
