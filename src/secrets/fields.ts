// Which fields of a stored config are secrets, and the one walk over them that
// sealing, opening and counting share. The secrets: a source's `url` (its
// password, in userinfo or ?password=, and the host with it), and a webhook
// consumer's `url` (tokens in paths and queries), header values and signing
// secrets. The query modules seal on write and open on read, so the rest of the
// code only ever sees plain values.
import type { ConsumerConfig, SourceConfig } from '../config/types.js';
import { currentKeyring, type Keyring } from './keyring.js';
import { isSealed, open, sealForStorage, type SecretField, type StoredSecret } from './sealed.js';

type Resource = SecretField['resource'];
type Visit = (value: StoredSecret, field: SecretField) => StoredSecret;

/** The config with each secret field replaced by `visit(value)`; other fields are shared, not copied. */
function mapSecrets<T>(resource: Resource, name: string, config: T, visit: Visit): T {
  const at = (path: string): SecretField => ({ resource, name, path });
  const c = config as Record<string, unknown>;
  if (resource === 'source') {
    return (c.url === undefined ? config : { ...c, url: visit(c.url as StoredSecret, at('url')) }) as T;
  }
  const w = c.webhook as Record<string, unknown> | undefined;
  if (!w) return config;
  const webhook = { ...w };
  if (w.url !== undefined) webhook.url = visit(w.url as StoredSecret, at('webhook.url'));
  if (Array.isArray(w.secrets)) webhook.secrets = (w.secrets as StoredSecret[]).map((s) => visit(s, at('webhook.secrets')));
  if (w.headers && typeof w.headers === 'object') {
    const headers = Object.entries(w.headers as Record<string, StoredSecret>);
    webhook.headers = Object.fromEntries(headers.map(([header, v]) => [header, visit(v, at(`webhook.headers.${header}`))]));
  }
  return { ...c, webhook } as T;
}

/** As it is written to sluice.sources.config / sluice.consumers.config. */
export function sealSource(config: SourceConfig, keyring: Keyring = currentKeyring()): unknown {
  return mapSecrets('source', config.name, config, (v, f) => sealForStorage(v as string, keyring, f));
}

export function sealConsumer(config: ConsumerConfig, keyring: Keyring = currentKeyring()): unknown {
  return mapSecrets('consumer', config.name, config, (v, f) => sealForStorage(v as string, keyring, f));
}

/** A stored config with its secrets in plain text; `name` is the row's (the column wins over the copy inside). */
export function openSource(name: string, stored: unknown, keyring: Keyring = currentKeyring()): SourceConfig {
  return mapSecrets('source', name, stored as SourceConfig, (v, f) => open(v, keyring, f));
}

export function openConsumer(name: string, stored: unknown, keyring: Keyring = currentKeyring()): ConsumerConfig {
  return mapSecrets('consumer', name, stored as ConsumerConfig, (v, f) => open(v, keyring, f));
}

export interface SecretCount {
  /** Secret fields stored in plain text. */
  plain: number;
  /** Sealed fields per key id. */
  byKey: Map<string, number>;
  /** Where each key id is used first (for messages). */
  firstUse: Map<string, SecretField>;
}

export const emptyCount = (): SecretCount => ({ plain: 0, byKey: new Map(), firstUse: new Map() });

/** Adds a stored config's secret fields to `count`, without decrypting anything. */
export function countSecrets(resource: Resource, name: string, stored: unknown, count: SecretCount): void {
  mapSecrets(resource, name, stored, (v, f) => {
    if (!isSealed(v)) {
      // An empty header value hides nothing.
      if (v !== '') count.plain++;
      return v;
    }
    count.byKey.set(v.kid, (count.byKey.get(v.kid) ?? 0) + 1);
    if (!count.firstUse.has(v.kid)) count.firstUse.set(v.kid, f);
    return v;
  });
}
