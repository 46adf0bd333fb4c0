// One secret encrypted at rest, as it sits in a jsonb config in place of the
// string it hides:
//   {"$sealed": "aes-256-gcm", "kid": "<key id>", "iv": "<base64, 12 bytes>", "ct": "<base64 ciphertext + 16-byte tag>"}
// An object, so it can never be mistaken for a plain-text value (those are
// strings), which keeps rows written before encryption readable as they are.
// The field it belongs to is the additional authenticated data: a sealed value
// copied into another field or row (say a signing secret into a header that is
// sent to the receiver) fails to open instead of revealing itself there.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KEY_ENV, OLD_KEYS_ENV, type Keyring, type SecretsKey } from './keyring.js';

const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface SealedValue {
  $sealed: typeof ALGORITHM;
  kid: string;
  iv: string;
  ct: string;
}

/** A secret field as stored: plain text (written without a key, or before encryption existed) or sealed. */
export type StoredSecret = string | SealedValue;

/** Where a secret lives: named in errors, and bound into its ciphertext. */
export interface SecretField {
  resource: 'source' | 'consumer';
  name: string;
  /** e.g. "url", "webhook.secrets", "webhook.headers.Authorization". */
  path: string;
}

export const describeField = (f: SecretField) => `${f.resource} "${f.name}" ${f.path}`;
const aad = (f: SecretField) => Buffer.from(JSON.stringify([f.resource, f.name, f.path]));

export class SecretsKeyError extends Error {
  constructor(
    message: string,
    readonly keyId: string,
  ) {
    super(message);
    this.name = 'SecretsKeyError';
  }
}

export function isSealed(value: unknown): value is SealedValue {
  return typeof value === 'object' && value !== null && (value as { $sealed?: unknown }).$sealed === ALGORITHM;
}

export function seal(plain: string, key: SecretsKey, field: SecretField): SealedValue {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(field));
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return { $sealed: ALGORITHM, kid: key.id, iv: iv.toString('base64'), ct: ct.toString('base64') };
}

/** The plain text of a stored secret; a sealed one needs its key in `keyring`. */
export function open(stored: StoredSecret, keyring: Keyring, field: SecretField): string {
  if (!isSealed(stored)) return stored;
  const key = keyring.key(stored.kid);
  if (!key) {
    throw new SecretsKeyError(
      `${describeField(field)} is encrypted with key "${stored.kid}", which this process does not have. ` +
        `Give it that key: ${KEY_ENV}=${stored.kid}:<base64 key> if it is still the current one, ` +
        `else ${OLD_KEYS_ENV}=${stored.kid}:<base64 key> beside the current key (see docs/configuration.md, "Secrets at rest")`,
      stored.kid,
    );
  }
  try {
    const data = Buffer.from(stored.ct, 'base64');
    const decipher = createDecipheriv(ALGORITHM, key, Buffer.from(stored.iv, 'base64'), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(field));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    return Buffer.concat([decipher.update(data.subarray(0, data.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretsKeyError(
      `${describeField(field)} cannot be decrypted with key "${stored.kid}": the key given under that id is not the one ` +
        'it was encrypted with, or the stored value was altered (see docs/configuration.md, "Secrets at rest")',
      stored.kid,
    );
  }
}

/** The value as it should be stored now: sealed under the current key, or plain text without one. */
export function sealForStorage(plain: string, keyring: Keyring, field: SecretField): StoredSecret {
  return keyring.current ? seal(plain, keyring.current, field) : plain;
}
