-- Backfills: a consumer's tables' existing rows, read in keyset chunks from the
-- source and put into the log as `read` changes, interleaved with the live
-- changes by watermarks (the DBLog / incremental-snapshot method):
--
--   1. the worker notes the source's WAL insert position (the low watermark)
--      and waits until every transaction in progress then has ended, so a
--      change committed before the mark is visible to the read that follows;
--   2. it reads the next chunk (keyset order, LIMIT) and stages it in
--      sluice.backfill_rows, with the low watermark, in one transaction;
--   3. it writes the high watermark through the slot:
--      pg_logical_emit_message(true, 'sluice:backfill', '{"id":…,"chunk":…}').
--   4. capture, storing the transaction of that message, calls
--      sluice.backfill_emit in the same buffer transaction: the staged rows go
--      into the log at the high watermark's commit position, except those whose
--      row changed between the marks (their change, in the log, is newer than
--      what was read). So a read row is never stored after a newer change of
--      its row, and it sits in commit order like any other change.
--
-- Read rows are one consumer's: sluice.log.for_consumer names it and every
-- consumer's admission skips the others' (NULL: a captured change, everyone's).

ALTER TABLE sluice.log ADD COLUMN for_consumer uuid;

CREATE TABLE sluice.backfills (
  id             bigserial PRIMARY KEY,
  consumer_id    uuid NOT NULL REFERENCES sluice.consumers (id) ON DELETE CASCADE,
  schema_name    text NOT NULL,
  table_name     text NOT NULL,
  -- Keyset order: the primary key, or the start column then the primary key.
  key_columns    text[] NOT NULL,
  start_column   text,
  start_from     text,
  chunk_size     integer NOT NULL,
  max_rows_per_second integer,
  -- Pause while the consumer has more than this many changes not taken in (0: never).
  max_backlog    integer NOT NULL DEFAULT 50000,
  state          text NOT NULL DEFAULT 'running'
                 CHECK (state IN ('running', 'done', 'cancelled', 'failed')),
  -- The last key of the last chunk stored in the log (text of each key column).
  last_key       text[],
  -- The chunk staged and waiting for its high watermark (chunk_low_lsn not null).
  chunk_no       integer NOT NULL DEFAULT 0,
  chunk_low_lsn  bigint,
  chunk_last_key text[],
  chunk_rows     integer,
  chunk_final    boolean NOT NULL DEFAULT false,
  rows_read      bigint NOT NULL DEFAULT 0,
  -- Read rows stored in the log (rows_read less those a newer change replaced).
  rows_sent      bigint NOT NULL DEFAULT 0,
  rows_estimate  bigint,
  error          text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz
);
-- One running backfill per consumer and table (a second is refused: 409).
CREATE UNIQUE INDEX backfills_running_idx ON sluice.backfills (consumer_id, schema_name, table_name)
  WHERE state = 'running';

CREATE TABLE sluice.backfill_rows (
  backfill_id bigint NOT NULL REFERENCES sluice.backfills (id) ON DELETE CASCADE,
  chunk_no    integer NOT NULL,
  ord         integer NOT NULL,
  -- As capture computes it: "schema.table:" and the primary key values.
  group_key   text NOT NULL,
  record      text NOT NULL,
  record_pks  text NOT NULL,
  PRIMARY KEY (backfill_id, chunk_no, ord)
);

-- Stores a staged chunk in the log at its high watermark (called by capture in
-- the buffer transaction that stores the watermark's transaction, after the
-- rows before it). A watermark of a chunk no longer staged (the worker started
-- the chunk again after a restart, or the backfill ended) stores nothing.
-- Returns the rows stored.
CREATE FUNCTION sluice.backfill_emit(p_source integer, p_backfill bigint, p_chunk integer,
  p_commit_lsn bigint, p_committed_at text, p_database text)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_b sluice.backfills%ROWTYPE;
  v_n integer;
BEGIN
  SELECT * INTO v_b FROM sluice.backfills b WHERE b.id = p_backfill FOR UPDATE;
  IF NOT FOUND OR v_b.state <> 'running' OR v_b.chunk_no <> p_chunk OR v_b.chunk_low_lsn IS NULL THEN
    RETURN 0;
  END IF;
  WITH changed AS (
    SELECT DISTINCT l.group_key FROM sluice.log l
    WHERE l.source_no = p_source AND l.commit_lsn >= v_b.chunk_low_lsn AND l.commit_lsn < p_commit_lsn
      AND l.schema_name = v_b.schema_name AND l.table_name = v_b.table_name AND l.for_consumer IS NULL
      AND l.group_key IS NOT NULL
  ), ins AS (
    INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key,
                            committed_at, payload, for_consumer)
    SELECT p_source, p_commit_lsn, r.ord, v_b.schema_name, v_b.table_name, 'read', r.group_key,
           p_committed_at::timestamptz,
           '{"record":' || r.record || ',"changes":null,"action":"read","metadata":{"table_schema":'
             || to_json(v_b.schema_name)::text || ',"table_name":' || to_json(v_b.table_name)::text
             || ',"commit_timestamp":"' || p_committed_at || '","commit_lsn":' || p_commit_lsn
             || ',"commit_idx":' || r.ord || ',"idempotency_key":"'
             || encode(convert_to(p_commit_lsn || ':' || r.ord, 'UTF8'), 'base64')
             || '","record_pks":' || r.record_pks || ',"database_name":' || to_json(p_database)::text
             || ',"transaction_annotations":null}}',
           v_b.consumer_id
    FROM sluice.backfill_rows r
    WHERE r.backfill_id = p_backfill AND r.chunk_no = p_chunk
      AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.group_key = r.group_key)
    ORDER BY r.ord
    ON CONFLICT DO NOTHING
    RETURNING 1
  )
  SELECT count(*) INTO v_n FROM ins;
  DELETE FROM sluice.backfill_rows r WHERE r.backfill_id = p_backfill AND r.chunk_no = p_chunk;
  UPDATE sluice.backfills b SET
    last_key = coalesce(b.chunk_last_key, b.last_key),
    rows_read = b.rows_read + coalesce(b.chunk_rows, 0),
    rows_sent = b.rows_sent + v_n,
    chunk_low_lsn = NULL, chunk_last_key = NULL, chunk_rows = NULL,
    state = CASE WHEN b.chunk_final THEN 'done' ELSE b.state END,
    finished_at = CASE WHEN b.chunk_final THEN now() END,
    updated_at = now()
  WHERE b.id = p_backfill;
  IF v_n > 0 THEN
    PERFORM pg_notify('sluice_messages', v_b.consumer_id::text);
  END IF;
  RETURN v_n;
