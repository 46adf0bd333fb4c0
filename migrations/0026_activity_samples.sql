-- Activity over time for the console's charts (GET /api/overview): changes
-- captured per source and messages delivered per consumer, a minute at a
-- time for the last hour, for the whole cluster and across restarts. The
-- counters each gateway process keeps (src/metrics/metrics.ts) live in its
-- memory and start at zero; every process's sampler (src/metrics/sampler.ts)
-- writes what they grew by since its last sample, every 10 s, as one row.
--
-- Shape: one row per process per sample, its counts as JSON objects
-- {"<source or consumer name>": n} holding only what moved. One insert a
-- round whatever the number of consumers (a row per consumer and sample
-- would be 200 rows every 10 s for 200 consumers; here it is one), and the
-- overview sums at most an hour of rows (360 per process) in one statement.
-- Names, not ids: a deleted resource's samples are simply not shown, and
-- names never change. Rows older than 2 h are deleted by the samplers
-- themselves, in the statement that inserts (sluice.activity_samples_at_idx
-- makes that and the overview's read index range scans).
CREATE TABLE sluice.activity_samples (
  at        timestamptz NOT NULL DEFAULT now(),
  -- The gateway process (its instance id, host:pid:random): who wrote it, for debugging.
  process   text NOT NULL,
  captured  jsonb NOT NULL DEFAULT '{}',
  delivered jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX activity_samples_at_idx ON sluice.activity_samples (at);
