-- A webhook consumer's rows leave the group index.
--
-- messages_group_idx (consumer_id, group_key, commit_lsn, commit_idx) answers
-- the pull claim's "is an earlier message of this group still pending?" and
-- its sweep over groups. A webhook claim never asks it: the groups it holds
-- back are those of its batches out (sluice.webhook_batches), of rows marked
-- for replay (messages_replay_idx) and of dead letters (messages_dead_idx).
-- Yet every row a webhook claim admitted made an entry there, and unlike the
-- other indexes' entries, which go in at the right-hand end (commit order),
-- these land all over the index (one place per group): on a copy of
-- sluice.messages, 200,000 rows over 10,000 groups, 1.56-1.60 s and 517
-- bytes of WAL a row with the index, 0.92-0.96 s and 349 bytes without.
-- Admission was the largest part of a webhook claim, and the claim is what
-- a webhook drain waits on.
--
-- Rows now say whether they are a webhook consumer's (pushed, set by
-- admission), and the index holds only the others. A consumer keeps its kind
-- (config refuses a change), so a pull consumer's rows are never pushed and
-- the pull claim's probes, which now name NOT pushed to reach the index,
-- find what they found before. Rows written before this migration, and rows
-- a replay puts back, keep pushed = false: they stay in the index, which
-- costs an entry and changes no answer.

ALTER TABLE sluice.messages ADD COLUMN pushed boolean NOT NULL DEFAULT false;

CREATE INDEX messages_pull_group_idx ON sluice.messages (consumer_id, group_key, commit_lsn, commit_idx)
  WHERE group_key IS NOT NULL AND NOT pushed;
DROP INDEX sluice.messages_group_idx;

-- Admission marks a webhook consumer's rows; the stamped path is the pull
-- claim's only, and its probe of a group names NOT pushed. Otherwise
-- unchanged from 0033.
CREATE OR REPLACE FUNCTION sluice.admit(p_consumer uuid, p_source integer, p_tables text[], p_group_by jsonb, p_limit integer, p_stamp integer DEFAULT 0, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_visibility_ms integer DEFAULT NULL::integer, p_dead_blocks_group boolean DEFAULT false)
 RETURNS TABLE(commit_lsn bigint, commit_idx integer, group_key text, delivery_token integer, payload text)
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
 SET enable_bitmapscan TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
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
  v_rewound boolean;
  v_pushed boolean;
