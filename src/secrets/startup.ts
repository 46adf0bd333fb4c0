// What a gateway checks about secrets at rest before it reads any config:
// the keys in the environment are well-formed, every key a stored secret needs
// is there (else startup stops, naming the key id and the fix, rather than
// failing later on one consumer), and in production mode a missing key is
// warned about, since every secret is then stored in plain text.
import type { SluiceConfig } from '../config/types.js';
import type { Pool } from '../db/pool.js';
import { currentKeyring, KEY_ENV } from './keyring.js';
import { countStoredSecrets, missingKeysError } from './rotate.js';

interface Log {
  info(obj: Record<string, unknown>, msg?: string): void;
  warn(obj: Record<string, unknown>, msg?: string): void;
}

/**
 * Production mode: NODE_ENV=production (as the Docker image sets), or a buffer
 * database of the operator's own (DATABASE_URL or buffer.url), i.e. anything
 * but the embedded Postgres of `npm start`.
 */
export function isProductionMode(env: Record<string, string | undefined>, config: Pick<SluiceConfig, 'buffer'>): boolean {
  return env.NODE_ENV === 'production' || Boolean(env.DATABASE_URL) || Boolean(config.buffer.url);
}

export const NO_KEY_WARNING = `secrets are stored in plain text: set ${KEY_ENV} to encrypt them at rest (see docs/configuration.md, "Secrets at rest")`;

export async function checkSecretsAtRest(pool: Pool, log: Log, production: boolean): Promise<void> {
  const keyring = currentKeyring();
  if (!keyring.current && production) log.warn({}, NO_KEY_WARNING);
  const count = await countStoredSecrets(pool);
  const missing = missingKeysError(count, keyring);
  if (missing) throw missing;
  const old = [...count.byKey].filter(([id]) => id !== keyring.current?.id).map(([id]) => id);
  if (keyring.current && (count.plain > 0 || old.length > 0)) {
    log.warn(
      { plain_text: count.plain, older_keys: old, key: keyring.current.id },
      'some stored secrets are not under the current key (written before it was set, or under an older one): `sluice secrets rotate-key` encrypts them with it',
    );
  }
}
