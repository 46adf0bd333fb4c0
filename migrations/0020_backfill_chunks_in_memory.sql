-- A backfill chunk no longer goes through the buffer twice. 0019 staged each
-- chunk in sluice.backfill_rows and copied it into the log when its high
-- watermark came back (sluice.backfill_emit): every row written, read, written
-- again and deleted. The backfill worker runs in the process that captures its
-- source, so it now hands the encoded chunk to capture in memory
-- (src/backfill/staged.ts), and capture copies it into the log by COPY, in the
-- buffer transaction that stores the watermark's transaction:
--
--   1. sluice.backfill_open(backfill, chunk): is that chunk the one staged (the
--      backfill running, its chunk_no, a low watermark)? Locks the backfill's
--      row until the transaction ends, so a cancel waits for it. Returns the
--      consumer the rows belong to, or NULL: then nothing is copied.
--   2. COPY of the rows at (watermark commit LSN, 0..n-1), for that consumer.
--   3. sluice.backfill_stored(...), once every change before the watermark is
--      committed: deletes the rows just copied whose key changed in the
--      chunk's window (their change in the log is newer than what was read),
--      records the progress, wakes the consumer.
-- A crash anywhere before the commit loses the copy and the progress alike:
-- the chunk is read again. A watermark of a chunk no longer staged, or one
-- whose rows this process does not hold (read before a restart), stores nothing.

DROP FUNCTION sluice.backfill_emit(integer, bigint, integer, bigint, text, text);
DROP TABLE sluice.backfill_rows;

-- The low watermark of the last chunk stored: the next chunk's window starts
-- there (a margin of one chunk, src/backfill/runner.ts), also in a process
-- that took the backfill over after a restart.
ALTER TABLE sluice.backfills ADD COLUMN last_low_lsn bigint;

CREATE FUNCTION sluice.backfill_open(p_backfill bigint, p_chunk integer)
RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  SELECT b.consumer_id FROM sluice.backfills b
  WHERE b.id = p_backfill AND b.state = 'running' AND b.chunk_no = p_chunk AND b.chunk_low_lsn IS NOT NULL
  FOR UPDATE
$$;

CREATE FUNCTION sluice.backfill_stored(p_source integer, p_backfill bigint, p_commit_lsn bigint)
RETURNS integer
LANGUAGE plpgsql VOLATILE
-- The window's keys are few and the chunk's rows many, with statistics that
-- lag the rows just copied: a nested loop here was chunk × window comparisons.
SET enable_nestloop = off
AS $$
DECLARE
  v_b sluice.backfills%ROWTYPE;
  v_stale integer;
  v_sent integer;
BEGIN
  -- Locked by backfill_open in this transaction: still the chunk it checked.
  SELECT * INTO STRICT v_b FROM sluice.backfills b WHERE b.id = p_backfill;
  DELETE FROM sluice.log r
  WHERE r.source_no = p_source AND r.commit_lsn = p_commit_lsn AND r.for_consumer = v_b.consumer_id
    AND r.group_key IN (
      SELECT l.group_key FROM sluice.log l
      WHERE l.source_no = p_source AND l.commit_lsn >= v_b.chunk_low_lsn AND l.commit_lsn < p_commit_lsn
        AND l.schema_name = v_b.schema_name AND l.table_name = v_b.table_name AND l.for_consumer IS NULL
        AND l.group_key IS NOT NULL);
  GET DIAGNOSTICS v_stale = ROW_COUNT;
  v_sent := coalesce(v_b.chunk_rows, 0) - v_stale;
  UPDATE sluice.backfills b SET
    last_key = coalesce(b.chunk_last_key, b.last_key),
    last_low_lsn = b.chunk_low_lsn,
    rows_read = b.rows_read + coalesce(b.chunk_rows, 0),
    rows_sent = b.rows_sent + v_sent,
    chunk_low_lsn = NULL, chunk_last_key = NULL, chunk_rows = NULL,
    state = CASE WHEN b.chunk_final THEN 'done' ELSE b.state END,
    finished_at = CASE WHEN b.chunk_final THEN now() END,
    updated_at = now()
  WHERE b.id = p_backfill;
  IF v_sent > 0 THEN
    PERFORM pg_notify('sluice_messages', v_b.consumer_id::text);
  END IF;
  RETURN v_sent;
END $$;
