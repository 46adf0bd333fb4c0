// The keys that encrypt secrets at rest, from the environment:
//   SLUICE_SECRETS_KEY       "<key id>:<base64 of 32 random bytes>": encrypts every write, decrypts its own
//   SLUICE_SECRETS_KEYS_OLD  the same form, comma-separated: decrypt only, during a rotation
// The key id is stored beside each encrypted value, so a value always names the
// key it needs. Errors name the variable and the key id, never key material.
import { randomBytes } from 'node:crypto';

export const KEY_ENV = 'SLUICE_SECRETS_KEY';
export const OLD_KEYS_ENV = 'SLUICE_SECRETS_KEYS_OLD';
const KEY_BYTES = 32;
const KEY_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

export interface SecretsKey {
  id: string;
  key: Buffer;
}

export class KeyringError extends Error {
  readonly code = 'SLUICE_SECRETS_KEYRING';
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

export class Keyring {
  private readonly byId: Map<string, Buffer>;

  constructor(
    /** Encrypts every write; null: secrets are written in plain text. */
    readonly current: SecretsKey | null,
    old: SecretsKey[] = [],
  ) {
    this.byId = new Map(old.map((k) => [k.id, k.key]));
    if (current) this.byId.set(current.id, current.key);
  }

  key(id: string): Buffer | undefined {
    return this.byId.get(id);
  }

  /** Every key id this process can decrypt with. */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  static readonly none = new Keyring(null);
}

/** Reads the two variables; a malformed value throws a KeyringError naming the variable. */
export function keyringFromEnv(env: Record<string, string | undefined>): Keyring {
  const currentText = env[KEY_ENV]?.trim() ?? '';
  const oldText = env[OLD_KEYS_ENV]?.trim() ?? '';
  if (!currentText) {
    if (oldText) throw new KeyringError(`${OLD_KEYS_ENV} is set but ${KEY_ENV} is not: old keys only decrypt, so set the current key too`);
    return Keyring.none;
  }
  if (currentText.includes(',')) throw new KeyringError(`${KEY_ENV} holds one key; put older keys in ${OLD_KEYS_ENV}`);
  const current = parseKey(currentText, KEY_ENV);
  const old = oldText ? oldText.split(',').map((part) => parseKey(part.trim(), OLD_KEYS_ENV)) : [];
  const seen = new Map<string, Buffer>([[current.id, current.key]]);
  for (const k of old) {
    const other = seen.get(k.id);
    if (other && !other.equals(k.key)) throw new KeyringError(`${OLD_KEYS_ENV}: key id "${k.id}" is given twice with different keys`);
    seen.set(k.id, k.key);
  }
  return new Keyring(current, old);
}

function parseKey(text: string, variable: string): SecretsKey {
  const colon = text.indexOf(':');
  const form = `expected "<key id>:<base64 of ${KEY_BYTES} random bytes>" (\`sluice secrets new-key\` prints one)`;
  if (colon < 0) throw new KeyringError(`${variable}: ${form}`);
  const id = text.slice(0, colon);
  const material = text.slice(colon + 1);
  if (!KEY_ID_RE.test(id)) throw new KeyringError(`${variable}: key id "${id.slice(0, 64)}" must be 1-64 letters, digits, ".", "_" or "-"; ${form}`);
  // Buffer.from skips junk characters silently; a mistyped key must fail instead.
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(material)) throw new KeyringError(`${variable}: key "${id}" is not base64; ${form}`);
  const key = Buffer.from(material, 'base64');
  if (key.length !== KEY_BYTES) throw new KeyringError(`${variable}: key "${id}" is ${key.length} bytes; AES-256 needs ${KEY_BYTES}`);
  return { id, key };
}

/** A new key in the form SLUICE_SECRETS_KEY takes; the id defaults to today's date and a random suffix. */
export function newKey(id?: string, now = new Date()): string {
  const keyId = id ?? `${now.toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(2).toString('hex')}`;
  if (!KEY_ID_RE.test(keyId)) throw new KeyringError(`key id "${keyId.slice(0, 64)}" must be 1-64 letters, digits, ".", "_" or "-"`);
  return `${keyId}:${randomBytes(KEY_BYTES).toString('base64')}`;
}

// The environment is the process's, so its keyring is too: read once, on first
// use, by every query module that stores or reads configs.
let processKeyring: Keyring | null = null;

export function currentKeyring(): Keyring {
  processKeyring ??= keyringFromEnv(process.env);
  return processKeyring;
}

/** Replaces the process keyring (tests, and commands that were given one); null: read the environment again. */
export function useKeyring(keyring: Keyring | null): void {
  processKeyring = keyring;
}
