-- Claims and acks whose cost does not depend on sluice.messages' statistics,
-- and a pull claim that writes a change it hands out once.
--
-- sluice.messages now holds only what consumers have taken in and not yet
-- acked: it is small, and its size swings by thousands of rows a second.
-- Whatever ANALYZE last saw (often a nearly empty table) is wrong a moment
-- later, and cached plans keep the estimate. Profiled (bench/sql-profile.ts,
-- PROFILE_EXPLAIN): a pull ack of 100 ids walked all 800 in-flight rows for
-- each id (23 ms instead of ~1), and a webhook ack reached 375 ms.

-- Deletes a consumer's rows by key, in state 0 and not marked replay (and,
-- with p_tokens, carrying that token): one primary-key probe per key (the
-- LATERAL subquery is kept apart by OFFSET 0, so no join order can turn it
-- into a walk of all the consumer's rows), then a delete by ctid with seq and
-- bitmap scans off (a TID scan, whatever the table's estimated size). A row
-- updated between the probe and the delete has a new ctid and is left alone,
-- as a changed token would be. Returns how many rows went.
CREATE FUNCTION sluice.delete_messages(p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_tokens integer[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
  v_n integer;
BEGIN
  -- (plpgsql, not sql: its plan is cached per connection; a SQL function
  -- with SET clauses is planned on every call, ~0.2 ms.)
  DELETE FROM sluice.messages m
  WHERE m.ctid = ANY (ARRAY(
    SELECT t.ctid
    FROM unnest(p_lsns, p_idxs, coalesce(p_tokens, array_fill(NULL::integer, ARRAY[cardinality(p_lsns)])))
      AS k(lsn, idx, token)
    CROSS JOIN LATERAL (
      SELECT r.ctid FROM sluice.messages r
      WHERE r.consumer_id = p_consumer AND r.commit_lsn = k.lsn AND r.commit_idx = k.idx
        AND (k.token IS NULL OR r.delivery_token = k.token) AND r.state = 0 AND NOT r.replay
      OFFSET 0) t))
    AND m.state = 0 AND NOT m.replay;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END $$;

-- What a claim needs to know of its consumer (0010's), in plpgsql so that
-- its plan is cached per connection: as a SQL function returning a record it
-- was planned on every claim (~0.4 ms of a webhook claim's ~11 ms, profiled).
CREATE OR REPLACE FUNCTION sluice.consumer_route(p_consumer uuid,
  OUT source_no integer, OUT tables text[], OUT group_by jsonb, OUT active boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT s.log_no,
         ARRAY(SELECT jsonb_array_elements_text(c.config -> 'tables')),
         CASE WHEN c.config -> 'group_by' IS NULL OR c.config -> 'group_by' IN ('true'::jsonb, 'null'::jsonb)
              THEN NULL ELSE c.config -> 'group_by' END,
         c.state = 'active'
  INTO source_no, tables, group_by, active
  FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name
  WHERE c.id = p_consumer;
END $$;

DROP FUNCTION sluice.admit(uuid, integer, text[], jsonb, integer);
CREATE FUNCTION sluice.admit(p_consumer uuid, p_source integer, p_tables text[], p_group_by jsonb, p_limit integer,
  p_stamp integer DEFAULT 0, p_now timestamptz DEFAULT NULL, p_visibility_ms integer DEFAULT NULL,
  p_dead_blocks_group boolean DEFAULT false)
RETURNS TABLE (commit_lsn bigint, commit_idx integer, group_key text, delivery_token integer, payload text)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  v_lsn bigint;
  v_idx integer;
  v_last_lsn bigint;
  v_last_idx integer;
BEGIN
  SELECT p.commit_lsn, p.commit_idx INTO v_lsn, v_idx FROM sluice.consumer_positions p WHERE p.consumer_id = p_consumer;
  IF NOT FOUND OR p_limit <= 0 THEN
    RETURN;
  END IF;
  SELECT l.commit_lsn, l.commit_idx INTO v_last_lsn, v_last_idx FROM (
    SELECT l.commit_lsn, l.commit_idx FROM sluice.log l
    WHERE l.source_no = p_source AND (l.commit_lsn, l.commit_idx) > (v_lsn, v_idx)
    ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  ORDER BY l.commit_lsn DESC, l.commit_idx DESC LIMIT 1;
  IF v_last_lsn IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH walked AS MATERIALIZED (
    SELECT l.commit_lsn, l.commit_idx, l.committed_at, l.payload,
      CASE WHEN p_group_by IS NULL THEN l.group_key
           WHEN jsonb_typeof(p_group_by) <> 'object' THEN NULL
           WHEN p_group_by ? (l.schema_name || '.' || l.table_name) THEN
             sluice.custom_group_key(l.schema_name || '.' || l.table_name, l.payload,
                                     p_group_by -> (l.schema_name || '.' || l.table_name), l.group_key)
           ELSE l.group_key END AS group_key
    FROM sluice.log l
    WHERE l.source_no = p_source
      AND (l.commit_lsn, l.commit_idx) > (v_lsn, v_idx) AND (l.commit_lsn, l.commit_idx) <= (v_last_lsn, v_last_idx)
      AND (p_tables IS NULL OR (l.schema_name || '.' || l.table_name) = ANY (p_tables))
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

-- As 0002's, plus: replay rows whose delivery ended go back to waiting; when
-- the windows and the sweep leave room, the claim admits that many rows from
-- the log and claims those that head their group.
CREATE OR REPLACE FUNCTION sluice.claim_messages(
  p_consumer uuid, p_limit integer, p_visibility_ms integer,
  p_max_ack_pending integer,      -- NULL: unlimited
  p_max_deliver integer,          -- NULL: never dead-letter
  p_dead_blocks_group boolean
) RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
                 deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  c_sweep CONSTANT integer := 200;
  c_ahead CONSTANT integer := 5000;
  v_now timestamptz;
  v_route record;
  v_cur sluice.claim_cursors%ROWTYPE;
  v_fresh boolean;
  v_from_lsn bigint := -9223372036854775808;
  v_from_idx integer := -2147483648;
  v_expired_from timestamptz := '-infinity';
  v_bound integer;
  v_room integer := p_limit;
  v_window integer;
  v_lsns bigint[];
  v_idxs integer[];
  v_groups text[];
  v_next_group text;
  v_next_lsn bigint;
  v_next_idx integer;
  v_next_expired timestamptz;
  v_undelivered_left boolean := false;
  v_claimed integer := 0;
  v_n integer;
  v_pass integer;
  v_row record;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  PERFORM set_config('synchronous_commit', 'off', true);
  v_now := clock_timestamp();
  SELECT * INTO v_route FROM sluice.consumer_route(p_consumer);
  IF v_route.source_no IS NULL THEN
    RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::integer, NULL::integer, NULL::text, NULL::text, NULL::timestamptz;
    RETURN;
  END IF;
  SELECT * INTO v_cur FROM sluice.claim_cursors c WHERE c.consumer_id = p_consumer;
  v_fresh := coalesce(v_cur.rescan_at > v_now, false);
  IF v_fresh THEN
    v_from_lsn := v_cur.commit_lsn;
    v_from_idx := v_cur.commit_idx;
    v_expired_from := v_cur.expired_from;
  END IF;

  -- A replayed row whose delivery ended (nacked, or its visibility ran out):
  -- see sluice.end_replays (below), whose rule this is.
  WITH pos AS (
    SELECT p.commit_lsn, p.commit_idx FROM sluice.consumer_positions p WHERE p.consumer_id = p_consumer
  ), ended AS (
    SELECT m.commit_lsn, m.commit_idx, (m.commit_lsn, m.commit_idx) > (pos.commit_lsn, pos.commit_idx) AS ahead
    FROM sluice.messages m, pos
    WHERE m.consumer_id = p_consumer AND m.replay AND m.delivery_token IS NOT NULL AND m.visible_at <= v_now
  ), gone AS (
    DELETE FROM sluice.messages m USING ended e
    WHERE e.ahead AND m.consumer_id = p_consumer AND m.commit_lsn = e.commit_lsn AND m.commit_idx = e.commit_idx
    RETURNING 1
  ), back AS (
    UPDATE sluice.messages m SET delivery_token = NULL, visible_at = '-infinity', deliver_count = 0, replay = false
    FROM ended e
    WHERE NOT e.ahead AND m.consumer_id = p_consumer AND m.commit_lsn = e.commit_lsn AND m.commit_idx = e.commit_idx
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM back) INTO v_n;
  IF v_n > 0 THEN
    v_fresh := false;
    v_from_lsn := -9223372036854775808;
    v_from_idx := -2147483648;
    v_expired_from := '-infinity';
  END IF;

  IF p_max_deliver IS NOT NULL THEN
    UPDATE sluice.messages m SET state = 1, delivery_token = NULL
    WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL
      AND m.visible_at >= v_expired_from AND m.visible_at <= v_now
      AND m.state = 0 AND m.deliver_count >= p_max_deliver;
  END IF;

  IF p_max_ack_pending IS NOT NULL THEN
    v_bound := CASE WHEN v_fresh THEN v_cur.in_flight_bound END;
    IF v_bound IS NULL OR v_bound + p_limit > p_max_ack_pending THEN
      SELECT count(*) INTO v_bound FROM sluice.messages m
      WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL AND m.visible_at > v_now;
    END IF;
    v_room := LEAST(p_limit, p_max_ack_pending - v_bound);
  END IF;

  IF v_room > 0 THEN
    v_window := LEAST(4 * v_room + 100, 5000);
    -- 1. The windows.
    SELECT coalesce(array_agg(p.commit_lsn), '{}'), coalesce(array_agg(p.commit_idx), '{}') INTO v_lsns, v_idxs
    FROM (
      SELECT c.commit_lsn, c.commit_idx FROM (
        (SELECT w.commit_lsn, w.commit_idx FROM (
           SELECT m.commit_lsn, m.commit_idx, m.group_key, m.visible_at FROM sluice.messages m
           WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND m.batch_id IS NULL
             AND (m.commit_lsn, m.commit_idx) >= (v_from_lsn, v_from_idx)
           ORDER BY m.commit_lsn, m.commit_idx LIMIT v_window) w
         WHERE w.visible_at <= v_now
           AND (w.group_key IS NULL OR ((
             SELECT e.state FROM sluice.messages e
             WHERE e.consumer_id = p_consumer AND e.group_key = w.group_key
               AND (e.commit_lsn, e.commit_idx) < (w.commit_lsn, w.commit_idx)
               AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1))
             ORDER BY e.commit_lsn DESC, e.commit_idx DESC LIMIT 1) IS NULL
             AND NOT EXISTS (SELECT 1 FROM sluice.messages r
                             WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key = w.group_key)))
         ORDER BY w.commit_lsn, w.commit_idx LIMIT v_room)
        UNION ALL
        (SELECT x.commit_lsn, x.commit_idx FROM (
           SELECT m.commit_lsn, m.commit_idx, m.group_key FROM sluice.messages m
           WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL
             AND m.visible_at >= v_expired_from AND m.visible_at <= v_now AND m.state = 0
           ORDER BY m.visible_at LIMIT v_window) x
         WHERE x.group_key IS NULL OR (
           SELECT e.state FROM sluice.messages e
           WHERE e.consumer_id = p_consumer AND e.group_key = x.group_key
             AND (e.commit_lsn, e.commit_idx) < (x.commit_lsn, x.commit_idx)
             AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1))
           ORDER BY e.commit_lsn DESC, e.commit_idx DESC LIMIT 1) IS NULL
         ORDER BY x.commit_lsn, x.commit_idx LIMIT v_room)
      ) c
      ORDER BY c.commit_lsn, c.commit_idx LIMIT v_room
    ) p;
    IF cardinality(v_lsns) > 0 THEN
      RETURN QUERY SELECT * FROM sluice.stamp_deliveries(p_consumer, v_route.source_no, v_lsns, v_idxs, v_now, p_visibility_ms);
      GET DIAGNOSTICS v_claimed = ROW_COUNT;
    END IF;

    SELECT x.commit_lsn, x.commit_idx, x.pref = 0 INTO v_next_lsn, v_next_idx, v_undelivered_left FROM (
      (SELECT m.commit_lsn, m.commit_idx, 0 AS pref FROM sluice.messages m
       WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND m.batch_id IS NULL
         AND (m.commit_lsn, m.commit_idx) >= (v_from_lsn, v_from_idx)
       ORDER BY m.commit_lsn, m.commit_idx LIMIT 1)
      UNION ALL
      (SELECT m.commit_lsn, m.commit_idx, 1 FROM sluice.messages m
       WHERE m.consumer_id = p_consumer ORDER BY m.commit_lsn DESC, m.commit_idx DESC LIMIT 1)
    ) x ORDER BY x.pref LIMIT 1;

    -- 2. The sweep over groups, in group_key order.
    v_next_group := v_cur.group_key;
    IF v_claimed < v_room AND v_undelivered_left THEN
      WITH RECURSIVE g(group_key, n) AS (
        SELECT (SELECT m.group_key FROM sluice.messages m
                WHERE m.consumer_id = p_consumer AND m.group_key IS NOT NULL
                  AND (v_cur.group_key IS NULL OR m.group_key > v_cur.group_key)
                ORDER BY m.group_key LIMIT 1), 1
        UNION ALL
        SELECT (SELECT m.group_key FROM sluice.messages m
                WHERE m.consumer_id = p_consumer AND m.group_key > g.group_key
                ORDER BY m.group_key LIMIT 1), g.n + 1
        FROM g WHERE g.group_key IS NOT NULL AND g.n < c_sweep
      )
      SELECT array_agg(g.group_key ORDER BY g.n), count(*) INTO v_groups, v_n FROM g WHERE g.group_key IS NOT NULL;
      v_next_group := CASE WHEN v_n >= c_sweep THEN v_groups[v_n] END;
      SELECT coalesce(array_agg(h.commit_lsn), '{}'), coalesce(array_agg(h.commit_idx), '{}') INTO v_lsns, v_idxs
      FROM (
        SELECT hd.commit_lsn, hd.commit_idx FROM unnest(v_groups) AS g(group_key)
        CROSS JOIN LATERAL (
          SELECT m.commit_lsn, m.commit_idx, m.state, m.visible_at FROM sluice.messages m
          WHERE m.consumer_id = p_consumer AND m.group_key = g.group_key
            AND (m.state = 0 OR (p_dead_blocks_group AND m.state = 1))
          ORDER BY m.commit_lsn, m.commit_idx LIMIT 1) hd
        WHERE hd.state = 0 AND hd.visible_at <= v_now
          AND NOT EXISTS (SELECT 1 FROM sluice.messages r
                          WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key = g.group_key)
        ORDER BY hd.commit_lsn, hd.commit_idx LIMIT v_room - v_claimed
      ) h;
      IF cardinality(v_lsns) > 0 THEN
        RETURN QUERY SELECT * FROM sluice.stamp_deliveries(p_consumer, v_route.source_no, v_lsns, v_idxs, v_now, p_visibility_ms);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_claimed := v_claimed + v_n;
      END IF;
    END IF;

    -- 3. Admission: still room, so take in rows from the log; those that head
    -- their group are handed out as they are inserted (sluice.admit). First
    -- as many as the room left. When that leaves room (the walk's rows are of
    -- groups out or waiting), it looks ahead: the never-delivered rows are
    -- topped up to c_ahead, so that a group holding up a long run of rows
    -- does not hide the heads of other groups behind it from the sweep (the
    -- old buffer had every captured row in this table). Past that, a claim
    -- takes in only what it has room for, so a claim stays cheap however long
    -- a blocked backlog is.
    FOR v_pass IN 1..2 LOOP
      EXIT WHEN v_claimed >= v_room;
      IF v_pass = 1 THEN
        v_n := v_room - v_claimed;
      ELSE
        -- Nothing left in the log past the position: no look-ahead to take.
        EXIT WHEN NOT EXISTS (
          SELECT 1 FROM sluice.log l, sluice.consumer_positions p
          WHERE p.consumer_id = p_consumer AND l.source_no = v_route.source_no
            AND (l.commit_lsn, l.commit_idx) > (p.commit_lsn, p.commit_idx));
        SELECT count(*) INTO v_n FROM (
          SELECT 1 FROM sluice.messages m
          WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND m.batch_id IS NULL
          LIMIT c_ahead) x;
        v_n := c_ahead - v_n;
        EXIT WHEN v_n <= 0;
      END IF;
      FOR v_row IN
        SELECT a.commit_lsn, a.commit_idx, a.group_key, a.delivery_token, a.payload
        FROM sluice.admit(p_consumer, v_route.source_no, v_route.tables, v_route.group_by, v_n,
                          v_room - v_claimed, v_now, p_visibility_ms, p_dead_blocks_group) a
      LOOP
        IF v_row.delivery_token IS NULL THEN
          -- A row admitted and left waiting is a never-delivered row: the
          -- cursor must not start after it (after a rewind it may lie below
          -- rows already here).
          IF v_next_lsn IS NULL OR (v_row.commit_lsn, v_row.commit_idx) < (v_next_lsn, v_next_idx) THEN
            v_next_lsn := v_row.commit_lsn;
            v_next_idx := v_row.commit_idx;
          END IF;
        ELSE
          commit_lsn := v_row.commit_lsn;
          commit_idx := v_row.commit_idx;
          delivery_token := v_row.delivery_token;
          deliver_count := 1;
          group_key := v_row.group_key;
          payload := v_row.payload;
          retry_at := NULL;
          RETURN NEXT;
          v_claimed := v_claimed + 1;
        END IF;
      END LOOP;
    END LOOP;
  END IF;

  SELECT m.visible_at INTO v_next_expired FROM sluice.messages m
  WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL
    AND m.visible_at >= LEAST(v_expired_from, v_now + p_visibility_ms * interval '1 millisecond')
  ORDER BY m.visible_at LIMIT 1;

  IF v_next_lsn IS NULL THEN
    v_next_lsn := v_cur.commit_lsn;
    v_next_idx := v_cur.commit_idx;
    v_next_group := v_cur.group_key;
  END IF;
  IF v_next_lsn IS NOT NULL THEN
    INSERT INTO sluice.claim_cursors AS c
      (consumer_id, commit_lsn, commit_idx, expired_from, in_flight_bound, group_key, rescan_at)
    VALUES (p_consumer, v_next_lsn, v_next_idx, coalesce(v_next_expired, 'infinity'), v_bound + v_claimed,
            v_next_group,
            CASE WHEN v_fresh OR v_room <= 0 THEN coalesce(v_cur.rescan_at, v_now) ELSE v_now + interval '10 seconds' END)
    ON CONFLICT (consumer_id) DO UPDATE
      SET commit_lsn = EXCLUDED.commit_lsn, commit_idx = EXCLUDED.commit_idx,
          expired_from = EXCLUDED.expired_from, in_flight_bound = EXCLUDED.in_flight_bound,
          group_key = EXCLUDED.group_key, rescan_at = EXCLUDED.rescan_at;
  END IF;

  IF v_claimed = 0 THEN
    RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::integer, NULL::integer, NULL::text, NULL::text,
      CASE WHEN v_next_expired > v_now THEN v_next_expired END;
  END IF;
END $$;

