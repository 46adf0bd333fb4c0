-- Replay by query: the retained changes of a consumer's tables in a range
-- that match a query (tables, actions, where) are delivered to it again. A
-- replay walks its range in the gateway (the where is tested in JS, as a
-- consumer's filter is), a chunk before each claim of the consumer, and
-- takes the matching changes in as waiting rows, in commit order.
CREATE TABLE sluice.replays (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  consumer_id    uuid NOT NULL REFERENCES sluice.consumers (id) ON DELETE CASCADE,
  -- The last change walked (starts just before `from`); done at to_lsn/to_idx.
  cursor_lsn     bigint NOT NULL,
  cursor_idx     integer NOT NULL,
  to_lsn         bigint NOT NULL,
  to_idx         integer NOT NULL,
  tables         text[] NOT NULL,
  -- NULL: every action.
  actions        text[],
  -- {"public.orders": "status = 'paid'"}, and the column types it was checked
  -- against (as sluice.consumers.filter_columns); NULL: no where.
  filter_where   jsonb,
  filter_columns jsonb,
  walked         bigint NOT NULL DEFAULT 0,
  matched        bigint NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz
);
CREATE INDEX replays_active ON sluice.replays (consumer_id, created_at) WHERE finished_at IS NULL;

-- The next p_limit changes of the replay's range after its cursor: every
-- change's key, and the payload of those of its tables and actions.
CREATE FUNCTION sluice.walk_replay(p_replay uuid, p_after_lsn bigint, p_after_idx integer, p_limit integer)
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
              THEN l.payload END
  FROM (SELECT l.commit_lsn, l.commit_idx, l.schema_name, l.table_name, l.action, l.payload FROM sluice.log l
        WHERE l.source_no = v_source
          AND (l.commit_lsn, l.commit_idx) > (coalesce(p_after_lsn, v_r.cursor_lsn), coalesce(p_after_idx, v_r.cursor_idx))
          AND (l.commit_lsn, l.commit_idx) <= (v_r.to_lsn, v_r.to_idx)
        ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  CROSS JOIN LATERAL (SELECT l.schema_name || '.' || l.table_name AS qualified) w
  ORDER BY l.commit_lsn, l.commit_idx;
END $$;

-- Takes in the keys a walk of the replay matched (in commit order), under
-- the consumer's claim lock, and moves the replay's cursor; -1 when the
-- cursor is no longer p_cursor (another process went first).
--
-- A key whose group has a delivery in flight stops the replay there: taken
-- in now, the older change would head its group and be handed out beside
-- the one in flight. The next claim after that delivery ends takes it in.
-- A key still held (waiting, or in flight: then the group is busy) is left
-- as it is; a dead letter is given back to delivery. Returns the keys taken.
CREATE FUNCTION sluice.replay_admit(p_replay uuid, p_cursor_lsn bigint, p_cursor_idx integer,
  p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[], p_walked integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
  v_r sluice.replays%ROWTYPE;
  v_route record;
  v_stop bigint;
  v_stop_lsn bigint;
  v_stop_idx integer;
  v_n integer := 0;
  v_taken integer := 0;
  v_walked bigint := p_walked;
BEGIN
  SELECT * INTO v_r FROM sluice.replays r WHERE r.id = p_replay;
  IF NOT FOUND OR v_r.finished_at IS NOT NULL THEN
    RETURN -1;
  END IF;
  PERFORM pg_advisory_xact_lock(736001, hashtext(v_r.consumer_id::text));
  SELECT * INTO v_r FROM sluice.replays r WHERE r.id = p_replay FOR UPDATE;
  IF v_r.finished_at IS NOT NULL OR (v_r.cursor_lsn, v_r.cursor_idx) <> (p_cursor_lsn, p_cursor_idx) THEN
    RETURN -1;
  END IF;
  SELECT * INTO v_route FROM sluice.consumer_route(v_r.consumer_id);
  IF v_route.source_no IS NULL THEN
    RETURN -1;
  END IF;
  WITH keyed AS MATERIALIZED (
    SELECT k.ord, l.commit_lsn, l.commit_idx, l.committed_at,
      CASE WHEN v_route.group_by IS NULL THEN l.group_key
           WHEN jsonb_typeof(v_route.group_by) <> 'object' THEN NULL
           WHEN v_route.group_by ? (l.schema_name || '.' || l.table_name) THEN
             sluice.custom_group_key(l.schema_name || '.' || l.table_name, l.payload,
                                     v_route.group_by -> (l.schema_name || '.' || l.table_name), l.group_key)
           ELSE l.group_key END AS group_key
    FROM unnest(p_lsns, p_idxs) WITH ORDINALITY AS k(lsn, idx, ord)
    CROSS JOIN LATERAL (
      SELECT l.* FROM sluice.log l
      WHERE l.source_no = v_route.source_no AND l.commit_lsn = k.lsn AND l.commit_idx = k.idx OFFSET 0) l
  ), stop AS MATERIALIZED (
    SELECT k.ord, k.commit_lsn, k.commit_idx FROM keyed k
    WHERE k.group_key IS NOT NULL AND EXISTS (
      SELECT 1 FROM sluice.messages m
      WHERE m.consumer_id = v_r.consumer_id AND m.group_key = k.group_key
        AND m.state = 0 AND m.delivery_token IS NOT NULL)
    ORDER BY k.ord LIMIT 1
  ), taken AS MATERIALIZED (
    SELECT k.* FROM keyed k WHERE NOT EXISTS (SELECT 1 FROM stop s WHERE k.ord >= s.ord)
  ), ins AS (
    INSERT INTO sluice.messages AS m (consumer_id, commit_lsn, commit_idx, group_key, created_at, visible_at)
    SELECT v_r.consumer_id, t.commit_lsn, t.commit_idx, t.group_key, t.committed_at, '-infinity'
    FROM taken t ORDER BY t.ord
    ON CONFLICT (consumer_id, commit_lsn, commit_idx) DO UPDATE
      SET state = 0, deliver_count = 0, delivery_token = NULL, visible_at = '-infinity', replay = false
      WHERE m.state = 1
    RETURNING 1
  )
  SELECT s.ord, s.commit_lsn, s.commit_idx, (SELECT count(*) FROM taken), (SELECT count(*) FROM ins)
  INTO v_stop, v_stop_lsn, v_stop_idx, v_taken, v_n
  FROM (SELECT 1) x LEFT JOIN stop s ON true;
  IF v_stop IS NOT NULL THEN
    -- Just before the stopping key ((lsn, idx - 1) precedes it); what was
    -- walked past it is walked again.
    p_to_lsn := v_stop_lsn;
    p_to_idx := v_stop_idx - 1;
    v_walked := NULL;
  END IF;
  UPDATE sluice.replays r
  SET cursor_lsn = p_to_lsn, cursor_idx = p_to_idx, matched = r.matched + v_taken,
      walked = r.walked + coalesce(v_walked, 0),
      finished_at = CASE WHEN (p_to_lsn, p_to_idx) >= (r.to_lsn, r.to_idx) THEN now() END
  WHERE r.id = p_replay;
  IF v_n > 0 THEN
    -- Rows now wait below where the claims' windows start (see rewind_consumer).
    DELETE FROM sluice.claim_cursors c WHERE c.consumer_id = v_r.consumer_id;
    PERFORM pg_notify('sluice_messages', v_r.consumer_id::text);
  END IF;
  RETURN v_taken;
END $$;
