// Resources as the API returns them: the YAML shape (what was sent, with
// defaults filled in) plus read-only fields, secrets masked.
import type { ConsumerRow } from '../../api/consumers.js';
import type { SourceRow } from '../../api/sources.js';
import { toYamlConsumer, toYamlSource } from '../../config/load.js';
import type { SourceStatus } from '../deps.js';
import { maskHeaders, maskSecrets, maskUrl, scrubPassword } from './masking.js';

export function presentSource(row: SourceRow, status?: SourceStatus) {
  const yaml = toYamlSource(row.config);
  if (yaml.url !== undefined) yaml.url = maskUrl(yaml.url);
  return {
    id: row.id,
    ...yaml,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    ...(status && {
      status: {
        running: status.running,
        standing_by: status.standing_by,
        lag_bytes: status.lag_bytes,
        last_error: status.last_error === null ? null : scrubPassword(status.last_error, row.config.url),
        ...(status.outbox_refused && { outbox_refused: status.outbox_refused }),
      },
    }),
  };
}

/** `revealSecrets`: only in the response that created them (a generated secret is shown once). */
export function presentConsumer(row: ConsumerRow, revealSecrets = false) {
  const yaml = toYamlConsumer(row.config);
  if (yaml.webhook) {
    yaml.webhook.headers = maskHeaders(yaml.webhook.headers ?? {});
    if (!revealSecrets) yaml.webhook.secrets = maskSecrets(yaml.webhook.secrets ?? []);
  }
  // Active in name only while its claims fail: shown as failing, with the reason.
  const failing = row.state === 'active' && row.fault_reason !== null;
  return {
    id: row.id,
    ...yaml,
    state: failing ? ('failing' as const) : row.state,
    state_reason: failing ? row.fault_reason : row.state_reason,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}
