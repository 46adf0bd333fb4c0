// Where the stored secrets stand (which key each is under), and
// `sluice secrets rotate-key`: every secret not under the current key (plain
// text, or an older key) decrypted and encrypted again under it, in one
// transaction under the config apply lock, so no apply or API change
// interleaves and a failure leaves every row as it was.
import { lockConfigApply, notifyConfigChanged } from '../config/queries.js';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { countSecrets, emptyCount, openConsumer, openSource, sealConsumer, sealSource, type SecretCount } from './fields.js';
import { KEY_ENV, KeyringError, type Keyring } from './keyring.js';
import { describeField, SecretsKeyError } from './sealed.js';
import { selectStoredConfigs, updateStoredConfig, type StoredConfigRow } from './queries.js';

export async function countStoredSecrets(db: Pool | PoolClient): Promise<SecretCount> {
  const count = emptyCount();
  for (const row of await selectStoredConfigs(db)) countSecrets(row.resource, row.name, row.config, count);
  return count;
}

/** Key ids that stored secrets use and `keyring` lacks, as one error naming each and the fix; null if none. */
export function missingKeysError(count: SecretCount, keyring: Keyring): SecretsKeyError | null {
  const missing = [...count.byKey.keys()].filter((id) => !keyring.key(id));
  if (missing.length === 0) return null;
  const each = missing.map((id) => `"${id}" (${plural(count.byKey.get(id)!, 'value')}, e.g. ${describeField(count.firstUse.get(id)!)})`);
  return new SecretsKeyError(
    `stored secrets are encrypted with key${missing.length > 1 ? 's' : ''} ${each.join(', ')}, which this process does not have. ` +
      `Give it ${missing.length > 1 ? 'those keys' : 'that key'} in SLUICE_SECRETS_KEYS_OLD (as "<key id>:<base64 key>", comma-separated) ` +
      `beside the current ${KEY_ENV}, or as ${KEY_ENV} if it is still the current one; see docs/configuration.md, "Secrets at rest"`,
    missing[0],
  );
}

export interface RotationReport {
  keyId: string;
  /** Secret fields encrypted again under the current key. */
  resealed: number;
  /** Of those, how many were plain text, and how many under each older key. */
  plain: number;
  byOldKey: Map<string, number>;
  /** Sources and consumers rewritten. */
  rows: number;
}

export async function rotateKey(pool: Pool, keyring: Keyring): Promise<RotationReport> {
  const current = keyring.current;
  if (!current) throw new KeyringError(`${KEY_ENV} is not set: rotate-key encrypts every stored secret with it`);
  return withTransaction(pool, async (db) => {
    await lockConfigApply(db);
    const report: RotationReport = { keyId: current.id, resealed: 0, plain: 0, byOldKey: new Map(), rows: 0 };
    const all = emptyCount();
    const rows = (await selectStoredConfigs(db)).map((row) => {
      const count = emptyCount();
      countSecrets(row.resource, row.name, row.config, count);
      countSecrets(row.resource, row.name, row.config, all);
      return { row, count };
    });
    // Checked before any write, so the error names every missing key at once.
    const missing = missingKeysError(all, keyring);
    if (missing) throw missing;
    for (const { row, count } of rows) {
      const old = [...count.byKey].filter(([id]) => id !== current.id);
      if (count.plain === 0 && old.length === 0) continue;
      await updateStoredConfig(db, row, reseal(row, keyring));
      report.rows++;
      report.plain += count.plain;
      report.resealed += count.plain;
      for (const [id, n] of old) {
        report.byOldKey.set(id, (report.byOldKey.get(id) ?? 0) + n);
        report.resealed += n;
      }
    }
    // Gateways reload; they see the same plain values, so no worker restarts.
    if (report.rows > 0) await notifyConfigChanged(db);
    return report;
  });
}

function reseal(row: StoredConfigRow, keyring: Keyring): unknown {
  return row.resource === 'source'
    ? sealSource({ ...openSource(row.name, row.config, keyring), name: row.name }, keyring)
    : sealConsumer({ ...openConsumer(row.name, row.config, keyring), name: row.name }, keyring);
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export function formatRotation(r: RotationReport): string {
  if (r.rows === 0) return `Every stored secret is already encrypted with key "${r.keyId}"; nothing to do.`;
  const from = [r.plain > 0 ? `${r.plain} in plain text` : '', ...[...r.byOldKey].map(([id, n]) => `${n} under key "${id}"`)].filter(Boolean);
  return [
    `Encrypted ${plural(r.resealed, 'secret')} with key "${r.keyId}" (${from.join(', ')}), in ${plural(r.rows, 'source or consumer')}.`,
    'No stored secret needs another key now: older keys can leave SLUICE_SECRETS_KEYS_OLD once every gateway has reloaded.',
  ].join('\n');
}

export function formatCount(count: SecretCount, keyring: Keyring): string {
  const lines: string[] = [];
  if (count.plain > 0) lines.push(`  plain text: ${plural(count.plain, 'secret')}`);
  for (const [id, n] of [...count.byKey].sort()) {
    const note = id === keyring.current?.id ? ' (the current key)' : keyring.key(id) ? ' (an old key)' : ' (NOT AVAILABLE to this process)';
    lines.push(`  key "${id}"${note}: ${plural(n, 'secret')}`);
  }
  if (lines.length === 0) lines.push('  none stored');
  const stale = count.plain + [...count.byKey].filter(([id]) => id !== keyring.current?.id).reduce((a, [, n]) => a + n, 0);
  const advice = !keyring.current
    ? `${KEY_ENV} is not set: secrets are written in plain text.`
    : stale > 0
      ? '`sluice secrets rotate-key` encrypts the rest with the current key.'
      : 'Every stored secret is under the current key.';
  return ['Stored secrets:', ...lines, advice].join('\n');
}
