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