END $$;

-- walk_log (0018) and walk_replay (0016): another consumer's read rows are
-- walked over like changes of a table the consumer does not take.
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
        ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  CROSS JOIN LATERAL (SELECT l.schema_name || '.' || l.table_name AS qualified) w
  ORDER BY l.commit_lsn, l.commit_idx;
END $$;

CREATE OR REPLACE FUNCTION sluice.walk_replay(p_replay uuid, p_after_lsn bigint, p_after_idx integer, p_limit integer)
RETURNS TABLE (cursor_lsn bigint, cursor_idx integer, commit_lsn bigint, commit_idx integer, table_name text, payload text)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  v_r sluice.replays%ROWTYPE;
  v_source integer;
BEGIN
  SELECT * INTO v_r FROM sluice.replays r WHERE r.id = p_replay AND r.finished_at IS NULL;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  SELECT r.source_no INTO v_source FROM sluice.consumer_route(v_r.consumer_id) r;
  RETURN QUERY
  SELECT v_r.cursor_lsn, v_r.cursor_idx, l.commit_lsn, l.commit_idx, w.qualified,
         CASE WHEN w.qualified = ANY (v_r.tables) AND (v_r.actions IS NULL OR l.action = ANY (v_r.actions))
                   AND (l.for_consumer IS NULL OR l.for_consumer = v_r.consumer_id)
              THEN l.payload END
  FROM (SELECT l.commit_lsn, l.commit_idx, l.schema_name, l.table_name, l.action, l.payload, l.for_consumer
        FROM sluice.log l
        WHERE l.source_no = v_source
          AND (l.commit_lsn, l.commit_idx) > (coalesce(p_after_lsn, v_r.cursor_lsn), coalesce(p_after_idx, v_r.cursor_idx))
          AND (l.commit_lsn, l.commit_idx) <= (v_r.to_lsn, v_r.to_idx)
        ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  CROSS JOIN LATERAL (SELECT l.schema_name || '.' || l.table_name AS qualified) w
  ORDER BY l.commit_lsn, l.commit_idx;
END $$;

-- admit (0015), unchanged but for the unfiltered branch skipping other
-- consumers' read rows.
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
