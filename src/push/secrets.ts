// Which of a consumer's secrets sign right now, and rotation through the API.
// The secrets themselves live in the consumer's config (newest first); when one
// is rotated out, sluice.webhook_secret_expiries records until when it keeps
// signing, keyed by its SHA-256 so that table holds nothing usable.
import { createHash } from 'node:crypto';
import type { ConsumerConfig } from '../config/types.js';
import type { Pool, PoolClient } from '../db/pool.js';
import { activeSecrets, rotateSecrets, ROTATION_OVERLAP_MS, type StoredSecret } from '../signing/rotation.js';
import { generateKeyPair, generateSecret, maskSecret } from '../signing/secrets.js';
import { createSigner, type Signer } from '../signing/sign.js';

type Db = Pool | PoolClient;

export const secretDigest = (secret: string): Buffer => createHash('sha256').update(secret).digest();

/** Expiry per secret digest (hex). */
export async function loadExpiries(db: Db, consumerId: string): Promise<Map<string, Date>> {
  const { rows } = await db.query<{ digest: string; expires_at: Date }>(
    `SELECT encode(secret_sha256, 'hex') AS digest, expires_at FROM sluice.webhook_secret_expiries WHERE consumer_id = $1`,
    [consumerId],
  );
  return new Map(rows.map((r) => [r.digest, r.expires_at]));
}

export function storedSecrets(secrets: readonly string[], expiries: Map<string, Date>): StoredSecret[] {
  return secrets.map((secret) => {
    const at = expiries.get(secretDigest(secret).toString('hex'));
    return { secret, expires_at: at ? at.toISOString() : null };
  });
}

export interface SigningState {
  /** Null when the consumer has no live secret: deliveries go unsigned. */
  sign: Signer | null;
  /** When the set of signing secrets changes next (an expiry); Infinity if never. */
  validUntil: number;
}

export function signingState(stored: readonly StoredSecret[], now = new Date()): SigningState {
  const live = activeSecrets(stored, now);
  const nextExpiry = stored
    .map((s) => (s.expires_at ? Date.parse(s.expires_at) : Infinity))
    .filter((t) => t > now.getTime())
    .reduce((a, b) => Math.min(a, b), Infinity);
  return { sign: live.length > 0 ? createSigner(live) : null, validUntil: nextExpiry };
}

/** v1: an HMAC-SHA256 `whsec_` secret; v1a: an ed25519 `whsk_` key, verified with its `whpk_` public key. */
export type SignatureScheme = 'v1' | 'v1a';

/** The scheme a rotation keeps by default: the current secret's. */
const schemeOf = (secret: string | undefined): SignatureScheme => (secret?.startsWith('whsk_') ? 'v1a' : 'v1');

export interface RotationResult {
  /** The new secret, in full: shown in the API response once. */
  secret: string;
  /** For v1a, the new key's `whpk_` public key, which receivers verify with (not a secret). */
  publicKey: string | null;
  secrets: Array<{ secret: string; expires_at: string | null }>;
  config: ConsumerConfig;
}

/**
 * Puts a new secret first; the live older ones keep signing for `overlapMs`.
 * Runs inside the caller's config transaction (with the consumer row locked),
 * which writes `result.config` back.
 */
export async function rotateConsumerSecret(
  db: PoolClient,
  consumerId: string,
  config: ConsumerConfig,
  opts: { overlapMs?: number; now?: Date; scheme?: SignatureScheme } = {},
): Promise<RotationResult> {
  const webhook = config.webhook!;
  const { overlapMs = ROTATION_OVERLAP_MS, now = new Date(), scheme = schemeOf(webhook.secrets[0]) } = opts;
  const current = storedSecrets(webhook.secrets, await loadExpiries(db, consumerId));
  const pair = scheme === 'v1a' ? generateKeyPair() : null;
  const secret = pair ? pair.privateKey : generateSecret();
  const next = rotateSecrets(current, secret, now, overlapMs);
  const kept = next.filter((s) => s.expires_at);
  await db.query('DELETE FROM sluice.webhook_secret_expiries WHERE consumer_id = $1', [consumerId]);
  if (kept.length > 0) {
    await db.query(
      `INSERT INTO sluice.webhook_secret_expiries (consumer_id, secret_sha256, expires_at)
       SELECT $1, d, e FROM unnest($2::bytea[], $3::timestamptz[]) AS k(d, e)`,
      [consumerId, kept.map((s) => secretDigest(s.secret)), kept.map((s) => s.expires_at)],
    );
  }
  return {
    secret,
    publicKey: pair?.publicKey ?? null,
    secrets: next.map((s) => ({ secret: maskSecret(s.secret), expires_at: s.expires_at ?? null })),
    config: { ...config, webhook: { ...webhook, secrets: next.map((s) => s.secret) } },
  };
}
