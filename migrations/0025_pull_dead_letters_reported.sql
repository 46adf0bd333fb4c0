-- A pull claim reports the messages it dead-letters for max_deliver, so the
-- gateway can log each (consumer, group, reason) and count them in /metrics.
-- sluice.claim_messages (migrations/0013_claim_plans.sql) dead-letters them
-- inside the claim and says nothing; the *_reporting claims below do that
-- step first, under the same lock, with RETURNING, and hand the rows back
-- ahead of the claimed ones with no delivery_token and no payload (a claimed
-- row always has both; the no-claim row has no commit_lsn either).
-- claim_messages then finds nothing left to do there. Replayed rows are left to claim_messages, which ends their
-- replay (and resets their count) before it dead-letters anything.
CREATE FUNCTION sluice.dead_letter_spent(p_consumer uuid, p_max_deliver integer)
RETURNS TABLE (commit_lsn bigint, commit_idx integer, group_key text, deliver_count integer)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  RETURN QUERY
  UPDATE sluice.messages m SET state = 1, delivery_token = NULL
  WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL
    AND m.visible_at <= clock_timestamp()
    AND m.state = 0 AND NOT m.replay AND m.deliver_count >= p_max_deliver
  RETURNING m.commit_lsn, m.commit_idx, m.group_key, m.deliver_count;
END $$;

CREATE FUNCTION sluice.claim_messages_reporting(
  p_consumer uuid, p_limit integer, p_visibility_ms integer, p_max_ack_pending integer, p_max_deliver integer,
  p_dead_blocks_group boolean)
RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
               deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF p_max_deliver IS NOT NULL THEN
    RETURN QUERY SELECT d.commit_lsn, d.commit_idx, NULL::integer, d.deliver_count, d.group_key, NULL::text, NULL::timestamptz
      FROM sluice.dead_letter_spent(p_consumer, p_max_deliver) d;
  END IF;
  RETURN QUERY SELECT * FROM sluice.claim_messages(p_consumer, p_limit, p_visibility_ms, p_max_ack_pending,
                                                   p_max_deliver, p_dead_blocks_group);
END $$;

CREATE FUNCTION sluice.claim_messages_walked_reporting(
  p_consumer uuid, p_limit integer, p_visibility_ms integer, p_max_ack_pending integer, p_max_deliver integer,
  p_dead_blocks_group boolean,
  p_from_lsn bigint, p_from_idx integer, p_to_lsn bigint, p_to_idx integer, p_lsns bigint[], p_idxs integer[])
RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
               deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF p_max_deliver IS NOT NULL THEN
    RETURN QUERY SELECT d.commit_lsn, d.commit_idx, NULL::integer, d.deliver_count, d.group_key, NULL::text, NULL::timestamptz
      FROM sluice.dead_letter_spent(p_consumer, p_max_deliver) d;
  END IF;
  RETURN QUERY SELECT * FROM sluice.claim_messages_walked(p_consumer, p_limit, p_visibility_ms, p_max_ack_pending,
    p_max_deliver, p_dead_blocks_group, p_from_lsn, p_from_idx, p_to_lsn, p_to_idx, p_lsns, p_idxs);
END $$;
