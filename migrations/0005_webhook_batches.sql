-- Webhook batches get their own narrow table: a batch out (in flight, backing
-- off, or held while its consumer is paused) is one row here, and its messages
-- are no longer rewritten to say so.
--
-- Why: 0004 marked a claimed batch on its message rows (batch_id,
-- delivery_token, visible_at ...). Each claim therefore rewrote every message
-- whole, payload included, with a new entry in four indexes, and claims of a
-- consumer are serialised. Profiled (bench/sql-profile.ts push-100), the
-- claim's UPDATE was 4.3 ms per 100 messages, 1.1 KB of WAL per message, and
-- bounded a consumer at ~23k messages/s whatever the cores. Now a claim reads
-- the messages and writes one small row per batch; an ack deletes that row and
-- the messages.
--
-- A message is out when its key is in a batch row; its group is blocked when
-- any batch row lists the group. The messages of a batch stay in
-- messages_fresh_idx (their row never changes), so a pick skips them: they
-- belong to blocked groups (grouped rows), or are named by key (ungrouped).
-- Dead letters are still state 1 on the message (deliver_count and last_error
-- copied from the batch), so listing, retrying and discarding them is unchanged.

CREATE TABLE sluice.webhook_batches (
  -- The webhook-id (whsg_ + this uuid's hex); survives retries and hand-over.
  batch_id         uuid PRIMARY KEY,
  consumer_id      uuid NOT NULL,
  -- Random per delivery: outcome statements only touch the batch while it
  -- still carries the token of the attempt they report.
  delivery_token   integer NOT NULL,
  -- Claims of this batch so far (1 on its first attempt).
  attempt          integer NOT NULL,
  -- max_age counts from here.
  first_attempt_at timestamptz NOT NULL,
  last_attempt_at  timestamptz NOT NULL,
  -- The lease end while in flight; the next attempt while backing off; now
  -- when held for a paused consumer.
  due_at           timestamptz NOT NULL,
  -- The messages, in commit order (parallel arrays; group NULL = ungrouped).
  lsns             bigint[] NOT NULL,
  idxs             integer[] NOT NULL,
  group_keys       text[] NOT NULL,
  last_error       text
);
-- Due batches first; also every batch of a consumer (the blocked set).
CREATE INDEX webhook_batches_due_idx ON sluice.webhook_batches (consumer_id, due_at);
-- A queue of its own: rows live for one request.
ALTER TABLE sluice.webhook_batches SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000);

-- Batches out at the time of the upgrade move here whole, as they were.
INSERT INTO sluice.webhook_batches
  (batch_id, consumer_id, delivery_token, attempt, first_attempt_at, last_attempt_at, due_at, lsns, idxs, group_keys, last_error)
SELECT m.batch_id, m.consumer_id, min(m.delivery_token), max(m.deliver_count),
       coalesce(min(m.first_attempt_at), now()), coalesce(max(m.last_delivered_at), now()), min(m.visible_at),
       array_agg(m.commit_lsn ORDER BY m.commit_lsn, m.commit_idx),
       array_agg(m.commit_idx ORDER BY m.commit_lsn, m.commit_idx),
       array_agg(m.group_key ORDER BY m.commit_lsn, m.commit_idx),
       max(m.last_error)
FROM sluice.messages m
WHERE m.batch_id IS NOT NULL AND m.state = 0
GROUP BY m.consumer_id, m.batch_id;
UPDATE sluice.messages SET batch_id = NULL, delivery_token = NULL, first_attempt_at = NULL, visible_at = '-infinity'
WHERE batch_id IS NOT NULL;

-- Same contract as 0004's version (arguments, result rows, one round trip,
-- serialised per consumer by lock 736001), on the new table.
--
-- Picking reads messages_fresh_idx only, in commit order, skipping rows whose
-- group has a batch out (or a dead letter, when those block) and ungrouped
-- rows that are in a batch, each by a hashed set. The sets are read once per
-- claim; each new batch adds its groups before the next is formed, so a group
-- is never in two batches at once, and the next batch scans on from where the
-- previous one stopped. With batch size 1, one statement forms all the
-- batches, one message of distinct groups each.
CREATE OR REPLACE FUNCTION sluice.claim_webhook_batches(
  p_consumer uuid,
  p_batches integer,
  p_batch_size integer,
  p_lease_ms integer,
  p_dead_blocks_group boolean,
  p_fresh boolean
)
RETURNS TABLE (batch_id uuid, attempt integer, first_attempt_at timestamptz, delivery_token integer,
               commit_lsn bigint, commit_idx integer, group_key text, payload text, next_due_at timestamptz)
