-- Messages a consumer's transform refuses (it threw, timed out, ran out of
-- memory or returned no JSON value) become dead letters at once, with the
-- reason, when they are served: they are never sent, and (unless the consumer
-- has dead_letter_blocks_group) their group moves on. A row a rewind marked
-- for replay is left as it is; the caller hands it to sluice.end_replays.

-- Pull: deliveries just claimed (matched by their delivery token, so a
-- delivery that has meanwhile been handed out again is not touched). Leaving
-- flight is what an ack does, so like an ack it needs no claim lock; it
-- notifies, since a group may have been freed.
CREATE FUNCTION sluice.dead_letter_deliveries(
  p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_tokens integer[], p_errors text[]
) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
  v_n integer;
BEGIN
  UPDATE sluice.messages m
  SET state = 1, delivery_token = NULL, last_delivered_at = now(), last_error = k.error
  FROM unnest(p_lsns, p_idxs, p_tokens, p_errors) AS k(lsn, idx, token, error)
  WHERE m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx
    AND m.delivery_token = k.token AND m.state = 0 AND NOT m.replay;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_n > 0 THEN
    PERFORM pg_notify('sluice_messages', p_consumer::text);
  END IF;
  RETURN v_n;
END $$;

-- Webhook: the refused messages leave their batch (still carrying this
-- delivery's token) before it is sent; the rest of the batch goes out as it
-- was formed. Returns how many messages the batch keeps (0: it was deleted),
-- or -1 when the batch is no longer this delivery's (its lease ran out and
-- another process took it over), in which case nothing changed.
CREATE FUNCTION sluice.dead_letter_batch_keys(
  p_consumer uuid, p_batch uuid, p_token integer, p_lsns bigint[], p_idxs integer[], p_errors text[]
) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
  v_batch sluice.webhook_batches%ROWTYPE;
  v_lsns bigint[];
  v_idxs integer[];
  v_groups text[];
BEGIN
  SELECT * INTO v_batch FROM sluice.webhook_batches b
  WHERE b.batch_id = p_batch AND b.consumer_id = p_consumer AND b.delivery_token = p_token
  FOR UPDATE;
  IF NOT FOUND THEN
    RETURN -1;
  END IF;
  SELECT coalesce(array_agg(u.l ORDER BY u.ord), '{}'), coalesce(array_agg(u.i ORDER BY u.ord), '{}'),
         coalesce(array_agg(u.g ORDER BY u.ord), '{}')
  INTO v_lsns, v_idxs, v_groups
  FROM unnest(v_batch.lsns, v_batch.idxs, v_batch.group_keys) WITH ORDINALITY AS u(l, i, g, ord)
  WHERE (u.l, u.i) NOT IN (SELECT k.l, k.i FROM unnest(p_lsns, p_idxs) AS k(l, i));
  IF cardinality(v_lsns) = 0 THEN
    DELETE FROM sluice.webhook_batches b WHERE b.batch_id = p_batch;
  ELSE
    UPDATE sluice.webhook_batches b SET lsns = v_lsns, idxs = v_idxs, group_keys = v_groups
    WHERE b.batch_id = p_batch;
  END IF;
  UPDATE sluice.messages m
  SET state = 1, deliver_count = v_batch.attempt, last_delivered_at = now(), last_error = k.error
  FROM unnest(p_lsns, p_idxs, p_errors) AS k(lsn, idx, error)
  WHERE m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx
    AND m.state = 0 AND NOT m.replay;
  PERFORM pg_notify('sluice_messages', p_consumer::text);
  RETURN cardinality(v_lsns);
END $$;
