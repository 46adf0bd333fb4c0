// A source's log retention as the code uses it. The config and API field
// (`retention: {max_age, max_size}`) is normalised to SourceConfig.retention =
// { max_age_ms, max_size_bytes }; a source stored without it, or with only one
// of the two, gets the defaults here, the one place they are decided.

export interface Retention {
  max_age_ms: number;
  max_size_bytes: number;
}

/** 7 days: a week of changes to rewind into; 20 GB: bounded disk whatever the change rate. */
export const DEFAULT_RETENTION: Readonly<Retention> = Object.freeze({
  max_age_ms: 7 * 24 * 60 * 60 * 1000,
  max_size_bytes: 20 * 1024 ** 3,
});

/** The retention of a stored source config (or its `retention` value), defaults filled in. */
export function retentionOf(source: { retention?: Partial<Retention> | null } | null | undefined): Retention {
  const r = source?.retention ?? {};
  return {
    max_age_ms: positive(r.max_age_ms) ?? DEFAULT_RETENTION.max_age_ms,
    max_size_bytes: positive(r.max_size_bytes) ?? DEFAULT_RETENTION.max_size_bytes,
  };
}

function positive(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}
