-- Claiming messages for delivery (pull receives now, webhook dispatch later),
-- changing their visibility, and counting long-polling receivers across
-- gateway processes.
--
-- Claims of one consumer are serialised by a transaction-scoped advisory lock
-- (namespace 736001, key hashtext(consumer_id)). That is what makes
-- max_ack_pending exact across processes: the in-flight count a claim reads
-- already includes every earlier claim, which committed before releasing the
-- lock. Two consumers whose ids hash alike merely share a lock.
--
-- The claim is a plpgsql function so that it is one round trip and so that each
-- statement after the lock takes a fresh snapshot (a single SQL statement would
-- take its snapshot before waiting for the lock and miss the previous claim).

CREATE FUNCTION sluice.claim_messages(
  p_consumer uuid,
  p_limit integer,
  p_visibility_ms integer,
  p_max_ack_pending integer,      -- NULL: unlimited
  p_max_deliver integer,          -- NULL: never dead-letter
  p_dead_blocks_group boolean
)
-- One row per claimed message, in commit order. When nothing was claimed, one
-- row whose commit_lsn is NULL and whose retry_at is the earliest moment an
-- in-flight message becomes visible again (NULL if none), so a long-poll knows
-- when a re-check can succeed without a second query.
RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
               deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_now timestamptz;
  v_room integer := p_limit;
  v_in_flight integer;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  -- Time is read after the lock: a claim that queued behind others must not
  -- judge visibility by the moment it started waiting.
  v_now := clock_timestamp();

  -- Messages delivered max_deliver times whose last visibility ran out become
  -- dead letters before anything is picked, so they stop blocking their group
  -- in this very claim. Their token is cleared: a late ack can't delete them.
  IF p_max_deliver IS NOT NULL THEN
    UPDATE sluice.messages m SET state = 1, delivery_token = NULL
    WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL
      AND m.visible_at <= v_now AND m.state = 0 AND m.deliver_count >= p_max_deliver;
  END IF;

  IF p_max_ack_pending IS NOT NULL THEN
    SELECT count(*) INTO v_in_flight FROM sluice.messages m
    WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL AND m.visible_at > v_now;
    v_room := LEAST(p_limit, p_max_ack_pending - v_in_flight);
  END IF;

  IF v_room > 0 THEN
    -- A row is deliverable when it is visible and is the head of its group: no
    -- earlier row of the group is still pending (in flight or not), nor dead
    -- when dead letters block. Checking against the snapshot also limits a
    -- claim to one message per group, so a client can never ack a group's
    -- messages out of order.
    RETURN QUERY
    WITH picked AS (
      SELECT m.commit_lsn, m.commit_idx FROM sluice.messages m
      WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.visible_at <= v_now
        AND (m.group_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM sluice.messages e
          WHERE e.consumer_id = p_consumer AND e.group_key = m.group_key
            AND (e.commit_lsn, e.commit_idx) < (m.commit_lsn, m.commit_idx)
            AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1))))
      ORDER BY m.commit_lsn, m.commit_idx
      LIMIT v_room
    ), claimed AS (
      -- The state/visibility re-check runs again on the latest row version if
      -- an ack or modify-visibility touched the row meanwhile.
      UPDATE sluice.messages u
      SET delivery_token = (floor(random() * 4294967296) - 2147483648)::integer,
          deliver_count = u.deliver_count + 1,
          visible_at = v_now + p_visibility_ms * interval '1 millisecond',
          last_delivered_at = v_now
      FROM picked p
      WHERE u.consumer_id = p_consumer AND u.commit_lsn = p.commit_lsn AND u.commit_idx = p.commit_idx
        AND u.state = 0 AND u.visible_at <= v_now
      RETURNING u.commit_lsn, u.commit_idx, u.delivery_token, u.deliver_count, u.group_key, u.payload
    )
    SELECT c.commit_lsn, c.commit_idx, c.delivery_token, c.deliver_count, c.group_key, c.payload,
           NULL::timestamptz
    FROM claimed c ORDER BY c.commit_lsn, c.commit_idx;
    IF FOUND THEN RETURN; END IF;
  END IF;

  RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::integer, NULL::integer, NULL::text, NULL::text,
    (SELECT min(m.visible_at) FROM sluice.messages m
     WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL AND m.visible_at > v_now);
END $$;

-- Extend or shorten the visibility of in-flight deliveries (the ack ids' rows).
-- Only rows still in flight are touched, under the claim lock, so a message
-- whose visibility has run out can't be made in-flight again behind the back of
-- a claim counting max_ack_pending. Returns how many rows changed.
CREATE FUNCTION sluice.modify_visibility(
  p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_tokens integer[], p_visibility_ms integer
) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_now timestamptz;
  v_changed integer;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  v_now := clock_timestamp();
  UPDATE sluice.messages m SET visible_at = v_now + p_visibility_ms * interval '1 millisecond'
  FROM unnest(p_lsns, p_idxs, p_tokens) AS a(lsn, idx, token)
  WHERE m.consumer_id = p_consumer AND m.commit_lsn = a.lsn AND m.commit_idx = a.idx
    AND m.delivery_token = a.token AND m.state = 0 AND m.visible_at > v_now;
  GET DIAGNOSTICS v_changed = ROW_COUNT;
  RETURN v_changed;
END $$;

-- Long-polling receivers, one row each, so max_waiting holds across gateway
-- processes. A row outlives its receive by a grace period at most: a crashed
-- process's rows expire on their own, no heartbeat needed.
CREATE TABLE sluice.pull_waiters (
  waiter_id   uuid PRIMARY KEY,
  consumer_id uuid NOT NULL,
  instance_id text NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX pull_waiters_consumer_idx ON sluice.pull_waiters (consumer_id, expires_at);

-- Admit a waiter if fewer than p_max are waiting on the consumer. Serialised per
-- consumer (namespace 736002) so two processes can't both admit the last slot.
CREATE FUNCTION sluice.pull_wait_begin(
  p_consumer uuid, p_waiter uuid, p_instance text, p_max integer, p_expires_ms integer
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_waiting integer;
BEGIN
  PERFORM pg_advisory_xact_lock(736002, hashtext(p_consumer::text));
  DELETE FROM sluice.pull_waiters WHERE consumer_id = p_consumer AND expires_at <= clock_timestamp();
  SELECT count(*) INTO v_waiting FROM sluice.pull_waiters WHERE consumer_id = p_consumer;
  IF v_waiting >= p_max THEN
    RETURN false;
  END IF;
  INSERT INTO sluice.pull_waiters (waiter_id, consumer_id, instance_id, expires_at)
  VALUES (p_waiter, p_consumer, p_instance, clock_timestamp() + p_expires_ms * interval '1 millisecond');
  RETURN true;
END $$;
