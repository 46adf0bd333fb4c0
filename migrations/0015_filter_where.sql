-- A consumer's `where` filter (config: filter.where, one SQL boolean
-- expression per table). The expressions are evaluated in the gateway, never
-- run as SQL: a claim of a filtered consumer first walks the log past its
-- position (sluice.walk_log), tests the changes in JS, and passes the keys
-- that pass to the claim (sluice.claim_messages_walked and
-- sluice.claim_webhook_batches_walked). Admission then takes in only those
-- keys and moves the position to the end of the walk: a change filtered out
-- costs the consumer no row in sluice.messages and never holds up its group.

-- The columns' types of the filtered tables, read from the source's catalog
-- when the consumer is saved (the filter is checked against them then, and
-- compiled with them in every gateway process, which need not reach the
-- source). {"public.orders": {"status": "text", "amount": "numeric"}}.
ALTER TABLE sluice.consumers ADD COLUMN filter_columns jsonb;

-- consumer_route gains `filtered`: the consumer has a where filter, so plain
-- admission (a claim called without walked keys) takes in nothing.
DROP FUNCTION sluice.consumer_route(uuid);
CREATE FUNCTION sluice.consumer_route(p_consumer uuid,
  OUT source_no integer, OUT tables text[], OUT group_by jsonb, OUT active boolean, OUT actions text[],
  OUT filtered boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT s.log_no,
         ARRAY(SELECT jsonb_array_elements_text(c.config -> 'tables')),
         CASE WHEN c.config -> 'group_by' IS NULL OR c.config -> 'group_by' IN ('true'::jsonb, 'null'::jsonb)
              THEN NULL ELSE c.config -> 'group_by' END,
         c.state = 'active',
         CASE WHEN jsonb_typeof(c.config -> 'filter' -> 'actions') = 'array'
              THEN ARRAY(SELECT jsonb_array_elements_text(c.config -> 'filter' -> 'actions')) END,
         coalesce(jsonb_typeof(c.config -> 'filter' -> 'where') = 'object'
                  AND c.config -> 'filter' -> 'where' <> '{}'::jsonb, false)
  INTO source_no, tables, group_by, active, actions, filtered
  FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name
  WHERE c.id = p_consumer;
END $$;

-- The next p_limit changes of the consumer's source after (p_after_lsn,
-- p_after_idx), or after its position when that is NULL: every change's key
-- (the walk's end is the last one), and the payload of those of its tables
-- and actions (the ones its where filter tests). from_lsn/from_idx is the
-- position: admission takes the walked keys only if the position is still
-- there (another process may have admitted meanwhile). Like the claims'
-- look-ahead, a walk from the position finds nothing while c_ahead rows wait
-- never delivered: what is taken in ahead stays bounded.
CREATE FUNCTION sluice.walk_log(p_consumer uuid, p_after_lsn bigint, p_after_idx integer, p_limit integer)
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
  IF p_after_lsn IS NULL THEN
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
              THEN l.payload END
  FROM (SELECT l.commit_lsn, l.commit_idx, l.schema_name, l.table_name, l.action, l.payload FROM sluice.log l
        WHERE l.source_no = v_route.source_no
          AND (l.commit_lsn, l.commit_idx) > (coalesce(p_after_lsn, v_lsn), coalesce(p_after_idx, v_idx))
        ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  CROSS JOIN LATERAL (SELECT l.schema_name || '.' || l.table_name AS qualified) w
  ORDER BY l.commit_lsn, l.commit_idx;
END $$;

-- The keys a walk selected, for the admission inside the claim that follows
-- in the same statement (sluice.admit reads them, once, for this consumer).
-- Transaction-local settings: the claim functions stay as they are.
CREATE FUNCTION sluice.set_walked(p_consumer uuid, p_from_lsn bigint, p_from_idx integer,
  p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[])
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM set_config('sluice.walk_from', p_consumer::text || '/' || p_from_lsn || '/' || p_from_idx, true);
  PERFORM set_config('sluice.walk_to', p_to_lsn || '/' || p_to_idx, true);
  PERFORM set_config('sluice.walk_lsns', coalesce(p_lsns, '{}')::text, true);
  PERFORM set_config('sluice.walk_idxs', coalesce(p_idxs, '{}')::text, true);
END $$;

-- After the claim: walked keys its admission did not take (it had no room,
-- or formed no new batch) are taken in now, waiting, so that the walk is
-- not done again by the next claim. walk_log's look-ahead bound keeps what
-- waits this way bounded. Then the keys are forgotten.
CREATE FUNCTION sluice.admit_walked(p_consumer uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_route record;
BEGIN
  IF coalesce(current_setting('sluice.walk_from', true), '') <> '' THEN
    SELECT * INTO v_route FROM sluice.consumer_route(p_consumer);
    IF v_route.source_no IS NOT NULL THEN
      PERFORM 1 FROM sluice.admit(p_consumer, v_route.source_no, v_route.tables, v_route.group_by, 1);
    END IF;
  END IF;
  PERFORM set_config('sluice.walk_from', '', true);
END $$;

CREATE FUNCTION sluice.claim_messages_walked(
  p_consumer uuid, p_limit integer, p_visibility_ms integer, p_max_ack_pending integer, p_max_deliver integer,
  p_dead_blocks_group boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[])
RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
               deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM sluice.set_walked(p_consumer, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
  RETURN QUERY SELECT * FROM sluice.claim_messages(p_consumer, p_limit, p_visibility_ms, p_max_ack_pending,
                                                   p_max_deliver, p_dead_blocks_group);
  PERFORM sluice.admit_walked(p_consumer);
END $$;

CREATE FUNCTION sluice.claim_webhook_batches_walked(
  p_consumer uuid, p_batches integer, p_batch_size integer, p_lease_ms integer, p_dead_blocks_group boolean,
  p_fresh boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[])
RETURNS TABLE (batch_id uuid, attempt integer, first_attempt_at timestamptz, delivery_token integer,
               commit_lsn bigint, commit_idx integer, group_key text, payload text, next_due_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM sluice.set_walked(p_consumer, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
  RETURN QUERY SELECT * FROM sluice.claim_webhook_batches(p_consumer, p_batches, p_batch_size, p_lease_ms,
                                                          p_dead_blocks_group, p_fresh);
  PERFORM sluice.admit_walked(p_consumer);
END $$;

-- 0014's admit, with walked keys for a filtered consumer: it takes in exactly
-- those keys and moves the position to the walk's end, once, and only when
-- the position is where the walk started. Without them (or stale), a filtered
-- consumer takes in nothing.
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
