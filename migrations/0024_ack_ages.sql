-- A pull ack that also says how old each acked change was (its commit to
-- now, in seconds), for the commit-to-ack histogram of /metrics
-- (src/metrics/metrics.ts). The same delete as sluice.delete_messages
-- (migrations/0013_claim_plans.sql): each row found by primary key, deleted by
-- ctid, with seq and bitmap scans off; messages.created_at is the change's
-- commit time.
CREATE FUNCTION sluice.ack_messages(p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_tokens integer[])
RETURNS float8[]
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
  v_ages float8[];
BEGIN
  WITH gone AS (
    DELETE FROM sluice.messages m
    WHERE m.ctid = ANY (ARRAY(
      SELECT t.ctid
      FROM unnest(p_lsns, p_idxs, coalesce(p_tokens, array_fill(NULL::integer, ARRAY[cardinality(p_lsns)])))
        AS k(lsn, idx, token)
      CROSS JOIN LATERAL (
        SELECT r.ctid FROM sluice.messages r
        WHERE r.consumer_id = p_consumer AND r.commit_lsn = k.lsn AND r.commit_idx = k.idx
          AND (k.token IS NULL OR r.delivery_token = k.token) AND r.state = 0 AND NOT r.replay
        OFFSET 0) t))
      AND m.state = 0 AND NOT m.replay
    RETURNING greatest(extract(epoch FROM clock_timestamp() - m.created_at), 0)::float8 AS age
  )
  SELECT coalesce(array_agg(age), ARRAY[]::float8[]) INTO v_ages FROM gone;
  RETURN v_ages;
END $$;
