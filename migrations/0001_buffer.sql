-- Sluice's buffer: every captured change, once per consumer, until it is acked.
-- Lives in its own schema so that a publication of user tables never includes it.

-- (the schema itself is created by the migrator, which keeps its table there)

-- Sources: databases Sluice captures from. `config` holds the normalised
-- settings as applied (connection URL after ${VAR} substitution, tables, slot,
-- ...): treat this table, like `sluice config export`, as holding secrets.
CREATE TABLE sluice.sources (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text NOT NULL UNIQUE,
  config      jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The durable capture position of each source: the end LSN of the last source
-- transaction whose changes are all committed in sluice.messages. Written in the
-- same statement as the messages, so it can never run ahead of them.
CREATE TABLE sluice.source_positions (
  source_name    text PRIMARY KEY,
  confirmed_lsn  pg_lsn NOT NULL,
  last_commit_at timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Consumers: a named view of some source tables, delivered by pull or webhook.
CREATE TABLE sluice.consumers (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name         text NOT NULL UNIQUE,
  source_name  text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('pull', 'webhook')),
  -- tables, grouping, delivery settings: the consumer's declared config
  config       jsonb NOT NULL,
  state        text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'disabled')),
  state_reason text,
  annotations  jsonb NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per (consumer, change). Acked rows are deleted.
--   visible_at      when the row may next be handed out (visibility timeout,
--                   nack, retry backoff). '-infinity' = never delivered.
--   deliver_count   deliveries so far (pull receives or webhook attempts).
--   delivery_token  random per delivery; part of the ack_id, so an ack_id from
--                   an earlier delivery cannot ack a later one.
--   state           0 pending, 1 dead-lettered.
--   group_key       per-group order key; NULL when the consumer does not group.
--   payload         the message JSON without metadata.consumer (added when served).
CREATE TABLE sluice.messages (
  consumer_id     uuid NOT NULL,
  commit_lsn      bigint NOT NULL,
  commit_idx      integer NOT NULL,
  group_key       text,
  payload         text NOT NULL,
  state           smallint NOT NULL DEFAULT 0,
  visible_at      timestamptz NOT NULL DEFAULT '-infinity',
  deliver_count   integer NOT NULL DEFAULT 0,
  delivery_token  integer,
  last_delivered_at timestamptz,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_id, commit_lsn, commit_idx)
);

-- "Is an earlier message of this group still pending?" is one probe of this index.
CREATE INDEX messages_group_idx ON sluice.messages (consumer_id, group_key, commit_lsn, commit_idx)
  WHERE group_key IS NOT NULL;
-- In-flight rows (delivered at least once): counts for max_ack_pending and stats.
CREATE INDEX messages_delivered_idx ON sluice.messages (consumer_id, visible_at)
  WHERE delivery_token IS NOT NULL;
-- Dead letters, listed per consumer.
CREATE INDEX messages_dead_idx ON sluice.messages (consumer_id, commit_lsn, commit_idx)
  WHERE state = 1;

ALTER TABLE sluice.messages SET (fillfactor = 90);