BEGIN
  SELECT p.commit_lsn, p.commit_idx INTO v_lsn, v_idx FROM sluice.consumer_positions p WHERE p.consumer_id = p_consumer;
  IF NOT FOUND OR p_limit <= 0 THEN
    RETURN;
  END IF;
  SELECT r.actions, r.filtered INTO v_actions, v_filtered FROM sluice.consumer_route(p_consumer) r;
  v_pushed := EXISTS (SELECT 1 FROM sluice.consumers c WHERE c.id = p_consumer AND c.kind = 'webhook');
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
  -- Rows of the consumer already past its position: only after a rewind
  -- moved it back over rows still here. Then each row is checked; else none.
  v_rewound := EXISTS (SELECT 1 FROM sluice.messages m
                       WHERE m.consumer_id = p_consumer AND (m.commit_lsn, m.commit_idx) > (v_lsn, v_idx));
  -- Nothing to stamp (a webhook claim's admission, admit_walked, a pull
  -- claim at max_ack_pending): no row heads anything, so the rows go in as
  -- the log gives them, without the windows that find heads and the sorts
  -- they need (a webhook drain's admissions of ~4,400 rows: 10.7 ms of
  -- stamping before a 30 ms insert).
  IF p_stamp <= 0 THEN
    RETURN QUERY
    WITH ins AS (
      INSERT INTO sluice.messages AS m
        (consumer_id, commit_lsn, commit_idx, group_key, created_at,
         delivery_token, deliver_count, visible_at, last_delivered_at, pushed)
      SELECT p_consumer, w.commit_lsn, w.commit_idx, w.group_key, w.committed_at, NULL, 0, '-infinity', NULL, v_pushed
      FROM (
              SELECT l.commit_lsn, l.commit_idx, l.committed_at, l.payload,
                CASE WHEN p_group_by IS NULL THEN l.group_key
                     WHEN jsonb_typeof(p_group_by) <> 'object' THEN NULL
                     WHEN p_group_by ? (l.schema_name || '.' || l.table_name) THEN
                       sluice.custom_group_key(l.schema_name || '.' || l.table_name, l.payload,
                                               p_group_by -> (l.schema_name || '.' || l.table_name), l.group_key)
                     ELSE l.group_key END AS group_key
              FROM (
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
              ) l
              -- After a rewind: a row still here (in flight, in a batch, waiting
              -- or dead) is delivered again through it, not taken in twice.
              WHERE NOT v_rewound OR NOT EXISTS (SELECT 1 FROM sluice.messages m
                                                 WHERE m.consumer_id = p_consumer AND m.commit_lsn = l.commit_lsn AND m.commit_idx = l.commit_idx)
      ) w
      ORDER BY w.commit_lsn, w.commit_idx
      RETURNING m.commit_lsn, m.commit_idx, m.group_key
    )
    SELECT i.commit_lsn, i.commit_idx, i.group_key, NULL::integer, NULL::text FROM ins i
    ORDER BY i.commit_lsn, i.commit_idx;
  ELSE
  RETURN QUERY
  WITH stamped AS MATERIALIZED (
    SELECT h.commit_lsn, h.commit_idx, h.committed_at, h.payload, h.group_key,
      CASE WHEN h.head AND count(*) FILTER (WHERE h.head) OVER (ORDER BY h.commit_lsn, h.commit_idx ROWS UNBOUNDED PRECEDING) <= p_stamp
           THEN (floor(random() * 4294967296) - 2147483648)::integer END AS token
    FROM (
      SELECT g.*,
        p_stamp > 0 AND (g.group_key IS NULL OR (g.nth = 1
          AND NOT coalesce((SELECT true FROM sluice.messages e
                            WHERE e.consumer_id = p_consumer AND e.group_key = g.group_key AND NOT e.pushed
                              AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1)) LIMIT 1), false)
          AND NOT coalesce((SELECT true FROM sluice.messages r
                            WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key = g.group_key LIMIT 1), false))) AS head
      FROM (
        SELECT w.*, row_number() OVER (PARTITION BY w.group_key COLLATE "C" ORDER BY w.commit_lsn, w.commit_idx) AS nth
        FROM (
          SELECT l.commit_lsn, l.commit_idx, l.committed_at, l.payload,
            CASE WHEN p_group_by IS NULL THEN l.group_key
                 WHEN jsonb_typeof(p_group_by) <> 'object' THEN NULL
                 WHEN p_group_by ? (l.schema_name || '.' || l.table_name) THEN
                   sluice.custom_group_key(l.schema_name || '.' || l.table_name, l.payload,
                                           p_group_by -> (l.schema_name || '.' || l.table_name), l.group_key)
                 ELSE l.group_key END AS group_key
          FROM (
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
          ) l
          -- After a rewind: a row still here (in flight, in a batch, waiting
          -- or dead) is delivered again through it, not taken in twice.
          WHERE NOT v_rewound OR NOT EXISTS (SELECT 1 FROM sluice.messages m
                                             WHERE m.consumer_id = p_consumer AND m.commit_lsn = l.commit_lsn AND m.commit_idx = l.commit_idx)
        ) w
      ) g
      -- Not pulled up into the window above, which names head twice: its
      -- probes run once a row.
      OFFSET 0
    ) h
  ), ins AS (
    INSERT INTO sluice.messages AS m
      (consumer_id, commit_lsn, commit_idx, group_key, created_at,
       delivery_token, deliver_count, visible_at, last_delivered_at)
    SELECT p_consumer, s.commit_lsn, s.commit_idx, s.group_key, s.committed_at,
      s.token,
      CASE WHEN s.token IS NOT NULL THEN 1 ELSE 0 END,
      CASE WHEN s.token IS NOT NULL THEN p_now + p_visibility_ms * interval '1 millisecond' ELSE '-infinity' END,
      CASE WHEN s.token IS NOT NULL THEN p_now END
    FROM stamped s
    ORDER BY s.commit_lsn, s.commit_idx
  )
  -- A filtered consumer's rows here are its walk's, whose payloads the
  -- gateway holds: they are not sent back (claim_messages_walked below).
  SELECT s.commit_lsn, s.commit_idx, s.group_key, s.token, CASE WHEN s.token IS NOT NULL AND NOT v_filtered THEN s.payload END
  FROM stamped s
  ORDER BY s.commit_lsn, s.commit_idx;
  END IF;
  UPDATE sluice.consumer_positions p SET commit_lsn = v_last_lsn, commit_idx = v_last_idx, updated_at = now()
  WHERE p.consumer_id = p_consumer;
END $function$;

-- Each probe by group names NOT pushed; otherwise unchanged from 0013.
CREATE OR REPLACE FUNCTION sluice.claim_messages(p_consumer uuid, p_limit integer, p_visibility_ms integer, p_max_ack_pending integer, p_max_deliver integer, p_dead_blocks_group boolean)
 RETURNS TABLE(commit_lsn bigint, commit_idx integer, delivery_token integer, deliver_count integer, group_key text, payload text, retry_at timestamp with time zone)
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
 SET enable_bitmapscan TO 'off'
AS $function$
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
             WHERE e.consumer_id = p_consumer AND e.group_key = w.group_key AND NOT e.pushed
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
           WHERE e.consumer_id = p_consumer AND e.group_key = x.group_key AND NOT e.pushed
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
                WHERE m.consumer_id = p_consumer AND m.group_key IS NOT NULL AND NOT m.pushed
                  AND (v_cur.group_key IS NULL OR m.group_key > v_cur.group_key)
                ORDER BY m.group_key LIMIT 1), 1
        UNION ALL
        SELECT (SELECT m.group_key FROM sluice.messages m
                WHERE m.consumer_id = p_consumer AND m.group_key > g.group_key AND NOT m.pushed
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
          WHERE m.consumer_id = p_consumer AND m.group_key = g.group_key AND NOT m.pushed
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
END $function$;
