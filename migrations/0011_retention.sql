-- Retention of the change log (issue 10): the job in src/log/retention.ts drops
-- whole partitions of sluice.log (DETACH PARTITION … CONCURRENTLY, then DROP
-- TABLE), never rows, so the log needs no DELETE and no VACUUM for them.
--
-- A partition is counted once, when it can receive no more changes (it lies
-- below the source's confirmed position): counting rows of a growing log on
-- every status request would read the whole log. NULL: not counted yet (the
-- status estimates it from the table statistics).
ALTER TABLE sluice.log_partitions ADD COLUMN changes bigint;

COMMENT ON COLUMN sluice.log_partitions.changes IS
  'rows in the partition, counted by retention once it lies below the confirmed position; NULL until then';
COMMENT ON TABLE sluice.log_horizons IS
  'per source: every change below dropped_lsn is gone (set by retention before it detaches a partition)';
