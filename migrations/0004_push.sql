-- Push delivery (webhooks): batch identity on buffered messages, the batch
-- claim, the attempt log, endpoint health and rotated-secret expiries.
--
-- A batch is a set of one consumer's messages sent as one POST. Its id
-- (messages.batch_id) is the webhook-id, so it must survive retries, restarts
-- and hand-over to another gateway process: it lives on the rows themselves.
-- A claimed batch's rows carry delivery_token (one random per delivery of the
-- batch) and visible_at (the lease end while in flight, the next attempt time
-- while backing off); acked rows are deleted, exhausted ones become state 1.
--
-- Nothing here touches 0002's objects; claims share its lock (736001 per
-- consumer), so dead-letter retry (src/buffer/dead-letters.ts) stays atomic
-- with respect to webhook claims too.

ALTER TABLE sluice.messages
  ADD COLUMN batch_id uuid,
  -- When the batch's first attempt started: max_age counts from here.
  ADD COLUMN first_attempt_at timestamptz;

-- A batch's rows, for resending it whole (retries, expired leases).
CREATE INDEX messages_batch_idx ON sluice.messages (batch_id) WHERE batch_id IS NOT NULL;

-- Rows never handed out, in commit order, with their group: forming a batch
-- reads this index only (no heap visit while pages are all-visible), and skips
-- rows already in a batch. Measured on a batch pick of 100 with 700 rows in
-- flight: 0.3 ms against 1.7 ms through the primary key.
-- One index for pull and webhook claims alike (it replaces 0002's
-- messages_undelivered_idx): a webhook claim sets batch_id and delivery_token
-- together (and dead-lettering clears both), a pull consumer's rows never get a
-- batch_id, so the predicate holds for exactly the rows each kind of claim
-- wants, and capture maintains one such index per message instead of two
-- (measured: a 1,000,000-change capture backlog, 34k/s with two, 49k/s with none).
DROP INDEX sluice.messages_undelivered_idx;
CREATE INDEX messages_fresh_idx ON sluice.messages (consumer_id, commit_lsn, commit_idx) INCLUDE (group_key)
  WHERE state = 0 AND delivery_token IS NULL AND batch_id IS NULL;

