// The API's response shapes the console reads (docs/api.md has them all);
// only the fields used here.

export interface Me {
  admin: boolean;
  name: string | null;
  consumers: string[] | null;
}

export interface OverviewSource {
  name: string;
  status: string;
  position: string | null;
  lag_bytes: number | null;
  lag_seconds: number | null;
  last_error: string | null;
  captured_per_minute: number[];
}

export interface OverviewConsumer {
  name: string;
  source: string;
  kind: string;
  state: string;
  pending: number;
  pending_at_least: boolean;
  in_flight: number;
  dead_lettered: number;
  oldest_pending_age_ms: number | null;
  delivered_per_minute: number[];
  delivered_per_second: number;
}

export interface Overview {
  generated_at: string;
  sources: OverviewSource[];
  consumers: OverviewConsumer[];
}

export interface Consumer {
  name: string;
  kind: 'pull' | 'webhook';
  source?: string;
  stream?: string;
  tables?: string[];
  state: string;
  state_reason?: string | null;
  webhook?: { url: string; secrets?: string[]; [k: string]: unknown };
  [k: string]: unknown;
}

export interface Stats {
  pending: number;
  pending_at_least: boolean;
  in_flight: number;
  dead_lettered: number;
  oldest_pending_age_ms: number | null;
}

export interface Attempt {
  id: string;
  webhook_id: string;
  attempt: number;
  started_at: string;
  duration_ms: number;
  status: number | null;
  outcome: string;
  error: string | null;
  response_excerpt: string | null;
  message_count: number;
}

export interface DeadLetter {
  id: string;
  group_key: string;
  deliver_count: number;
  last_delivered_at: string | null;
  last_error: string | null;
  created_at: string;
  message: unknown;
}

export interface Peeked {
  commit_lsn: string;
  commit_idx: number;
  committed_at: string | null;
  status: string;
  message?: unknown;
  error?: string;
}

export interface Source {
  name: string;
  url?: string;
  tables: string[];
  schemas?: string[];
  publication: string;
  slot: string;
  status?: { running: boolean; standing_by: boolean; lag_bytes: number | null; last_error: string | null };
  log?: { retained_changes?: number; retained_bytes?: number; oldest_commit_at?: string | null; held_back?: { warning?: string | null } | null };
  [k: string]: unknown;
}

export interface SourceTable {
  table: string;
  replica_identity: string;
  primary_key: string[];
}

export interface Token {
  id: string;
  name: string;
  admin: boolean;
  consumers: string[] | null;
  hint: string;
  created_at: string;
  last_used_at: string | null;
}

export interface Backfill {
  id: string;
  table: string;
  state: string;
  rows_read: number;
  rows_sent: number;
  rows_estimate: number | null;
  rate_per_second: number | null;
  eta_seconds: number | null;
  error: string | null;
  created_at: string;
}
