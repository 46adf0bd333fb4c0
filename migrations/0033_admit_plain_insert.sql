-- Admission inserts without ON CONFLICT.
--
-- Both INSERTs of sluice.admit (0032) ended in ON CONFLICT DO NOTHING, as
-- belt and braces: the rows a rewind or a replay left past the position are
-- already left out by the v_rewound test, and every writer of a consumer's
-- rows past its position (admission, a replay's steps) holds the consumer's
-- advisory lock, taken before the position is read. ON CONFLICT makes each
-- row a speculative insertion: a probe of the primary key before the insert
-- and a second WAL record to confirm it. Measured on a copy of
-- sluice.messages, 200,000 rows: 1.57-1.71 s and 497 bytes of WAL a row
-- with it, 1.20-1.43 s and 449 bytes without. A conflict now fails the claim
-- (a bug to see) instead of being passed over in silence.
--
-- Otherwise unchanged from 0032.

CREATE OR REPLACE FUNCTION sluice.admit(p_consumer uuid, p_source integer, p_tables text[], p_group_by jsonb, p_limit integer,
  p_stamp integer DEFAULT 0, p_now timestamptz DEFAULT NULL, p_visibility_ms integer DEFAULT NULL,
  p_dead_blocks_group boolean DEFAULT false)
RETURNS TABLE (commit_lsn bigint, commit_idx integer, group_key text, delivery_token integer, payload text)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
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
  v_rewound boolean;
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
         delivery_token, deliver_count, visible_at, last_delivered_at)
      SELECT p_consumer, w.commit_lsn, w.commit_idx, w.group_key, w.committed_at, NULL, 0, '-infinity', NULL
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
                            WHERE e.consumer_id = p_consumer AND e.group_key = g.group_key
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
END $$;
