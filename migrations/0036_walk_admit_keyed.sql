-- A where-filtered consumer's admission takes in the walked changes without
-- reading them from the log again.
--
-- The walk (src/pipeline/filter/walk.ts) reads each change past the
-- consumer's position, payload and all, and the gateway tests it against
-- the filter; admission then took in the keys that passed by looking each
-- one up in the log (an index probe per key, through the partitioned log's
-- run-time pruning: 1.2–1.5 ms for a claim of 300 keys, against ~0.7 ms to
-- read the same 300 rows as a range). A filtered pull claim was ~3 ms slower
-- than an unfiltered one, and claims of a consumer run one at a time.
--
-- The walk now also returns each change's default group key and commit time
-- (walk_log_rows), the gateway hands them back with the keys (the claims'
-- overloads with p_groups and p_times, through set_walked_rows), and
-- admission takes the rows in from those arrays. A consumer with its own
-- group_by still has its rows read from the log (its group keys come from
-- the payload). The walked keys are the log's own rows above the consumer's
-- position, which retention never drops, and admission still takes only
-- those between the position and the walk's end, once (the walk_from check,
-- unchanged). Claims through the old signatures (a gateway not yet
-- upgraded) probe the log as before.

CREATE FUNCTION sluice.walk_log_rows(p_consumer uuid, p_after_lsn bigint, p_after_idx integer, p_limit integer,
  p_check_ahead boolean)
RETURNS TABLE (from_lsn bigint, from_idx integer, commit_lsn bigint, commit_idx integer, table_name text, payload text,
              group_key text, committed_at timestamptz)
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
              THEN l.payload END,
         l.group_key, l.committed_at
  FROM (SELECT l.commit_lsn, l.commit_idx, l.schema_name, l.table_name, l.action, l.payload, l.for_consumer,
               l.group_key, l.committed_at
        FROM sluice.log l
        WHERE l.source_no = v_route.source_no
          AND (l.commit_lsn, l.commit_idx) > (coalesce(p_after_lsn, v_lsn), coalesce(p_after_idx, v_idx))
          AND l.commit_lsn < sluice.admission_horizon(p_consumer)
        ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  CROSS JOIN LATERAL (SELECT l.schema_name || '.' || l.table_name AS qualified) w
  ORDER BY l.commit_lsn, l.commit_idx;
END $$;

-- The old walk, for a gateway not yet upgraded: the same rows, one body to keep.
CREATE OR REPLACE FUNCTION sluice.walk_log(p_consumer uuid, p_after_lsn bigint, p_after_idx integer, p_limit integer,
  p_check_ahead boolean)
RETURNS TABLE (from_lsn bigint, from_idx integer, commit_lsn bigint, commit_idx integer, table_name text, payload text)
LANGUAGE sql STABLE AS $$
  SELECT w.from_lsn, w.from_idx, w.commit_lsn, w.commit_idx, w.table_name, w.payload
  FROM sluice.walk_log_rows(p_consumer, p_after_lsn, p_after_idx, p_limit, p_check_ahead) w
$$;

-- The walk's group keys and commit times, for admission in this transaction
-- (see above). The times come as the walk printed them and go into the
-- setting as they are: admission parses them once.
CREATE FUNCTION sluice.set_walked_rows(p_groups text[], p_times text[])
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM set_config('sluice.walk_groups', coalesce(p_groups, '{}')::text, true);
  PERFORM set_config('sluice.walk_times', coalesce(p_times, '{}')::text, true);
END $$;

CREATE FUNCTION sluice.claim_messages_walked(
  p_consumer uuid, p_limit integer, p_visibility_ms integer, p_max_ack_pending integer, p_max_deliver integer,
  p_dead_blocks_group boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[],
  p_groups text[], p_times text[])
RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
               deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM sluice.set_walked_rows(p_groups, p_times);
  RETURN QUERY SELECT * FROM sluice.claim_messages_walked(p_consumer, p_limit, p_visibility_ms, p_max_ack_pending,
    p_max_deliver, p_dead_blocks_group, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
END $$;

CREATE FUNCTION sluice.claim_messages_walked_reporting(
  p_consumer uuid, p_limit integer, p_visibility_ms integer, p_max_ack_pending integer, p_max_deliver integer,
  p_dead_blocks_group boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[],
  p_groups text[], p_times text[])
RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
               deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM sluice.set_walked_rows(p_groups, p_times);
  RETURN QUERY SELECT * FROM sluice.claim_messages_walked_reporting(p_consumer, p_limit, p_visibility_ms, p_max_ack_pending,
    p_max_deliver, p_dead_blocks_group, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
END $$;

CREATE FUNCTION sluice.claim_webhook_batches_walked(
  p_consumer uuid, p_batches integer, p_batch_size integer, p_lease_ms integer, p_dead_blocks_group boolean,
  p_fresh boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[],
  p_groups text[], p_times text[])
RETURNS TABLE (batch_id uuid, attempt integer, first_attempt_at timestamptz, delivery_token integer,
               commit_lsn bigint, commit_idx integer, group_key text, payload text, next_due_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM sluice.set_walked_rows(p_groups, p_times);
  RETURN QUERY SELECT * FROM sluice.claim_webhook_batches_walked(p_consumer, p_batches, p_batch_size, p_lease_ms,
    p_dead_blocks_group, p_fresh, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
END $$;

-- admit (0034), with the walked rows taken from the arrays when they are given.
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
  v_keyed boolean := false;
  v_kgroups text[] := '{}';
  v_ktimes timestamptz[] := '{}';
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
    -- The walk's group keys and commit times (set_walked_rows), for a
    -- consumer grouped by the default key: the rows need no read of the log.
    IF p_group_by IS NULL AND coalesce(current_setting('sluice.walk_groups', true), '') <> '' THEN
      v_kgroups := current_setting('sluice.walk_groups')::text[];
      v_ktimes := current_setting('sluice.walk_times')::timestamptz[];
      v_keyed := cardinality(v_kgroups) = cardinality(v_klsns) AND cardinality(v_ktimes) = cardinality(v_klsns);
    END IF;
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
                WHERE v_filtered AND NOT v_keyed
                UNION ALL
                SELECT k.lsn, k.idx, k.at, NULL::text, NULL::text, NULL::text, k.grp
                FROM unnest(v_klsns, v_kidxs, v_kgroups, v_ktimes) AS k(lsn, idx, grp, at)
                WHERE v_keyed AND (k.lsn, k.idx) > (v_lsn, v_idx) AND (k.lsn, k.idx) <= (v_last_lsn, v_last_idx)
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
            WHERE v_filtered AND NOT v_keyed
            UNION ALL
            SELECT k.lsn, k.idx, k.at, NULL::text, NULL::text, NULL::text, k.grp
            FROM unnest(v_klsns, v_kidxs, v_kgroups, v_ktimes) AS k(lsn, idx, grp, at)
            WHERE v_keyed AND (k.lsn, k.idx) > (v_lsn, v_idx) AND (k.lsn, k.idx) <= (v_last_lsn, v_last_idx)
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
