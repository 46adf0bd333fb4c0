-- A webhook claim hands out new batches without their payloads.
--
-- A claim holds its consumer's lock from start to end, and a webhook drain
-- waits on its claims (a batch-100 drain: one claim at a time, busy ~90% of
-- the wall time). Part of each claim was reading every new batch's payloads
-- from the log, one probe a message, and sending them through the claim's
-- result: none of it needs the lock, since a change in a batch out is
-- unacked and retention keeps it. Now new batches come back as keys, and the
-- gateway reads their payloads with a statement of its own
-- (src/push/queries.ts), while the next claim may already run. Batches due
-- again (retries) still come with their payloads, as before.
--
-- A filtered consumer's claim no longer needs to be told which payloads its
-- walk holds (0031's sluice.omit_walked_payloads): none comes back, and the
-- gateway reads from the log only those its walk does not hold.
--
-- Otherwise unchanged from 0031.

CREATE OR REPLACE FUNCTION sluice.claim_webhook_batches(p_consumer uuid, p_batches integer, p_batch_size integer, p_lease_ms integer, p_dead_blocks_group boolean, p_fresh boolean)
 RETURNS TABLE(batch_id uuid, attempt integer, first_attempt_at timestamp with time zone, delivery_token integer, commit_lsn bigint, commit_idx integer, group_key text, payload text, next_due_at timestamp with time zone)
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
 SET enable_bitmapscan TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
#variable_conflict use_column
DECLARE
  c_ahead CONSTANT integer := 5000;
  v_pass integer;
  v_want integer;
  v_now timestamptz;
  v_route record;
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
  PERFORM set_config('synchronous_commit', 'off', true);

  -- Paused or disabled: no process hands anything out, whatever its cache says.
  SELECT * INTO v_route FROM sluice.consumer_route(p_consumer);
  IF v_route.source_no IS NULL OR NOT v_route.active THEN
    RETURN QUERY SELECT NULL::uuid, NULL::integer, NULL::timestamptz, NULL::integer, NULL::bigint, NULL::integer,
      NULL::text, NULL::text, NULL::timestamptz;
    RETURN;
  END IF;

  WHILE v_batches < p_batches LOOP
    v_token := (floor(random() * 4294967296) - 2147483648)::integer;
    UPDATE sluice.webhook_batches b
    SET delivery_token = v_token, attempt = b.attempt + 1, due_at = v_now + v_lease, last_attempt_at = v_now
    WHERE b.batch_id = (SELECT d.batch_id FROM sluice.webhook_batches d
                        WHERE d.consumer_id = p_consumer AND d.due_at <= v_now ORDER BY d.due_at LIMIT 1)
    RETURNING b.batch_id, b.attempt, b.first_attempt_at, b.lsns, b.idxs INTO v_batch, v_attempt, v_first, v_lsns, v_idxs;
    EXIT WHEN NOT FOUND;
    RETURN QUERY
    SELECT v_batch, v_attempt, v_first, v_token, m.commit_lsn, m.commit_idx, m.group_key, l.payload, NULL::timestamptz
    FROM unnest(v_lsns, v_idxs) WITH ORDINALITY AS k(lsn, idx, ord)
    JOIN sluice.messages m ON m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx AND m.state = 0
    JOIN sluice.log l ON l.source_no = v_route.source_no AND l.commit_lsn = k.lsn AND l.commit_idx = k.idx
    ORDER BY k.ord;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN
      DELETE FROM sluice.webhook_batches b WHERE b.batch_id = v_batch;
    ELSE
      v_claimed := v_claimed + v_rows;
      v_batches := v_batches + 1;
    END IF;
  END LOOP;

  -- New batches, from the rows waiting (oldest first), topped up from the log
  -- first: the rows waiting (those in batches out included) are brought up
  -- to what the batches left could hold and 100 more. When that leaves
  -- batches unformed (their groups are blocked), a second pass tops them up
  -- to c_ahead: the look-ahead lets a pick find free groups behind blocked
  -- ones, as when every captured row was here, and bounds what a claim
  -- takes in whatever the backlog. Admission is one statement per pass.
  FOR v_pass IN 1..2 LOOP
  EXIT WHEN NOT p_fresh OR v_batches >= p_batches;
  -- A where-filtered consumer's admission takes in its walk's keys, all of
  -- them, or nothing without a walk: no count decides how many, and the
  -- first pass has taken in all there is (after it, admit_walked would take
  -- in what this pass left). So it neither counts nor makes a second pass.
  EXIT WHEN v_pass = 2 AND v_route.filtered;
  v_want := CASE WHEN v_pass = 1 THEN (p_batches - v_batches) * p_batch_size + 100 ELSE c_ahead END;
  -- The rows of the batches out are among those waiting: when they alone
  -- reach v_want (a steady drain's usual case: most slots are out), the
  -- count, which visits every row it counts, is not needed.
  SELECT least(v_want, coalesce(sum(cardinality(b.lsns)), 0)) INTO v_rows
  FROM sluice.webhook_batches b WHERE b.consumer_id = p_consumer;
  IF v_route.filtered THEN
    v_rows := 0;
  ELSIF v_rows < v_want THEN
    SELECT count(*) INTO v_rows FROM (
      SELECT 1 FROM sluice.messages m
      WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND m.batch_id IS NULL
      LIMIT v_want) x;
  END IF;
  PERFORM 1 FROM sluice.admit(p_consumer, v_route.source_no, v_route.tables, v_route.group_by,
                              greatest(v_want - v_rows, CASE WHEN v_pass = 2 THEN (p_batches - v_batches) * p_batch_size ELSE 0 END));
  EXIT WHEN v_pass = 2 AND NOT FOUND;
  IF true THEN
    -- Each pass reads the groups out afresh (a batch acked since the last
    -- pass frees its group), so the walk starts over from the oldest row:
    -- keeping the last pass's position would skip a freed group's rows
    -- before it and batch that group's later rows first (rule 3).
    v_after_lsn := -9223372036854775808;
    v_after_idx := -2147483648;
    SELECT coalesce(array_agg(o.g) FILTER (WHERE o.g IS NOT NULL), '{}'),
           coalesce(array_agg(o.l) FILTER (WHERE o.g IS NULL), '{}'),
           coalesce(array_agg(o.i) FILTER (WHERE o.g IS NULL), '{}')
    INTO v_out_groups, v_out_lsns, v_out_idxs
    FROM sluice.webhook_batches b, unnest(b.group_keys, b.lsns, b.idxs) AS o(g, l, i)
    WHERE b.consumer_id = p_consumer;
    -- A row a rewind marked for replay is in a batch out: its group is out.
    v_out_groups := v_out_groups || ARRAY(
      SELECT r.group_key FROM sluice.messages r WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key IS NOT NULL);
    IF p_dead_blocks_group THEN
      v_out_groups := v_out_groups || ARRAY(
        SELECT DISTINCT d.group_key FROM sluice.messages d
        WHERE d.consumer_id = p_consumer AND d.state = 1 AND d.group_key IS NOT NULL);
    END IF;
    IF p_batch_size = 1 THEN
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
      SELECT o.batch_id, 1, v_now, o.token, o.commit_lsn, o.commit_idx, o.group_key, NULL::text, NULL::timestamptz
      FROM oldest o
      ORDER BY o.commit_lsn, o.commit_idx;
      GET DIAGNOSTICS v_rows = ROW_COUNT;
      v_claimed := v_claimed + v_rows;
      v_batches := v_batches + v_rows;
    ELSE
      WHILE v_batches < p_batches LOOP
        v_batch := gen_random_uuid();
        v_token := (floor(random() * 4294967296) - 2147483648)::integer;
        WITH picked AS (
          SELECT m.commit_lsn, m.commit_idx, m.group_key FROM sluice.messages m
          WHERE m.consumer_id = p_consumer
            AND m.state = 0 AND m.batch_id IS NULL AND m.delivery_token IS NULL
            AND (m.commit_lsn, m.commit_idx) > (v_after_lsn, v_after_idx)
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
        SELECT v_batch, 1, v_now, v_token, k.lsn, k.idx, k.grp, NULL::text, NULL::timestamptz
        FROM unnest(v_lsns, v_idxs, v_groups) WITH ORDINALITY AS k(lsn, idx, grp, ord)
        ORDER BY k.ord;
        v_claimed := v_claimed + v_rows;
        v_batches := v_batches + 1;
        EXIT WHEN v_rows < p_batch_size;
        v_after_lsn := v_lsns[v_rows];
        v_after_idx := v_idxs[v_rows];
        v_out_groups := v_out_groups || ARRAY(SELECT u.g FROM unnest(v_groups) AS u(g) WHERE u.g IS NOT NULL);
      END LOOP;
    END IF;
  END IF;
  END LOOP;

  IF v_claimed = 0 THEN
    RETURN QUERY SELECT NULL::uuid, NULL::integer, NULL::timestamptz, NULL::integer, NULL::bigint, NULL::integer,
      NULL::text, NULL::text,
      (SELECT min(b.due_at) FROM sluice.webhook_batches b WHERE b.consumer_id = p_consumer AND b.due_at > v_now);
  END IF;
END $function$;


CREATE OR REPLACE FUNCTION sluice.claim_webhook_batches_walked(
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
