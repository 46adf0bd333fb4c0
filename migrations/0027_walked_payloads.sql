-- A filtered consumer's claim (claim_messages_walked and
-- claim_webhook_batches_walked, 0015) hands out changes the gateway has just
-- read, payload and all, in the walk that admitted them (src/pipeline/filter/
-- walk.ts tests each against the where filter). Those rows now come back
-- with a NULL payload, which the gateway fills in from the walk: a filtered
-- change crosses from Postgres to the gateway once, not twice. Rows admitted
-- by earlier walks (left waiting, visible again, retried) still carry theirs.
-- The walked keys are matched by a hash join, the claim's order kept by its
-- ordinality.

CREATE OR REPLACE FUNCTION sluice.claim_messages_walked(
  p_consumer uuid, p_limit integer, p_visibility_ms integer, p_max_ack_pending integer, p_max_deliver integer,
  p_dead_blocks_group boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[])
RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
               deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM sluice.set_walked(p_consumer, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
  RETURN QUERY
    SELECT c.commit_lsn, c.commit_idx, c.delivery_token, c.deliver_count, c.group_key,
           CASE WHEN k.lsn IS NOT NULL AND c.delivery_token IS NOT NULL THEN NULL ELSE c.payload END,
           c.retry_at
    FROM sluice.claim_messages(p_consumer, p_limit, p_visibility_ms, p_max_ack_pending, p_max_deliver, p_dead_blocks_group)
         WITH ORDINALITY AS c(commit_lsn, commit_idx, delivery_token, deliver_count, group_key, payload, retry_at, n)
    LEFT JOIN (SELECT DISTINCT w.lsn, w.idx FROM unnest(p_lsns, p_idxs) AS w(lsn, idx)) k
      ON k.lsn = c.commit_lsn AND k.idx = c.commit_idx
    ORDER BY c.n;
  PERFORM sluice.admit_walked(p_consumer);
END $$;

CREATE OR REPLACE FUNCTION sluice.claim_webhook_batches_walked(
  p_consumer uuid, p_batches integer, p_batch_size integer, p_lease_ms integer, p_dead_blocks_group boolean,
  p_fresh boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[])
RETURNS TABLE (batch_id uuid, attempt integer, first_attempt_at timestamptz, delivery_token integer,
               commit_lsn bigint, commit_idx integer, group_key text, payload text, next_due_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM sluice.set_walked(p_consumer, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
  RETURN QUERY
    SELECT c.batch_id, c.attempt, c.first_attempt_at, c.delivery_token, c.commit_lsn, c.commit_idx, c.group_key,
           CASE WHEN k.lsn IS NOT NULL AND c.batch_id IS NOT NULL THEN NULL ELSE c.payload END,
           c.next_due_at
    FROM sluice.claim_webhook_batches(p_consumer, p_batches, p_batch_size, p_lease_ms, p_dead_blocks_group, p_fresh)
         WITH ORDINALITY AS c(batch_id, attempt, first_attempt_at, delivery_token, commit_lsn, commit_idx, group_key,
                              payload, next_due_at, n)
    LEFT JOIN (SELECT DISTINCT w.lsn, w.idx FROM unnest(p_lsns, p_idxs) AS w(lsn, idx)) k
      ON k.lsn = c.commit_lsn AND k.idx = c.commit_idx
    ORDER BY c.n;
  PERFORM sluice.admit_walked(p_consumer);
END $$;
