-- A backfill chunk no longer goes into the log inside capture's write.
-- 0020 copied a chunk's rows in the buffer transaction that stores its high
-- watermark's transaction, so every live change captured behind the watermark
-- waited for that copy (5,000 rows: 50-250 ms, on the one path every live
-- change takes). Now:
--
--   1. capture, storing the watermark's transaction, only seals the chunk:
--      sluice.backfill_seal moves the chunk staged (0019's chunk_* columns)
--      into sluice.backfill_seals with the watermark's commit LSN, in that
--      same transaction;
--   2. once that transaction has committed (so has every change before the
--      watermark), the chunk's rows are copied into the log at that position
--      on a connection of their own, beside capture's next writes, and
--      sluice.backfill_store_sealed leaves out the rows changed in the
--      chunk's window, records the progress and drops the seal, in the same
--      transaction.
--
-- The worker can stage and seal the next chunk while one is being stored.
-- Seals are stored in order: each records the key its chunk was read after,
-- and is stored only if that is the backfill's stored progress (the chunk
-- before it was stored), else dropped, and read again.
--
-- Between 1 and 2 the log holds changes past the watermark and not yet the
-- chunk's rows that go before them. Only the backfill's own consumer reads
-- those rows, so only its admission waits: it takes in nothing at or past a
-- sealed watermark of its running backfills (sluice.admission_horizon), and
-- every other consumer goes on at once. Seals whose rows are gone (a crash
-- between 1 and 2) are dropped by the worker when it comes back to the
-- backfill (sluice.backfill_unseal), which reads on from the progress stored.

CREATE TABLE sluice.backfill_seals (
  backfill_id bigint NOT NULL REFERENCES sluice.backfills (id) ON DELETE CASCADE,
  chunk_no    integer NOT NULL,
  consumer_id uuid NOT NULL,
  -- The high watermark's commit LSN: where the chunk's rows go.
  hw_lsn      bigint NOT NULL,
  -- As staged (0019): the window's start, the key read after and the last key read, the row count, the last chunk.
  low_lsn     bigint NOT NULL,
  after_key   text[],
  last_key    text[] NOT NULL,
  rows        integer NOT NULL,
  final       boolean NOT NULL,
  PRIMARY KEY (backfill_id, chunk_no)
);
CREATE INDEX backfill_seals_consumer_idx ON sluice.backfill_seals (consumer_id, hw_lsn);

-- The key the staged chunk was read after (the one before it, sealed or
-- stored): recorded when it is staged, carried into its seal.
ALTER TABLE sluice.backfills ADD COLUMN chunk_after_key text[];

