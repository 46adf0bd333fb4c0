-- Claiming messages for delivery (pull receives now, webhook dispatch later),
-- giving them back, and counting long-polling receivers across processes.
--
-- Claims, nacks and visibility changes of one consumer are serialised by a
-- transaction-scoped advisory lock (namespace 736001, key hashtext(consumer
-- id)). That is what makes max_ack_pending exact across gateway processes: the
-- in-flight count a claim relies on includes every earlier claim, committed
-- before the lock was released. Consumers whose ids hash alike share a lock.
-- Acks need no lock: they only take messages out of flight.
--
-- These are plpgsql functions so that each is one round trip and each
-- statement after the lock takes a fresh snapshot (a single SQL statement
-- would take its snapshot before waiting for the lock, missing the last claim).

-- Never-delivered messages in commit order: where a claim looks first. Rows in
-- flight are not in it, so a claim does not wade through them. (0004 replaces
-- it with messages_fresh_idx, shared with webhook claims; the claims here test
-- batch_id IS NULL, always true for a pull consumer's rows, to match it.)
CREATE INDEX messages_undelivered_idx ON sluice.messages (consumer_id, commit_lsn, commit_idx)
  WHERE state = 0 AND delivery_token IS NULL;

-- Acked rows leave dead index entries until VACUUM; at thousands of messages a
-- second a claim that walked them from the start of an index would slow down
-- minute after minute. So each consumer keeps bounds, written by the claims:
--   commit_lsn/idx   lower bound of the never-delivered rows' positions
--   expired_from     lower bound of visible_at over delivered rows; nack and
--                    modify-visibility lower it when they move visible_at back
--   in_flight_bound  upper bound of in-flight rows (only claims add to it), so
--                    max_ack_pending needs an exact count only near the limit
--   group_key        where the last sweep over groups stopped
-- They are hints checked against nothing but time: once rescan_at passes, a
-- claim starts from the beginning of everything and counts again (so a row a
-- capture replay inserts below the cursor waits 10 s at most). Dead-letter
-- retries delete the row. Anything else that moves a delivered row's
-- visible_at back or hands rows out must go through these functions (or
-- delete the consumer's row here).
CREATE TABLE sluice.claim_cursors (
  consumer_id     uuid PRIMARY KEY,
  commit_lsn      bigint NOT NULL,
  commit_idx      integer NOT NULL,
  expired_from    timestamptz NOT NULL,
  in_flight_bound integer,
  group_key       text,
  rescan_at       timestamptz NOT NULL
);

-- A queue table: most rows are deleted within seconds, so vacuum it often.
ALTER TABLE sluice.messages SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 10000);

-- Marks picked rows delivered: fresh token, one more delivery, invisible for
-- the visibility timeout. The state/visibility re-check runs on the latest row
-- version if an ack touched a row after it was picked.
CREATE FUNCTION sluice.stamp_deliveries(
  p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_now timestamptz, p_visibility_ms integer
) RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
                 deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH claimed AS (
    UPDATE sluice.messages u
    SET delivery_token = (floor(random() * 4294967296) - 2147483648)::integer,
        deliver_count = u.deliver_count + 1,
        visible_at = p_now + p_visibility_ms * interval '1 millisecond',
        last_delivered_at = p_now
    FROM unnest(p_lsns, p_idxs) AS k(lsn, idx)
    WHERE u.consumer_id = p_consumer AND u.commit_lsn = k.lsn AND u.commit_idx = k.idx
      AND u.state = 0 AND u.visible_at <= p_now
    RETURNING u.commit_lsn, u.commit_idx, u.delivery_token, u.deliver_count, u.group_key, u.payload
  )
  SELECT c.commit_lsn, c.commit_idx, c.delivery_token, c.deliver_count, c.group_key, c.payload, NULL::timestamptz
  FROM claimed c ORDER BY c.commit_lsn, c.commit_idx;
END $$;

-- The claim. A row is deliverable when it is visible and heads its group: no
-- earlier row of the group still pending (in flight or not), nor dead when dead
-- letters block. Judging by the snapshot also limits a claim to one message per
-- group, so a client can never ack a group's messages out of order.
-- Work per claim is bounded, whatever the backlog:
--   1. windows of the first never-delivered rows from the cursor (4 × room +
--      100) and of the delivered rows whose visibility ran out longest ago;
--   2. when that leaves the batch short while never-delivered rows wait (their
--      groups' heads in flight: a few hot groups with a long backlog), a sweep
--      over up to 200 groups, resuming where the last one stopped, finds heads
--      beyond the window.
-- The group check walks messages_group_idx backwards from the row, so a
-- blocked row finds the pending row before it in one step.
-- Returns one row per claimed message, in commit order; when none, one row
-- whose commit_lsn is NULL and whose retry_at is the earliest moment an
-- in-flight message becomes visible again (NULL if none).
CREATE FUNCTION sluice.claim_messages(
  p_consumer uuid, p_limit integer, p_visibility_ms integer,
  p_max_ack_pending integer,      -- NULL: unlimited
  p_max_deliver integer,          -- NULL: never dead-letter
  p_dead_blocks_group boolean
) RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
                 deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE
-- Every statement here is meant to walk an index for a few rows. A queue
-- table's statistics are nearly always stale (a backlog arrives and drains
-- between two ANALYZEs), and with wrong estimates the planner turns a
-- one-row probe into a sequential or bitmap scan of the whole table.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  c_sweep CONSTANT integer := 200;
  v_now timestamptz;
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
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  -- Claims are serialised, so the lock should be held for as short a time as
  -- possible, and waiting for the WAL flush at commit is most of what a claim
  -- could shed. Losing a claim in a server crash only means its messages are
  -- handed out again (their new ack ids die with it): at-least-once holds.
  -- (This applies to the caller's whole transaction, if it opened one.)
  PERFORM set_config('synchronous_commit', 'off', true);
  -- Time is read after the lock: a claim that queued behind others must not
  -- judge visibility by the moment it started waiting.
  v_now := clock_timestamp();
  SELECT * INTO v_cur FROM sluice.claim_cursors c WHERE c.consumer_id = p_consumer;
  v_fresh := coalesce(v_cur.rescan_at > v_now, false);
  IF v_fresh THEN
    v_from_lsn := v_cur.commit_lsn;
    v_from_idx := v_cur.commit_idx;
    v_expired_from := v_cur.expired_from;
  END IF;

  -- Messages delivered max_deliver times whose last visibility ran out become
  -- dead letters before anything is picked, so they stop blocking their group
  -- in this very claim. Their token is cleared: a late ack can't delete them.
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
           AND (w.group_key IS NULL OR (
             SELECT e.state FROM sluice.messages e
             WHERE e.consumer_id = p_consumer AND e.group_key = w.group_key
               AND (e.commit_lsn, e.commit_idx) < (w.commit_lsn, w.commit_idx)
               AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1))
             ORDER BY e.commit_lsn DESC, e.commit_idx DESC LIMIT 1) IS NULL)
         ORDER BY w.commit_lsn, w.commit_idx LIMIT v_room)
        UNION ALL
        (SELECT x.commit_lsn, x.commit_idx FROM (
           SELECT m.commit_lsn, m.commit_idx, m.group_key FROM sluice.messages m
           WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL
             AND m.visible_at >= v_expired_from AND m.visible_at <= v_now AND m.state = 0
           -- visible_at order is messages_delivered_idx's: ordering by position
           -- here would invite a walk of the primary key over every row.
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
      RETURN QUERY SELECT * FROM sluice.stamp_deliveries(p_consumer, v_lsns, v_idxs, v_now, p_visibility_ms);
      GET DIAGNOSTICS v_claimed = ROW_COUNT;
    END IF;

    -- The next position cursor: the first never-delivered row still alive
    -- (this statement sees the rows just claimed as delivered); blocked rows
    -- hold it, so it never passes a row that waits. With nothing undelivered
    -- left, the consumer's last row: new rows come after it. One statement, so
    -- both look at the same snapshot.
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
      -- A sweep that reached the last group starts again from the first.
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
        ORDER BY hd.commit_lsn, hd.commit_idx LIMIT v_room - v_claimed
      ) h;
      IF cardinality(v_lsns) > 0 THEN
        RETURN QUERY SELECT * FROM sluice.stamp_deliveries(p_consumer, v_lsns, v_idxs, v_now, p_visibility_ms);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_claimed := v_claimed + v_n;
      END IF;
    END IF;
  END IF;

  -- The earliest visible_at among delivered rows (the claimed ones included):
  -- the next expired_from, and when nothing was claimed the retry_at.
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
            -- The next full pass is due 10 s after this one; a claim that had no
            -- room looked at no rows, so it leaves a due pass due.
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

-- Give deliveries back (the ack ids' rows): visible at once, the token kept so
-- the same ack_id still acks until the message is handed out again. Under the
-- claim lock, because the consumer's expired_from must move back with them.
-- Returns how many rows changed; wakes long-pollers of every process.
CREATE FUNCTION sluice.nack_messages(
  p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_tokens integer[]
) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_now timestamptz;
  v_changed integer;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  v_now := clock_timestamp();
  UPDATE sluice.messages m SET visible_at = v_now
  FROM unnest(p_lsns, p_idxs, p_tokens) AS a(lsn, idx, token)
  WHERE m.consumer_id = p_consumer AND m.commit_lsn = a.lsn AND m.commit_idx = a.idx
    AND m.delivery_token = a.token AND m.state = 0 AND m.visible_at > v_now;
  GET DIAGNOSTICS v_changed = ROW_COUNT;
  IF v_changed > 0 THEN
    UPDATE sluice.claim_cursors c
    SET expired_from = LEAST(c.expired_from, v_now),
        in_flight_bound = CASE WHEN c.in_flight_bound IS NOT NULL THEN GREATEST(0, c.in_flight_bound - v_changed) END
    WHERE c.consumer_id = p_consumer;
    PERFORM pg_notify('sluice_messages', p_consumer::text);
  END IF;
  RETURN v_changed;
END $$;

-- Extend or shorten the visibility of in-flight deliveries. Only rows still in
-- flight are touched, so a message whose visibility has run out can't be made
-- in-flight again behind the back of max_ack_pending. Returns how many changed.
CREATE FUNCTION sluice.modify_visibility(
  p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_tokens integer[], p_visibility_ms integer
) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_until timestamptz;
  v_changed integer;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  v_until := clock_timestamp() + p_visibility_ms * interval '1 millisecond';
  UPDATE sluice.messages m SET visible_at = v_until
  FROM unnest(p_lsns, p_idxs, p_tokens) AS a(lsn, idx, token)
  WHERE m.consumer_id = p_consumer AND m.commit_lsn = a.lsn AND m.commit_idx = a.idx
    AND m.delivery_token = a.token AND m.state = 0 AND m.visible_at > clock_timestamp();
  GET DIAGNOSTICS v_changed = ROW_COUNT;
  IF v_changed > 0 THEN
    UPDATE sluice.claim_cursors c SET expired_from = LEAST(c.expired_from, v_until)
    WHERE c.consumer_id = p_consumer;
  END IF;
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

-- Admit a waiter if fewer than p_max wait on the consumer. Serialised per
-- consumer (namespace 736002) so two processes can't both take the last slot.
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
