-- Streams: named logs of messages applications publish (src/streams/), kept in
-- sluice.log beside the sources' changes and retained the same way. A stream
-- takes its log number from the sources' sequence, so the two never share one
-- (log partitions, horizons and positions are keyed by it). Its name is
-- distinct from every source's: a consumer names one or the other (checked
-- by the config loader and the API).
CREATE TABLE sluice.streams (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name       text NOT NULL UNIQUE,
  log_no     integer NOT NULL UNIQUE DEFAULT nextval('sluice.sources_log_no_seq'),
  -- retention, annotations: the stream's declared config (src/config/types.ts StreamConfig)
  config     jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Published messages go into sluice.log like captured changes: source_no is
-- the stream's log number, commit_lsn its position (below), commit_idx 0,
-- action 'publish', group_key the message's key, and `subject` its subject
-- (NULL for captured changes). A position is the publish time in
-- microseconds since the Unix epoch, raised to one past the stream's last
-- when that is later (several messages in one microsecond): unique, in
-- commit order (one publisher at a time holds the stream's row), and time
-- ordered, so the log's partitions cover spans of time as a source's do.
ALTER TABLE sluice.log ADD COLUMN subject text;
ALTER TABLE sluice.streams ADD COLUMN last_position bigint NOT NULL DEFAULT 0;

-- A message published with an idempotency_key is stored once per key while
-- the key is retained (as long as the stream's retention keeps messages).
CREATE TABLE sluice.stream_keys (
  stream_no    integer NOT NULL,
  key          text NOT NULL,
  position     bigint NOT NULL,
  published_at timestamptz NOT NULL,
  PRIMARY KEY (stream_no, key)
);
CREATE INDEX stream_keys_age_idx ON sluice.stream_keys (stream_no, published_at);