-- Claims up to p_batches batches of at most p_batch_size messages, in one round
-- trip. Batches whose lease or backoff ended come first (resent whole, same
-- batch id); then, when p_fresh, new batches are formed from the heads of
-- groups that have no batch out.
--
-- Rows not yet in a batch are visible at once (visible_at only delays
-- batches: leases and backoff), so the pick does not read visible_at and can
-- stay an index-only scan of messages_fresh_idx.
--
-- "No batch out" is one hashed set per statement (the groups of rows that carry
-- a delivery token, plus groups with dead letters when those block), so rows of
-- blocked groups are skipped at a hash probe each: measured on 1M rows all
-- blocked, 0.5 s per claim against 8 s for a per-row index probe, and the same
-- ~1 ms for the usual case. A new batch may hold several consecutive messages of
-- one group (it is acked as a whole, in order). Each batch is its own
-- statement, so the next sees the rows just batched as blockers: a group is
-- never in two batches at once. With batch size 1, one statement forms all the
-- batches, one message of distinct groups each.
--
-- Returns the claimed rows, batch by batch in commit order. When nothing was
-- claimed: one row with NULL batch_id whose next_due_at is the earliest moment
-- a batch's lease or backoff ends (NULL if none).
CREATE FUNCTION sluice.claim_webhook_batches(
  p_consumer uuid,
  p_batches integer,
  p_batch_size integer,
  p_lease_ms integer,
  p_dead_blocks_group boolean,
  p_fresh boolean
)
RETURNS TABLE (batch_id uuid, attempt integer, first_attempt_at timestamptz, delivery_token integer,
               commit_lsn bigint, commit_idx integer, group_key text, payload text, next_due_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_now timestamptz;
  v_lease interval := p_lease_ms * interval '1 millisecond';
  v_batch uuid;
  -- One token per batch delivery: outcome statements match the whole batch by it.
  v_token integer;
  v_rows integer;
  v_batches integer := 0;
  v_claimed integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  v_now := clock_timestamp();
  -- A claim is only a lease: if the server crashed before flushing it, the rows
  -- would simply be claimable again. Not waiting for the WAL flush at commit
  -- took a batch-1 claim from ~9 ms to ~3 ms round trip (the fsync was the rest).
  PERFORM set_config('synchronous_commit', 'off', true);

  -- Paused or disabled: no process hands anything out, whatever its cache says.
  IF NOT EXISTS (SELECT 1 FROM sluice.consumers c WHERE c.id = p_consumer AND c.state = 'active') THEN
    RETURN QUERY SELECT NULL::uuid, NULL::integer, NULL::timestamptz, NULL::integer, NULL::bigint, NULL::integer,
      NULL::text, NULL::text, NULL::timestamptz;
    RETURN;
  END IF;

  -- Batches due again (backoff over, or the lease of a process that died).
  WHILE v_batches < p_batches LOOP
    SELECT m.batch_id INTO v_batch FROM sluice.messages m
    WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL AND m.visible_at <= v_now
      AND m.state = 0 AND m.batch_id IS NOT NULL
    ORDER BY m.visible_at LIMIT 1;
    EXIT WHEN NOT FOUND;
    v_token := (floor(random() * 4294967296) - 2147483648)::integer;
    RETURN QUERY
    WITH claimed AS (
      UPDATE sluice.messages u
      SET delivery_token = v_token,
          deliver_count = u.deliver_count + 1, visible_at = v_now + v_lease, last_delivered_at = v_now
      -- Every row of the batch, due or not: a batch is resent whole.
      WHERE u.consumer_id = p_consumer AND u.batch_id = v_batch AND u.state = 0
        AND u.delivery_token IS NOT NULL
      RETURNING u.batch_id, u.deliver_count, u.first_attempt_at, u.delivery_token, u.commit_lsn, u.commit_idx, u.group_key, u.payload
    )
    SELECT c.*, NULL::timestamptz FROM claimed c ORDER BY c.commit_lsn, c.commit_idx;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_claimed := v_claimed + v_rows;
    v_batches := v_batches + 1;
  END LOOP;

  IF p_fresh AND v_batches < p_batches AND p_batch_size = 1 THEN
    -- One message per batch: the oldest heads of distinct free groups, each its own batch.
    RETURN QUERY
    WITH candidates AS (
      SELECT m.commit_lsn, m.commit_idx, m.group_key FROM sluice.messages m
      WHERE m.consumer_id = p_consumer
        AND m.state = 0 AND m.batch_id IS NULL AND m.delivery_token IS NULL
        AND (m.group_key IS NULL OR m.group_key NOT IN (
          SELECT b.group_key FROM sluice.messages b
          WHERE b.consumer_id = p_consumer AND b.delivery_token IS NOT NULL AND b.state = 0 AND b.group_key IS NOT NULL
          UNION ALL
          SELECT d.group_key FROM sluice.messages d
          WHERE p_dead_blocks_group AND d.consumer_id = p_consumer AND d.state = 1 AND d.group_key IS NOT NULL))
      ORDER BY m.commit_lsn, m.commit_idx
      LIMIT (p_batches - v_batches) * 4
    ), picked AS (
      SELECT DISTINCT ON (coalesce(c.group_key, c.commit_lsn || ':' || c.commit_idx)) c.commit_lsn, c.commit_idx
      FROM candidates c
      ORDER BY coalesce(c.group_key, c.commit_lsn || ':' || c.commit_idx), c.commit_lsn, c.commit_idx
    ), oldest AS (
      SELECT p.commit_lsn, p.commit_idx FROM picked p ORDER BY p.commit_lsn, p.commit_idx LIMIT p_batches - v_batches
    ), claimed AS (
      UPDATE sluice.messages u
      SET batch_id = gen_random_uuid(), first_attempt_at = v_now,
          delivery_token = (floor(random() * 4294967296) - 2147483648)::integer,
          deliver_count = u.deliver_count + 1, visible_at = v_now + v_lease, last_delivered_at = v_now
      FROM oldest o
      WHERE u.consumer_id = p_consumer AND u.commit_lsn = o.commit_lsn AND u.commit_idx = o.commit_idx
        AND u.state = 0 AND u.batch_id IS NULL
      RETURNING u.batch_id, u.deliver_count, u.first_attempt_at, u.delivery_token, u.commit_lsn, u.commit_idx, u.group_key, u.payload
    )
    SELECT c.*, NULL::timestamptz FROM claimed c ORDER BY c.commit_lsn, c.commit_idx;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_claimed := v_claimed + v_rows;
  ELSIF p_fresh THEN
    WHILE v_batches < p_batches LOOP
      v_batch := gen_random_uuid();
      v_token := (floor(random() * 4294967296) - 2147483648)::integer;
      RETURN QUERY
      WITH picked AS (
        SELECT m.commit_lsn, m.commit_idx FROM sluice.messages m
        WHERE m.consumer_id = p_consumer
          AND m.state = 0 AND m.batch_id IS NULL AND m.delivery_token IS NULL
          AND (m.group_key IS NULL OR m.group_key NOT IN (
            SELECT b.group_key FROM sluice.messages b
            WHERE b.consumer_id = p_consumer AND b.delivery_token IS NOT NULL AND b.state = 0 AND b.group_key IS NOT NULL
            UNION ALL
            SELECT d.group_key FROM sluice.messages d
            WHERE p_dead_blocks_group AND d.consumer_id = p_consumer AND d.state = 1 AND d.group_key IS NOT NULL))
        ORDER BY m.commit_lsn, m.commit_idx
        LIMIT p_batch_size
      ), claimed AS (
        UPDATE sluice.messages u
        SET batch_id = v_batch, first_attempt_at = v_now, delivery_token = v_token,
            deliver_count = u.deliver_count + 1, visible_at = v_now + v_lease, last_delivered_at = v_now
        FROM picked p
        WHERE u.consumer_id = p_consumer AND u.commit_lsn = p.commit_lsn AND u.commit_idx = p.commit_idx
          AND u.state = 0 AND u.batch_id IS NULL
        RETURNING u.batch_id, u.deliver_count, u.first_attempt_at, u.delivery_token, u.commit_lsn, u.commit_idx, u.group_key, u.payload
      )
      SELECT c.*, NULL::timestamptz FROM claimed c ORDER BY c.commit_lsn, c.commit_idx;
      GET DIAGNOSTICS v_rows = ROW_COUNT;
      v_claimed := v_claimed + v_rows;
      v_batches := v_batches + 1;
      -- A short batch means no more eligible rows: the next would find none.
      EXIT WHEN v_rows < p_batch_size;
    END LOOP;
  END IF;

  IF v_claimed = 0 THEN
    RETURN QUERY SELECT NULL::uuid, NULL::integer, NULL::timestamptz, NULL::integer, NULL::bigint, NULL::integer,
      NULL::text, NULL::text,
      (SELECT min(m.visible_at) FROM sluice.messages m
       WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL AND m.visible_at > v_now AND m.state = 0);
  END IF;
END $$;

-- Every delivery attempt, for the attempts API and for operators. No foreign
-- key to consumers on purpose: a key-share lock on the consumer row per insert
-- (thousands a second) would cost more than orphans, which age out with the
-- retention prune.
CREATE TABLE sluice.webhook_attempts (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  consumer_id      uuid NOT NULL,
  batch_id         uuid NOT NULL,
  attempt          integer NOT NULL,
  started_at       timestamptz NOT NULL,
  duration_ms      integer NOT NULL,
  -- HTTP status; NULL when no response (timeout, connection, DNS, refused).
  status           integer,
  -- What was decided: delivered (2xx), retry, dead_letter, paused (410).
  outcome          text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead_letter', 'paused')),
  error            text,
  -- The first 4 KiB of the response body, as text.
  response_excerpt text,
  message_count    integer NOT NULL,
  instance_id      text
);
CREATE INDEX webhook_attempts_consumer_idx ON sluice.webhook_attempts (consumer_id, id);
CREATE INDEX webhook_attempts_started_idx ON sluice.webhook_attempts (started_at);

-- Endpoint health per webhook consumer. first_failure_at is the start of the
-- current run of failures (NULL after a success): automatic disabling counts
-- from it.
CREATE TABLE sluice.webhook_health (
  consumer_id          uuid PRIMARY KEY REFERENCES sluice.consumers (id) ON DELETE CASCADE,
  last_success_at      timestamptz,
  last_failure_at      timestamptz,
  first_failure_at     timestamptz,
  consecutive_failures integer NOT NULL DEFAULT 0,
  last_error           text
);

-- When a secret rotated out through the API stops signing. Keyed by the
-- secret's SHA-256, so this table holds nothing that could sign; the secrets
-- themselves stay in the consumer's config, newest first.
CREATE TABLE sluice.webhook_secret_expiries (
  consumer_id   uuid NOT NULL REFERENCES sluice.consumers (id) ON DELETE CASCADE,
  secret_sha256 bytea NOT NULL,
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (consumer_id, secret_sha256)
);
