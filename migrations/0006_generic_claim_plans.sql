-- The webhook claim's statements are planned once per connection and then
-- reused, instead of re-planned on every call. (The pull claim's already were:
-- bench/sql-profile.ts pull shows ~0.02 ms of planning per claim.)
--
-- Why: plpgsql plans a statement that uses variables with their values each
-- time until it judges a generic plan as cheap, and the webhook claim's
-- picking statement never got there. Profiled at batch size 1
-- (pg_stat_statements.track_planning), planning it was ~0.3 ms of a ~1 ms
-- claim, paid once per claim whatever the number of batches formed. Each
-- statement in the function has one sensible plan, an index walk in
-- commit or due order (seq and bitmap scans are already off for them), which
-- a parameter's value does not change.
ALTER FUNCTION sluice.claim_webhook_batches(uuid, integer, integer, integer, boolean, boolean)
  SET plan_cache_mode = force_generic_plan;
