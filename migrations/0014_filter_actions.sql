-- A consumer's filter by kind of change (config: filter.actions): admission
-- steps over the changes it does not select, so they cost the consumer no
-- delivery state and never hold up their group. consumer_route gains the
-- actions (NULL: all); admit and rewind_consumer's count use them.
DROP FUNCTION sluice.consumer_route(uuid);
CREATE FUNCTION sluice.consumer_route(p_consumer uuid,
  OUT source_no integer, OUT tables text[], OUT group_by jsonb, OUT active boolean, OUT actions text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT s.log_no,
         ARRAY(SELECT jsonb_array_elements_text(c.config -> 'tables')),
         CASE WHEN c.config -> 'group_by' IS NULL OR c.config -> 'group_by' IN ('true'::jsonb, 'null'::jsonb)
              THEN NULL ELSE c.config -> 'group_by' END,
         c.state = 'active',
         CASE WHEN jsonb_typeof(c.config -> 'filter' -> 'actions') = 'array'
              THEN ARRAY(SELECT jsonb_array_elements_text(c.config -> 'filter' -> 'actions')) END
  INTO source_no, tables, group_by, active, actions
  FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name
  WHERE c.id = p_consumer;
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
  SELECT r.actions INTO v_actions FROM sluice.consumer_route(p_consumer) r;
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
      AND (v_actions IS NULL OR l.action = ANY (v_actions))
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

-- (0010's, counting only the changes the consumer's filter selects.)
CREATE OR REPLACE FUNCTION sluice.rewind_consumer(p_consumer uuid, p_lsn bigint, p_idx integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_route record;
  v_count bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  SELECT * INTO v_route FROM sluice.consumer_route(p_consumer);
  IF v_route.source_no IS NULL THEN
    RETURN NULL;
  END IF;
  UPDATE sluice.messages m SET replay = true
  WHERE m.consumer_id = p_consumer AND m.state = 0 AND NOT m.replay AND m.delivery_token IS NOT NULL
    AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  UPDATE sluice.messages m SET replay = true
  FROM (SELECT k.lsn, k.idx FROM sluice.webhook_batches b, unnest(b.lsns, b.idxs) AS k(lsn, idx)
        WHERE b.consumer_id = p_consumer) k
  WHERE m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx AND m.state = 0 AND NOT m.replay
    AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  -- Rows waiting at or after the point (taken in ahead, never delivered, in no
  -- batch) go: admission takes them in again in commit order, after the
  -- rewound changes of their group before them. Kept, one would head its
  -- group now and overtake those.
  DELETE FROM sluice.messages m
  WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND NOT m.replay
    AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  -- Dead letters at or after the point go too: delivered again like the rest.
  DELETE FROM sluice.messages m
  WHERE m.consumer_id = p_consumer AND m.state = 1 AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  -- The position is the last key taken in; just before the point is
  -- (p_lsn, p_idx - 1) (idx -1 precedes every change of a commit).
  UPDATE sluice.consumer_positions p SET commit_lsn = p_lsn, commit_idx = p_idx - 1, updated_at = now()
  WHERE p.consumer_id = p_consumer AND (p.commit_lsn, p.commit_idx) >= (p_lsn, p_idx);
  DELETE FROM sluice.claim_cursors c WHERE c.consumer_id = p_consumer;
  SELECT count(*) INTO v_count FROM sluice.log l
  WHERE l.source_no = v_route.source_no AND (l.commit_lsn, l.commit_idx) >= (p_lsn, p_idx)
    AND (l.schema_name || '.' || l.table_name) = ANY (v_route.tables)
    AND (v_route.actions IS NULL OR l.action = ANY (v_route.actions));
  PERFORM pg_notify('sluice_messages', p_consumer::text);
  RETURN v_count;
END $$;