LANGUAGE plpgsql VOLATILE
-- Every statement walks an index for a few rows; a queue table's statistics
-- are nearly always stale, and a wrong estimate must not become a scan of the
-- whole buffer.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  v_now timestamptz;
  v_lease interval := p_lease_ms * interval '1 millisecond';
  v_batch uuid;
  v_token integer;
  v_attempt integer;
  v_first timestamptz;
  v_lsns bigint[];
  v_idxs integer[];
  v_rows integer;
  v_groups text[];
  v_out_groups text[];
  v_out_lsns bigint[];
  v_out_idxs integer[];
  v_after_lsn bigint := -9223372036854775808;
  v_after_idx integer := -2147483648;
  v_batches integer := 0;
  v_claimed integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  v_now := clock_timestamp();
  -- A claim is only a lease: lost in a server crash, its batches are simply
  -- claimable again. Not waiting for the WAL flush keeps the lock short.
  PERFORM set_config('synchronous_commit', 'off', true);

  -- Paused or disabled: no process hands anything out, whatever its cache says.
  IF NOT EXISTS (SELECT 1 FROM sluice.consumers c WHERE c.id = p_consumer AND c.state = 'active') THEN
    RETURN QUERY SELECT NULL::uuid, NULL::integer, NULL::timestamptz, NULL::integer, NULL::bigint, NULL::integer,
      NULL::text, NULL::text, NULL::timestamptz;
    RETURN;
  END IF;

  -- Batches due again (backoff over, or the lease of a process that died),
  -- resent whole under the same id.
  WHILE v_batches < p_batches LOOP
    v_token := (floor(random() * 4294967296) - 2147483648)::integer;
    UPDATE sluice.webhook_batches b
    SET delivery_token = v_token, attempt = b.attempt + 1, due_at = v_now + v_lease, last_attempt_at = v_now
    WHERE b.batch_id = (SELECT d.batch_id FROM sluice.webhook_batches d
                        WHERE d.consumer_id = p_consumer AND d.due_at <= v_now ORDER BY d.due_at LIMIT 1)
    RETURNING b.batch_id, b.attempt, b.first_attempt_at, b.lsns, b.idxs INTO v_batch, v_attempt, v_first, v_lsns, v_idxs;
    EXIT WHEN NOT FOUND;
    RETURN QUERY
    SELECT v_batch, v_attempt, v_first, v_token, m.commit_lsn, m.commit_idx, m.group_key, m.payload, NULL::timestamptz
    FROM unnest(v_lsns, v_idxs) WITH ORDINALITY AS k(lsn, idx, ord)
    JOIN sluice.messages m ON m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx AND m.state = 0
    ORDER BY k.ord;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    -- Its messages are gone (a capture replay cleared them): nothing to send.
    IF v_rows = 0 THEN
      DELETE FROM sluice.webhook_batches b WHERE b.batch_id = v_batch;
    ELSE
      v_claimed := v_claimed + v_rows;
      v_batches := v_batches + 1;
    END IF;
  END LOOP;

  IF p_fresh AND v_batches < p_batches THEN
    -- What blocks, read once: groups with a batch out (or a dead letter, when
    -- those block) and ungrouped rows in a batch (the due batches just
    -- claimed included). An ack committing meanwhile must not unblock a group
    -- halfway through this claim: the batches after the first scan from where
    -- the previous one stopped (below), and would take a group's later row
    -- while its earlier one lies behind them.
    SELECT coalesce(array_agg(o.g) FILTER (WHERE o.g IS NOT NULL), '{}'),
           coalesce(array_agg(o.l) FILTER (WHERE o.g IS NULL), '{}'),
           coalesce(array_agg(o.i) FILTER (WHERE o.g IS NULL), '{}')
    INTO v_out_groups, v_out_lsns, v_out_idxs
    FROM sluice.webhook_batches b, unnest(b.group_keys, b.lsns, b.idxs) AS o(g, l, i)
    WHERE b.consumer_id = p_consumer;
    IF p_dead_blocks_group THEN
      v_out_groups := v_out_groups || ARRAY(
        SELECT DISTINCT d.group_key FROM sluice.messages d
        WHERE d.consumer_id = p_consumer AND d.state = 1 AND d.group_key IS NOT NULL);
    END IF;
    IF p_batch_size = 1 THEN
      -- One message per batch: the oldest heads of distinct free groups, all
      -- in one statement.
      RETURN QUERY
      WITH candidates AS (
        SELECT m.commit_lsn, m.commit_idx, m.group_key FROM sluice.messages m
        WHERE m.consumer_id = p_consumer
          AND m.state = 0 AND m.batch_id IS NULL AND m.delivery_token IS NULL
          AND CASE WHEN m.group_key IS NULL
            THEN (m.commit_lsn, m.commit_idx) NOT IN (SELECT u.l, u.i FROM unnest(v_out_lsns, v_out_idxs) AS u(l, i))
            ELSE m.group_key NOT IN (SELECT u.g FROM unnest(v_out_groups) AS u(g))
            END
        ORDER BY m.commit_lsn, m.commit_idx
        LIMIT (p_batches - v_batches) * 4
      ), picked AS (
        SELECT DISTINCT ON (coalesce(c.group_key, c.commit_lsn || ':' || c.commit_idx)) c.commit_lsn, c.commit_idx, c.group_key
        FROM candidates c
        ORDER BY coalesce(c.group_key, c.commit_lsn || ':' || c.commit_idx), c.commit_lsn, c.commit_idx
      ), oldest AS MATERIALIZED (
        SELECT p.commit_lsn, p.commit_idx, p.group_key, gen_random_uuid() AS batch_id,
               (floor(random() * 4294967296) - 2147483648)::integer AS token
        FROM picked p ORDER BY p.commit_lsn, p.commit_idx LIMIT p_batches - v_batches
      ), created AS (
        INSERT INTO sluice.webhook_batches
          (batch_id, consumer_id, delivery_token, attempt, first_attempt_at, last_attempt_at, due_at, lsns, idxs, group_keys)
        SELECT o.batch_id, p_consumer, o.token, 1, v_now, v_now, v_now + v_lease,
               ARRAY[o.commit_lsn], ARRAY[o.commit_idx], ARRAY[o.group_key]
        FROM oldest o
      )
      SELECT o.batch_id, 1, v_now, o.token, m.commit_lsn, m.commit_idx, m.group_key, m.payload, NULL::timestamptz
      FROM oldest o
      JOIN sluice.messages m ON m.consumer_id = p_consumer AND m.commit_lsn = o.commit_lsn AND m.commit_idx = o.commit_idx
      ORDER BY o.commit_lsn, o.commit_idx;
      GET DIAGNOSTICS v_rows = ROW_COUNT;
      v_claimed := v_claimed + v_rows;
    ELSE
      WHILE v_batches < p_batches LOOP
        v_batch := gen_random_uuid();
        v_token := (floor(random() * 4294967296) - 2147483648)::integer;
        WITH picked AS (
          SELECT m.commit_lsn, m.commit_idx, m.group_key FROM sluice.messages m
          WHERE m.consumer_id = p_consumer
            AND m.state = 0 AND m.batch_id IS NULL AND m.delivery_token IS NULL
            AND (m.commit_lsn, m.commit_idx) > (v_after_lsn, v_after_idx)
            -- Subqueries, not "<> ALL (array)": each is one hashed set per statement.
            AND CASE WHEN m.group_key IS NULL
              THEN (m.commit_lsn, m.commit_idx) NOT IN (SELECT u.l, u.i FROM unnest(v_out_lsns, v_out_idxs) AS u(l, i))
              ELSE m.group_key NOT IN (SELECT u.g FROM unnest(v_out_groups) AS u(g))
              END
          ORDER BY m.commit_lsn, m.commit_idx
          LIMIT p_batch_size
        )
        INSERT INTO sluice.webhook_batches
          (batch_id, consumer_id, delivery_token, attempt, first_attempt_at, last_attempt_at, due_at, lsns, idxs, group_keys)
        SELECT v_batch, p_consumer, v_token, 1, v_now, v_now, v_now + v_lease,
               array_agg(p.commit_lsn ORDER BY p.commit_lsn, p.commit_idx),
               array_agg(p.commit_idx ORDER BY p.commit_lsn, p.commit_idx),
               array_agg(p.group_key ORDER BY p.commit_lsn, p.commit_idx)
        FROM picked p
        HAVING count(*) > 0
        RETURNING lsns, idxs, group_keys INTO v_lsns, v_idxs, v_groups;
        EXIT WHEN NOT FOUND;
        v_rows := cardinality(v_lsns);
        RETURN QUERY
        SELECT v_batch, 1, v_now, v_token, m.commit_lsn, m.commit_idx, m.group_key, m.payload, NULL::timestamptz
        FROM unnest(v_lsns, v_idxs) WITH ORDINALITY AS k(lsn, idx, ord)
        JOIN sluice.messages m ON m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx
        ORDER BY k.ord;
        v_claimed := v_claimed + v_rows;
        v_batches := v_batches + 1;
        -- A short batch means no more eligible rows: the next would find none.
        EXIT WHEN v_rows < p_batch_size;
        -- Every row up to this batch's last that it did not take was skipped as
        -- out or blocked, and still is (this claim only adds blockers): the next
        -- batch's scan starts after it instead of wading through them again.
        v_after_lsn := v_lsns[v_rows];
        v_after_idx := v_idxs[v_rows];
        v_out_groups := v_out_groups || ARRAY(SELECT u.g FROM unnest(v_groups) AS u(g) WHERE u.g IS NOT NULL);
      END LOOP;
    END IF;
  END IF;

  IF v_claimed = 0 THEN
    RETURN QUERY SELECT NULL::uuid, NULL::integer, NULL::timestamptz, NULL::integer, NULL::bigint, NULL::integer,
      NULL::text, NULL::text,
      (SELECT min(b.due_at) FROM sluice.webhook_batches b WHERE b.consumer_id = p_consumer AND b.due_at > v_now);
  END IF;
END $$;