-- Where the consumer's admission stops: its running backfills' lowest sealed
-- watermark, or the end of time. STABLE: it reads with the snapshot of the
-- statement that calls it, the one that reads the log.
CREATE FUNCTION sluice.admission_horizon(p_consumer uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT coalesce(min(s.hw_lsn), 9223372036854775807) FROM sluice.backfill_seals s
  JOIN sluice.backfills b ON b.id = s.backfill_id AND b.state = 'running'
  WHERE s.consumer_id = p_consumer
$$;

-- Capture, storing a watermark's transaction: is that chunk the one staged
-- (running, its number, a low watermark)? Then it is sealed at the
-- watermark's commit LSN and no longer staged; returns the consumer the rows
-- belong to, else NULL (nothing is copied).
CREATE FUNCTION sluice.backfill_seal(p_backfill bigint, p_chunk integer, p_hw_lsn bigint)
RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  WITH staged AS (
    SELECT b.* FROM sluice.backfills b
    WHERE b.id = p_backfill AND b.state = 'running' AND b.chunk_no = p_chunk AND b.chunk_low_lsn IS NOT NULL
    FOR UPDATE
  ), sealed AS (
    INSERT INTO sluice.backfill_seals (backfill_id, chunk_no, consumer_id, hw_lsn, low_lsn, after_key, last_key, rows, final)
    SELECT s.id, s.chunk_no, s.consumer_id, p_hw_lsn, s.chunk_low_lsn, s.chunk_after_key, s.chunk_last_key, s.chunk_rows, s.chunk_final
    FROM staged s
    ON CONFLICT DO NOTHING
    RETURNING consumer_id
  ), unstaged AS (
    UPDATE sluice.backfills b SET chunk_low_lsn = NULL, updated_at = now()
    FROM sealed WHERE b.id = p_backfill
  )
  SELECT consumer_id FROM sealed
$$;

-- The chunk's store (2 above), in its transaction after the COPY of its rows
-- at the watermark: NULL (and the rows are to be rolled back) when the seal
-- is gone (cancelled, dropped) or the chunk before it was not stored; else
-- leaves out the rows whose key changed in the chunk's window (their change
-- in the log is newer than what was read), records the progress, drops the
-- seal, wakes the consumer, and returns the rows stored.
CREATE FUNCTION sluice.backfill_store_sealed(p_source integer, p_backfill bigint, p_chunk integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
-- As backfill_stored (0020): the window's keys are few and the chunk's rows
-- many, with statistics that lag the rows just copied.
SET enable_nestloop = off
AS $$
DECLARE
  v_b sluice.backfills%ROWTYPE;
  v_s sluice.backfill_seals%ROWTYPE;
  v_stale integer;
  v_sent integer;
BEGIN
  SELECT * INTO v_b FROM sluice.backfills b WHERE b.id = p_backfill FOR UPDATE;
  SELECT * INTO v_s FROM sluice.backfill_seals s WHERE s.backfill_id = p_backfill AND s.chunk_no = p_chunk;
  IF v_b.id IS NULL OR v_s.backfill_id IS NULL OR v_b.state <> 'running'
     OR v_s.after_key IS DISTINCT FROM v_b.last_key THEN
    RETURN NULL;
  END IF;
  DELETE FROM sluice.log r
  WHERE r.source_no = p_source AND r.commit_lsn = v_s.hw_lsn AND r.for_consumer = v_b.consumer_id
    AND r.group_key IN (
      SELECT l.group_key FROM sluice.log l
      WHERE l.source_no = p_source AND l.commit_lsn >= v_s.low_lsn AND l.commit_lsn < v_s.hw_lsn
        AND l.schema_name = v_b.schema_name AND l.table_name = v_b.table_name AND l.for_consumer IS NULL
        AND l.group_key IS NOT NULL);
  GET DIAGNOSTICS v_stale = ROW_COUNT;
  v_sent := v_s.rows - v_stale;
  UPDATE sluice.backfills b SET
    last_key = v_s.last_key,
    last_low_lsn = v_s.low_lsn,
    rows_read = b.rows_read + v_s.rows,
    rows_sent = b.rows_sent + v_sent,
    state = CASE WHEN v_s.final THEN 'done' ELSE b.state END,
    finished_at = CASE WHEN v_s.final THEN now() END,
    updated_at = now()
  WHERE b.id = p_backfill;
  DELETE FROM sluice.backfill_seals s WHERE s.backfill_id = p_backfill AND s.chunk_no = p_chunk;
  -- Even when every row was left out: changes past the watermark may have
  -- been waiting for the seal to go.
  PERFORM pg_notify('sluice_messages', v_b.consumer_id::text);
  RETURN v_sent;
END $$;

-- Seals no process will store (their rows were held by a process that
-- ended, or their store gave up): dropped, so the consumer's admission goes
-- on; the worker reads those chunks again from the progress stored.
CREATE FUNCTION sluice.backfill_unseal(p_backfill bigint, p_keep integer[])
RETURNS integer
LANGUAGE sql VOLATILE AS $$
  WITH gone AS (
    DELETE FROM sluice.backfill_seals s WHERE s.backfill_id = p_backfill AND NOT (s.chunk_no = ANY (p_keep))
    RETURNING 1
  )
  SELECT count(*)::integer FROM gone
$$;

-- A backfill that ends (cancelled, failed, done) keeps no seal.
CREATE FUNCTION sluice.backfill_seals_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state <> 'running' THEN
    DELETE FROM sluice.backfill_seals s WHERE s.backfill_id = NEW.id;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER backfills_seals_ended AFTER UPDATE OF state ON sluice.backfills
  FOR EACH ROW WHEN (NEW.state <> 'running') EXECUTE FUNCTION sluice.backfill_seals_ended();

-- 0020's two steps, now done by backfill_seal and backfill_store_sealed.
DROP FUNCTION sluice.backfill_open(bigint, integer);
DROP FUNCTION sluice.backfill_stored(integer, bigint, bigint);

-- walk_log (0019) and admit (0019), unchanged but for the horizon. It is
-- read in the statement that reads the log, so with the same snapshot: a
-- seal committed between two statements comes with the changes past its
-- watermark (capture commits them with it or after it), and a statement that
-- sees those sees the seal too.
CREATE OR REPLACE FUNCTION sluice.walk_log(p_consumer uuid, p_after_lsn bigint, p_after_idx integer, p_limit integer,
  p_check_ahead boolean)
RETURNS TABLE (from_lsn bigint, from_idx integer, commit_lsn bigint, commit_idx integer, table_name text, payload text)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  c_ahead CONSTANT integer := 5000;
  v_route record;
  v_lsn bigint;
  v_idx integer;
  v_waiting integer;
BEGIN
  SELECT * INTO v_route FROM sluice.consumer_route(p_consumer);
  SELECT p.commit_lsn, p.commit_idx INTO v_lsn, v_idx FROM sluice.consumer_positions p WHERE p.consumer_id = p_consumer;
  IF v_route.source_no IS NULL OR v_lsn IS NULL THEN
    RETURN;
  END IF;
  IF p_after_lsn IS NULL AND p_check_ahead THEN
    SELECT count(*) INTO v_waiting FROM (
      SELECT 1 FROM sluice.messages m
      WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND m.batch_id IS NULL
      LIMIT c_ahead) x;
    IF v_waiting >= c_ahead THEN
      RETURN;
    END IF;
  END IF;
  RETURN QUERY
  SELECT v_lsn, v_idx, l.commit_lsn, l.commit_idx, w.qualified,
         CASE WHEN w.qualified = ANY (v_route.tables) AND (v_route.actions IS NULL OR l.action = ANY (v_route.actions))
                   AND (l.for_consumer IS NULL OR l.for_consumer = p_consumer)
              THEN l.payload END
  FROM (SELECT l.commit_lsn, l.commit_idx, l.schema_name, l.table_name, l.action, l.payload, l.for_consumer
        FROM sluice.log l
        WHERE l.source_no = v_route.source_no
          AND (l.commit_lsn, l.commit_idx) > (coalesce(p_after_lsn, v_lsn), coalesce(p_after_idx, v_idx))
          AND l.commit_lsn < sluice.admission_horizon(p_consumer)
        ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  CROSS JOIN LATERAL (SELECT l.schema_name || '.' || l.table_name AS qualified) w
  ORDER BY l.commit_lsn, l.commit_idx;
END $$;

CREATE OR REPLACE FUNCTION sluice.admit(p_consumer uuid, p_source integer, p_tables text[], p_group_by jsonb, p_limit integer,
  p_stamp integer DEFAULT 0, p_now timestamptz DEFAULT NULL, p_visibility_ms integer DEFAULT NULL,
  p_dead_blocks_group boolean DEFAULT false)
RETURNS TABLE (commit_lsn bigint, commit_idx integer, group_key text, delivery_token integer, payload text)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  v_actions text[];
  v_filtered boolean;
  v_walk text;
  v_klsns bigint[] := '{}';
  v_kidxs integer[] := '{}';
  v_lsn bigint;
  v_idx integer;
  v_last_lsn bigint;
  v_last_idx integer;
BEGIN
  SELECT p.commit_lsn, p.commit_idx INTO v_lsn, v_idx FROM sluice.consumer_positions p WHERE p.consumer_id = p_consumer;
  IF NOT FOUND OR p_limit <= 0 THEN
    RETURN;
  END IF;
  SELECT r.actions, r.filtered INTO v_actions, v_filtered FROM sluice.consumer_route(p_consumer) r;
  IF v_filtered THEN
    v_walk := current_setting('sluice.walk_from', true);
    IF v_walk IS NULL OR v_walk <> p_consumer::text || '/' || v_lsn || '/' || v_idx THEN
      RETURN;
    END IF;
    PERFORM set_config('sluice.walk_from', '', true);
    v_walk := current_setting('sluice.walk_to');
    v_last_lsn := split_part(v_walk, '/', 1)::bigint;
    v_last_idx := split_part(v_walk, '/', 2)::integer;
    v_klsns := current_setting('sluice.walk_lsns')::bigint[];
    v_kidxs := current_setting('sluice.walk_idxs')::integer[];
    IF (v_last_lsn, v_last_idx) <= (v_lsn, v_idx) THEN
      RETURN;
    END IF;
  ELSE
    SELECT l.commit_lsn, l.commit_idx INTO v_last_lsn, v_last_idx FROM (
      SELECT l.commit_lsn, l.commit_idx FROM sluice.log l
      WHERE l.source_no = p_source AND (l.commit_lsn, l.commit_idx) > (v_lsn, v_idx)
        AND l.commit_lsn < sluice.admission_horizon(p_consumer)
      ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
    ORDER BY l.commit_lsn DESC, l.commit_idx DESC LIMIT 1;
    IF v_last_lsn IS NULL THEN
      RETURN;
    END IF;
  END IF;
  RETURN QUERY
  WITH src AS MATERIALIZED (
    SELECT l.commit_lsn, l.commit_idx, l.committed_at, l.payload, l.schema_name, l.table_name, l.group_key
    FROM sluice.log l
    WHERE NOT v_filtered AND l.source_no = p_source
      AND (l.commit_lsn, l.commit_idx) > (v_lsn, v_idx) AND (l.commit_lsn, l.commit_idx) <= (v_last_lsn, v_last_idx)
      AND (p_tables IS NULL OR (l.schema_name || '.' || l.table_name) = ANY (p_tables))
      AND (v_actions IS NULL OR l.action = ANY (v_actions))
      AND (l.for_consumer IS NULL OR l.for_consumer = p_consumer)
    UNION ALL
    SELECT l.commit_lsn, l.commit_idx, l.committed_at, l.payload, l.schema_name, l.table_name, l.group_key
    FROM unnest(v_klsns, v_kidxs) AS k(lsn, idx)
    CROSS JOIN LATERAL (
      SELECT l.* FROM sluice.log l
      WHERE l.source_no = p_source AND l.commit_lsn = k.lsn AND l.commit_idx = k.idx
        AND (l.commit_lsn, l.commit_idx) > (v_lsn, v_idx) AND (l.commit_lsn, l.commit_idx) <= (v_last_lsn, v_last_idx)
      OFFSET 0) l
    WHERE v_filtered
  ), walked AS MATERIALIZED (
    SELECT l.commit_lsn, l.commit_idx, l.committed_at, l.payload,
      CASE WHEN p_group_by IS NULL THEN l.group_key
           WHEN jsonb_typeof(p_group_by) <> 'object' THEN NULL
           WHEN p_group_by ? (l.schema_name || '.' || l.table_name) THEN
             sluice.custom_group_key(l.schema_name || '.' || l.table_name, l.payload,
                                     p_group_by -> (l.schema_name || '.' || l.table_name), l.group_key)
           ELSE l.group_key END AS group_key
    FROM src l
  ), heads AS MATERIALIZED (
    SELECT w.commit_lsn, w.commit_idx FROM (
      SELECT w.commit_lsn, w.commit_idx, w.group_key,
             row_number() OVER (PARTITION BY w.group_key ORDER BY w.commit_lsn, w.commit_idx) AS nth
      FROM walked w) w
    WHERE p_stamp > 0
      AND (w.group_key IS NULL OR (w.nth = 1
        AND NOT EXISTS (SELECT 1 FROM sluice.messages e
                        WHERE e.consumer_id = p_consumer AND e.group_key = w.group_key
                          AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1)))
        AND NOT EXISTS (SELECT 1 FROM sluice.messages r
                        WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key = w.group_key)))
    ORDER BY w.commit_lsn, w.commit_idx
    LIMIT greatest(p_stamp, 0)
  ), stamped AS MATERIALIZED (
    SELECT w.*, (h.commit_lsn IS NOT NULL) AS out,
           CASE WHEN h.commit_lsn IS NOT NULL THEN (floor(random() * 4294967296) - 2147483648)::integer END AS token
    FROM walked w LEFT JOIN heads h ON h.commit_lsn = w.commit_lsn AND h.commit_idx = w.commit_idx
  ), ins AS (
    INSERT INTO sluice.messages AS m
      (consumer_id, commit_lsn, commit_idx, group_key, created_at,
       delivery_token, deliver_count, visible_at, last_delivered_at)
    SELECT p_consumer, s.commit_lsn, s.commit_idx, s.group_key, s.committed_at,
      s.token,
      CASE WHEN s.out THEN 1 ELSE 0 END,
      CASE WHEN s.out THEN p_now + p_visibility_ms * interval '1 millisecond' ELSE '-infinity' END,
      CASE WHEN s.out THEN p_now END
    FROM stamped s
    ORDER BY s.commit_lsn, s.commit_idx
    -- Only after a rewind: the row is still here (in flight, in a batch, waiting
    -- or dead), and is delivered again through it.
    ON CONFLICT DO NOTHING
    RETURNING m.commit_lsn, m.commit_idx, m.group_key, m.delivery_token
  )
  SELECT i.commit_lsn, i.commit_idx, i.group_key, i.delivery_token,
         CASE WHEN i.delivery_token IS NOT NULL THEN s.payload END
  FROM ins i JOIN stamped s ON s.commit_lsn = i.commit_lsn AND s.commit_idx = i.commit_idx
  ORDER BY i.commit_lsn, i.commit_idx;
  UPDATE sluice.consumer_positions p SET commit_lsn = v_last_lsn, commit_idx = v_last_idx, updated_at = now()
  WHERE p.consumer_id = p_consumer;
END $$;
