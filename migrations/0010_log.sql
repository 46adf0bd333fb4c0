-- The retained change log: each captured change is stored once per source, in
-- sluice.log, and stays there until the source's retention drops it, acked or
-- not. What a consumer still has to do lives in narrow rows without payload:
--
--   sluice.consumer_positions  per consumer, the last log position it has taken
--                              in ("admitted"); everything after it in the log
--                              is still to come, in commit order
--   sluice.messages            per consumer, the admitted changes not yet done:
--                              waiting for their group, in flight, backing off
--                              (pull), in a webhook batch, or dead letters. An
--                              ack deletes the row; the change stays in the log
--   sluice.webhook_batches     unchanged (0005)
--
-- Why: 0001 stored one whole row per (consumer, change) and deleted it on ack,
-- so every consumer wrote every payload again and an acked change was gone.
--
-- Admission: a claim, under its consumer's lock (736001), first walks the log
-- from the consumer's position, inserts the changes of the consumer's tables
-- into sluice.messages (group key computed for this consumer) and moves the
-- position past every row it walked; then it claims from sluice.messages
-- exactly as before. Admission only adds rows after every row already there
-- (a rewind aside: see sluice.rewind_consumer), so the group rules of the
-- claims (0002, 0005) hold unchanged. A pull claim admits only what it needs
-- to fill its room; a webhook claim what its batches need.

-- Sources get a small number: the log's partition key, shorter than a name.
CREATE SEQUENCE sluice.sources_log_no_seq AS integer;
ALTER TABLE sluice.sources ADD COLUMN log_no integer;
ALTER SEQUENCE sluice.sources_log_no_seq OWNED BY sluice.sources.log_no;
UPDATE sluice.sources SET log_no = nextval('sluice.sources_log_no_seq');
ALTER TABLE sluice.sources
  ALTER COLUMN log_no SET DEFAULT nextval('sluice.sources_log_no_seq'),
  ALTER COLUMN log_no SET NOT NULL,
  ADD CONSTRAINT sources_log_no_key UNIQUE (log_no);

-- One row per captured change (commit_lsn, commit_idx) of a source. Range
-- partitions by (source, commit LSN), created by capture as the WAL advances
-- (sluice.log_cover) and dropped whole by retention: old changes never leave
-- by DELETE, so the log needs no VACUUM for them.
CREATE TABLE sluice.log (
  source_no    integer NOT NULL,
  commit_lsn   bigint NOT NULL,
  commit_idx   integer NOT NULL,
  schema_name  text NOT NULL,
  table_name   text NOT NULL,
  -- insert, update, delete (read, once backfills exist)
  action       text NOT NULL,
  -- The default group: "schema.table:" and the primary key values as a JSON
  -- array of their text. Consumers that group by other columns compute theirs
  -- from the record when they admit the change.
  group_key    text,
  committed_at timestamptz NOT NULL,
  -- The message JSON without metadata.consumer (added when served).
  payload      text NOT NULL,
  PRIMARY KEY (source_no, commit_lsn, commit_idx)
) PARTITION BY RANGE (source_no, commit_lsn);
-- Commit times follow LSN order closely: a BRIN index finds "changes since"
-- (start positions, rewinds, queries on sluice.changes) for almost no upkeep.
CREATE INDEX log_committed_at_idx ON sluice.log USING brin (committed_at) WITH (autosummarize = on);

-- The partitions, so that capture and retention need not read the catalog.
-- Each covers [lo, hi) of one source's commit LSNs; they are contiguous.
CREATE TABLE sluice.log_partitions (
  source_no  integer NOT NULL,
  lo         bigint NOT NULL,
  hi         bigint NOT NULL,
  relname    text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_no, lo)
);

-- What retention has dropped: every change of the source below this LSN is
-- gone. Rewinds and start positions before it are refused.
CREATE TABLE sluice.log_horizons (
  source_no   integer PRIMARY KEY,
  dropped_lsn bigint NOT NULL,
  dropped_at  timestamptz NOT NULL DEFAULT now()
);

-- Makes sure partitions cover commit LSNs p_min..p_max of a source; returns
-- the upper bound of the newest partition (capture caches it: below it, no
-- call is needed). A new partition starts where the newest one ends and
-- reaches p_target_s seconds of WAL past p_max, judged by how fast the newest
-- one filled (at least 16 MiB, one WAL segment; at most 1 TiB). Serialised per
-- source.
--
-- Locks: the new table is attached with ATTACH PARTITION, which takes SHARE
-- UPDATE EXCLUSIVE on sluice.log (claims and capture go on); a CHECK
-- constraint matching the bounds spares its scan.
CREATE FUNCTION sluice.log_cover(p_source integer, p_min bigint, p_max bigint, p_target_s float8)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  c_min_width CONSTANT bigint := 16777216;
  c_max_width CONSTANT bigint := 1099511627776;
  v_first sluice.log_partitions%ROWTYPE;
  v_last sluice.log_partitions%ROWTYPE;
  v_width bigint := 268435456;
  v_age float8;
  v_lo bigint;
  v_hi bigint;
  v_name text;
BEGIN
  PERFORM pg_advisory_xact_lock(736010, p_source);
  SELECT * INTO v_last FROM sluice.log_partitions p WHERE p.source_no = p_source ORDER BY p.lo DESC LIMIT 1;
  IF FOUND AND v_last.hi > p_max THEN
    SELECT * INTO v_first FROM sluice.log_partitions p WHERE p.source_no = p_source ORDER BY p.lo LIMIT 1;
    IF v_first.lo <= p_min THEN
      RETURN v_last.hi;
    END IF;
    -- Below the oldest partition (not expected: retention keeps what capture
    -- may write again): cover the gap.
    v_lo := p_min;
    v_hi := v_first.lo;
  ELSE
    IF FOUND THEN
      v_age := greatest(extract(epoch FROM clock_timestamp() - v_last.created_at)::float8, 1);
      v_width := ((v_last.hi - v_last.lo)::float8 * greatest(p_target_s, 1) / v_age)::bigint;
      v_lo := v_last.hi;
    ELSE
      v_lo := p_min;
    END IF;
    v_width := least(greatest(v_width, c_min_width), c_max_width);
    v_hi := p_max + v_width;
  END IF;
  v_name := format('log_%s_%s', p_source, lpad(to_hex(v_lo), 16, '0'));
  EXECUTE format('CREATE TABLE sluice.%I (LIKE sluice.log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
  EXECUTE format('ALTER TABLE sluice.%I ADD CONSTRAINT %I CHECK (source_no = %s AND commit_lsn >= %s AND commit_lsn < %s)',
                 v_name, v_name || '_bounds', p_source, v_lo, v_hi);
  EXECUTE format('ALTER TABLE sluice.log ATTACH PARTITION sluice.%I FOR VALUES FROM (%s, %s) TO (%s, %s)',
                 v_name, p_source, v_lo, p_source, v_hi);
  INSERT INTO sluice.log_partitions (source_no, lo, hi, relname) VALUES (p_source, v_lo, v_hi, v_name);
  IF v_hi <= p_max THEN
    -- The gap case filled; the top may still need a partition.
    RETURN sluice.log_cover(p_source, v_hi, p_max, p_target_s);
  END IF;
  RETURN greatest(v_hi, coalesce(v_last.hi, v_hi));
END $$;

-- The log, readable with plain SQL: one row per retained change. A stable
-- interface for audits and ad-hoc queries (the tables behind it may change).
CREATE VIEW sluice.changes AS
SELECT s.name AS source,
       l.schema_name AS table_schema,
       l.table_name,
       l.action,
       m.j -> 'record' AS record,
       m.j -> 'changes' AS changes,
       l.committed_at,
       ('0/0'::pg_lsn + l.commit_lsn::numeric) AS commit_lsn,
       l.commit_idx,
       m.j -> 'metadata' ->> 'idempotency_key' AS idempotency_key,
       m.j -> 'metadata' -> 'transaction_annotations' AS transaction_annotations,
       m.j AS message
FROM sluice.log l
JOIN sluice.sources s ON s.log_no = l.source_no
CROSS JOIN LATERAL (SELECT l.payload::jsonb AS j) m;

-- Per consumer: the last log position taken in. A new consumer's row is
-- written where it starts (src/log/positions.ts); this trigger gives every
-- consumer one, at what its source has captured so far ("now").
CREATE TABLE sluice.consumer_positions (
  consumer_id uuid PRIMARY KEY REFERENCES sluice.consumers (id) ON DELETE CASCADE,
  commit_lsn  bigint NOT NULL,
  commit_idx  integer NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The position "now" for a source: after its newest captured change.
CREATE FUNCTION sluice.log_tail(p_source_name text, OUT commit_lsn bigint, OUT commit_idx integer)
LANGUAGE sql STABLE AS $$
  SELECT x.commit_lsn, x.commit_idx FROM (
    (SELECT l.commit_lsn, l.commit_idx FROM sluice.log l JOIN sluice.sources s ON s.log_no = l.source_no
     WHERE s.name = p_source_name ORDER BY l.source_no DESC, l.commit_lsn DESC, l.commit_idx DESC LIMIT 1)
    UNION ALL
    SELECT (p.confirmed_lsn - '0/0'::pg_lsn)::bigint, -1 FROM sluice.source_positions p WHERE p.source_name = p_source_name
    UNION ALL
    SELECT 0, -1
  ) x ORDER BY x.commit_lsn DESC, x.commit_idx DESC LIMIT 1
$$;

CREATE FUNCTION sluice.consumer_position_default() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO sluice.consumer_positions (consumer_id, commit_lsn, commit_idx)
  SELECT NEW.id, t.commit_lsn, t.commit_idx FROM sluice.log_tail(NEW.source_name) t
  ON CONFLICT (consumer_id) DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER consumers_position AFTER INSERT ON sluice.consumers
  FOR EACH ROW EXECUTE FUNCTION sluice.consumer_position_default();

-- A consumer moved to another source starts there "now".
CREATE FUNCTION sluice.consumer_position_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE sluice.consumer_positions p SET commit_lsn = t.commit_lsn, commit_idx = t.commit_idx, updated_at = now()
  FROM sluice.log_tail(NEW.source_name) t WHERE p.consumer_id = NEW.id;
  RETURN NULL;
END $$;
CREATE TRIGGER consumers_position_moved AFTER UPDATE OF source_name ON sluice.consumers
  FOR EACH ROW WHEN (OLD.source_name IS DISTINCT FROM NEW.source_name)
  EXECUTE FUNCTION sluice.consumer_position_moved();

-- A custom group key (group_by: {table: [columns]}) from the stored record:
-- "schema.table:" and the columns' values as a JSON array of text; the default
-- group when the record lacks one of them (a delete's key-only tuple).
CREATE FUNCTION sluice.custom_group_key(p_table text, p_payload text, p_columns jsonb, p_default text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN (SELECT bool_and(r.rec ? c) FROM jsonb_array_elements_text(p_columns) c)
    THEN p_table || ':' || array_to_json(ARRAY(
      SELECT r.rec ->> c.col FROM jsonb_array_elements_text(p_columns) WITH ORDINALITY AS c(col, ord) ORDER BY c.ord))::text
    ELSE p_default END
  FROM (SELECT p_payload::jsonb -> 'record' AS rec) r
$$;

-- The upgrade: every buffered message's change goes into the log once; the
-- rows in sluice.messages keep their state and lose their payload.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT s.log_no, min(m.commit_lsn) AS lo, max(m.commit_lsn) AS hi
    FROM sluice.messages m
    JOIN sluice.consumers c ON c.id = m.consumer_id
    JOIN sluice.sources s ON s.name = c.source_name
    GROUP BY s.log_no
  LOOP
    PERFORM sluice.log_cover(r.log_no, r.lo, r.hi, 3600);
  END LOOP;
END $$;

INSERT INTO sluice.log (source_no, commit_lsn, commit_idx, schema_name, table_name, action, group_key, committed_at, payload)
SELECT DISTINCT ON (s.log_no, m.commit_lsn, m.commit_idx)
  s.log_no, m.commit_lsn, m.commit_idx,
  j.p -> 'metadata' ->> 'table_schema', j.p -> 'metadata' ->> 'table_name', j.p ->> 'action',
  (j.p -> 'metadata' ->> 'table_schema') || '.' || (j.p -> 'metadata' ->> 'table_name') || ':' ||
    array_to_json(ARRAY(SELECT jsonb_array_elements_text(j.p -> 'metadata' -> 'record_pks')))::text,
  coalesce((j.p -> 'metadata' ->> 'commit_timestamp')::timestamptz, m.created_at),
  m.payload
FROM sluice.messages m
JOIN sluice.consumers c ON c.id = m.consumer_id
JOIN sluice.sources s ON s.name = c.source_name
CROSS JOIN LATERAL (SELECT m.payload::jsonb AS p) j
ORDER BY s.log_no, m.commit_lsn, m.commit_idx;

-- Every existing consumer has been handed every change captured so far (the
-- old capture wrote one row per consumer): it continues after the newest.
INSERT INTO sluice.consumer_positions (consumer_id, commit_lsn, commit_idx)
SELECT c.id, t.commit_lsn, t.commit_idx FROM sluice.consumers c CROSS JOIN LATERAL sluice.log_tail(c.source_name) t;

-- Messages whose consumer's source is not stored have no log row to read
-- their payload from; none are expected (capture only writes for stored
-- sources), and they could never be served.
DELETE FROM sluice.messages m
WHERE NOT EXISTS (SELECT 1 FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name WHERE c.id = m.consumer_id);

-- Custom group keys (group_by: {table: [columns]}) as admission computes them,
-- from the message's JSON record (sluice.custom_group_key), not as 0009's
-- capture did, from the columns' Postgres text ("t" / true, "2026-12-01
-- 09:00:00+00" / "2026-12-01T09:00:00.000000Z"...): otherwise a change
-- captured after the upgrade falls in another group than the rows of its
-- group still here (waiting, in flight, in a batch) and overtakes them.
UPDATE sluice.messages m
SET group_key = sluice.custom_group_key(
      (m.payload::jsonb -> 'metadata' ->> 'table_schema') || '.' || (m.payload::jsonb -> 'metadata' ->> 'table_name'),
      m.payload,
      c.config -> 'group_by' -> ((m.payload::jsonb -> 'metadata' ->> 'table_schema') || '.' || (m.payload::jsonb -> 'metadata' ->> 'table_name')),
      m.group_key)
FROM sluice.consumers c
WHERE c.id = m.consumer_id AND m.group_key IS NOT NULL AND jsonb_typeof(c.config -> 'group_by') = 'object'
  AND c.config -> 'group_by' ? ((m.payload::jsonb -> 'metadata' ->> 'table_schema') || '.' || (m.payload::jsonb -> 'metadata' ->> 'table_name'));
-- A batch out names its rows' groups (what blocks them): the same keys.
UPDATE sluice.webhook_batches b
SET group_keys = ARRAY(
  SELECT coalesce(m.group_key, k.g) FROM unnest(b.lsns, b.idxs, b.group_keys) WITH ORDINALITY AS k(l, i, g, o)
  LEFT JOIN sluice.messages m ON m.consumer_id = b.consumer_id AND m.commit_lsn = k.l AND m.commit_idx = k.i
  ORDER BY k.o)
FROM sluice.consumers c
WHERE c.id = b.consumer_id AND jsonb_typeof(c.config -> 'group_by') = 'object';

ALTER TABLE sluice.messages DROP COLUMN payload;
-- A rewind landed while this row was in flight (pull) or in a batch out
-- (webhook): when that delivery ends, the row waits to be delivered again
-- instead of being deleted.
ALTER TABLE sluice.messages ADD COLUMN replay boolean NOT NULL DEFAULT false;
CREATE INDEX messages_replay_idx ON sluice.messages (consumer_id, group_key) WHERE replay;
COMMENT ON COLUMN sluice.messages.created_at IS 'commit time of the change (age of pending work)';

-- Walks the log from a consumer's position: up to p_limit rows; the ones of
-- its tables become its messages (waiting, never delivered); the position
-- moves past every row walked. Caller holds the consumer's lock. Returns the
-- admitted rows' keys and groups, in commit order.
CREATE FUNCTION sluice.admit(p_consumer uuid, p_source integer, p_tables text[], p_group_by jsonb, p_limit integer)
RETURNS TABLE (commit_lsn bigint, commit_idx integer, group_key text)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  v_lsn bigint;
  v_idx integer;
  v_last_lsn bigint;
  v_last_idx integer;
BEGIN
  SELECT p.commit_lsn, p.commit_idx INTO v_lsn, v_idx FROM sluice.consumer_positions p WHERE p.consumer_id = p_consumer;
  IF NOT FOUND OR p_limit <= 0 THEN
    RETURN;
  END IF;
  SELECT l.commit_lsn, l.commit_idx INTO v_last_lsn, v_last_idx FROM (
    SELECT l.commit_lsn, l.commit_idx FROM sluice.log l
    WHERE l.source_no = p_source AND (l.commit_lsn, l.commit_idx) > (v_lsn, v_idx)
    ORDER BY l.commit_lsn, l.commit_idx LIMIT p_limit) l
  ORDER BY l.commit_lsn DESC, l.commit_idx DESC LIMIT 1;
  IF v_last_lsn IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY
  INSERT INTO sluice.messages AS m (consumer_id, commit_lsn, commit_idx, group_key, created_at)
  SELECT p_consumer, l.commit_lsn, l.commit_idx,
    CASE WHEN p_group_by IS NULL THEN l.group_key
         WHEN jsonb_typeof(p_group_by) <> 'object' THEN NULL
         WHEN p_group_by ? (l.schema_name || '.' || l.table_name) THEN
           sluice.custom_group_key(l.schema_name || '.' || l.table_name, l.payload,
                                   p_group_by -> (l.schema_name || '.' || l.table_name), l.group_key)
         ELSE l.group_key END,
    l.committed_at
  FROM sluice.log l
  WHERE l.source_no = p_source
    AND (l.commit_lsn, l.commit_idx) > (v_lsn, v_idx) AND (l.commit_lsn, l.commit_idx) <= (v_last_lsn, v_last_idx)
    AND (p_tables IS NULL OR (l.schema_name || '.' || l.table_name) = ANY (p_tables))
  ORDER BY l.commit_lsn, l.commit_idx
  -- Only after a rewind: the row is still here (in flight, in a batch, waiting
  -- or dead), and is delivered again through it.
  ON CONFLICT DO NOTHING
  RETURNING m.commit_lsn, m.commit_idx, m.group_key;
  UPDATE sluice.consumer_positions p SET commit_lsn = v_last_lsn, commit_idx = v_last_idx, updated_at = now()
  WHERE p.consumer_id = p_consumer;
END $$;

-- What a claim needs to know of its consumer, read under its lock: the log it
-- reads, its tables and grouping (NULL: the default group), and whether it is
-- active.
CREATE FUNCTION sluice.consumer_route(p_consumer uuid,
  OUT source_no integer, OUT tables text[], OUT group_by jsonb, OUT active boolean)
LANGUAGE sql STABLE AS $$
  SELECT s.log_no,
         ARRAY(SELECT jsonb_array_elements_text(c.config -> 'tables')),
         CASE WHEN c.config -> 'group_by' IS NULL OR c.config -> 'group_by' IN ('true'::jsonb, 'null'::jsonb)
              THEN NULL ELSE c.config -> 'group_by' END,
         c.state = 'active'
  FROM sluice.consumers c JOIN sluice.sources s ON s.name = c.source_name
  WHERE c.id = p_consumer
$$;

-- The claims of 0002 and 0005, with admission, payloads read from the log and
-- the rewind rule: a row marked replay (in flight, of a group a rewind sent
-- back) blocks its whole group, so the rewound changes before it wait until
-- that delivery ends.
DROP FUNCTION sluice.claim_messages(uuid, integer, integer, integer, integer, boolean);
DROP FUNCTION sluice.stamp_deliveries(uuid, bigint[], integer[], timestamptz, integer);

CREATE FUNCTION sluice.stamp_deliveries(
  p_consumer uuid, p_source integer, p_lsns bigint[], p_idxs integer[], p_now timestamptz, p_visibility_ms integer
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
    RETURNING u.commit_lsn, u.commit_idx, u.delivery_token, u.deliver_count, u.group_key
  )
  SELECT c.commit_lsn, c.commit_idx, c.delivery_token, c.deliver_count, c.group_key, l.payload, NULL::timestamptz
  FROM claimed c
  JOIN sluice.log l ON l.source_no = p_source AND l.commit_lsn = c.commit_lsn AND l.commit_idx = c.commit_idx
  ORDER BY c.commit_lsn, c.commit_idx;
END $$;

-- As 0002's, plus: replay rows whose delivery ended go back to waiting; when
-- the windows and the sweep leave room, the claim admits that many rows from
-- the log and claims those that head their group.
CREATE FUNCTION sluice.claim_messages(
  p_consumer uuid, p_limit integer, p_visibility_ms integer,
  p_max_ack_pending integer,      -- NULL: unlimited
  p_max_deliver integer,          -- NULL: never dead-letter
  p_dead_blocks_group boolean
) RETURNS TABLE (commit_lsn bigint, commit_idx integer, delivery_token integer,
                 deliver_count integer, group_key text, payload text, retry_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  c_sweep CONSTANT integer := 200;
  c_ahead CONSTANT integer := 5000;
  v_now timestamptz;
  v_route record;
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
  PERFORM set_config('synchronous_commit', 'off', true);
  v_now := clock_timestamp();
  SELECT * INTO v_route FROM sluice.consumer_route(p_consumer);
  IF v_route.source_no IS NULL THEN
    RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::integer, NULL::integer, NULL::text, NULL::text, NULL::timestamptz;
    RETURN;
  END IF;
  SELECT * INTO v_cur FROM sluice.claim_cursors c WHERE c.consumer_id = p_consumer;
  v_fresh := coalesce(v_cur.rescan_at > v_now, false);
  IF v_fresh THEN
    v_from_lsn := v_cur.commit_lsn;
    v_from_idx := v_cur.commit_idx;
    v_expired_from := v_cur.expired_from;
  END IF;

  -- A replayed row whose delivery ended (nacked, or its visibility ran out):
  -- see sluice.end_replays (below), whose rule this is.
  WITH pos AS (
    SELECT p.commit_lsn, p.commit_idx FROM sluice.consumer_positions p WHERE p.consumer_id = p_consumer
  ), ended AS (
    SELECT m.commit_lsn, m.commit_idx, (m.commit_lsn, m.commit_idx) > (pos.commit_lsn, pos.commit_idx) AS ahead
    FROM sluice.messages m, pos
    WHERE m.consumer_id = p_consumer AND m.replay AND m.delivery_token IS NOT NULL AND m.visible_at <= v_now
  ), gone AS (
    DELETE FROM sluice.messages m USING ended e
    WHERE e.ahead AND m.consumer_id = p_consumer AND m.commit_lsn = e.commit_lsn AND m.commit_idx = e.commit_idx
    RETURNING 1
  ), back AS (
    UPDATE sluice.messages m SET delivery_token = NULL, visible_at = '-infinity', deliver_count = 0, replay = false
    FROM ended e
    WHERE NOT e.ahead AND m.consumer_id = p_consumer AND m.commit_lsn = e.commit_lsn AND m.commit_idx = e.commit_idx
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM back) INTO v_n;
  IF v_n > 0 THEN
    v_fresh := false;
    v_from_lsn := -9223372036854775808;
    v_from_idx := -2147483648;
    v_expired_from := '-infinity';
  END IF;

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
           AND (w.group_key IS NULL OR ((
             SELECT e.state FROM sluice.messages e
             WHERE e.consumer_id = p_consumer AND e.group_key = w.group_key
               AND (e.commit_lsn, e.commit_idx) < (w.commit_lsn, w.commit_idx)
               AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1))
             ORDER BY e.commit_lsn DESC, e.commit_idx DESC LIMIT 1) IS NULL
             AND NOT EXISTS (SELECT 1 FROM sluice.messages r
                             WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key = w.group_key)))
         ORDER BY w.commit_lsn, w.commit_idx LIMIT v_room)
        UNION ALL
        (SELECT x.commit_lsn, x.commit_idx FROM (
           SELECT m.commit_lsn, m.commit_idx, m.group_key FROM sluice.messages m
           WHERE m.consumer_id = p_consumer AND m.delivery_token IS NOT NULL
             AND m.visible_at >= v_expired_from AND m.visible_at <= v_now AND m.state = 0
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
      RETURN QUERY SELECT * FROM sluice.stamp_deliveries(p_consumer, v_route.source_no, v_lsns, v_idxs, v_now, p_visibility_ms);
      GET DIAGNOSTICS v_claimed = ROW_COUNT;
    END IF;

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
          AND NOT EXISTS (SELECT 1 FROM sluice.messages r
                          WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key = g.group_key)
        ORDER BY hd.commit_lsn, hd.commit_idx LIMIT v_room - v_claimed
      ) h;
      IF cardinality(v_lsns) > 0 THEN
        RETURN QUERY SELECT * FROM sluice.stamp_deliveries(p_consumer, v_route.source_no, v_lsns, v_idxs, v_now, p_visibility_ms);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_claimed := v_claimed + v_n;
      END IF;
    END IF;

    -- 3. Admission: still room, so take in more rows from the log and claim
    -- the ones that head their group (every row already here is earlier, so
    -- one probe per row decides). It looks ahead: the never-delivered rows
    -- are topped up to c_ahead, so that a group holding up a long run of
    -- rows does not hide the heads of other groups behind it from the sweep
    -- (the old buffer had every captured row in this table). Past that, a
    -- claim takes in only what it has room for, so a claim stays cheap
    -- however long a blocked backlog is.
    IF v_claimed < v_room THEN
      SELECT count(*) INTO v_n FROM (
        SELECT 1 FROM sluice.messages m
        WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND m.batch_id IS NULL
        LIMIT c_ahead) x;
      SELECT coalesce(array_agg(a.commit_lsn ORDER BY a.commit_lsn, a.commit_idx), '{}'),
             coalesce(array_agg(a.commit_idx ORDER BY a.commit_lsn, a.commit_idx), '{}'),
             coalesce(array_agg(a.group_key ORDER BY a.commit_lsn, a.commit_idx), '{}')
      INTO v_lsns, v_idxs, v_groups
      FROM sluice.admit(p_consumer, v_route.source_no, v_route.tables, v_route.group_by,
                        greatest(v_room - v_claimed, c_ahead - v_n)) a;
      IF cardinality(v_lsns) > 0 THEN
        -- Rows admitted and left waiting are never-delivered rows: the cursor
        -- must not start after them (after a rewind they may lie below rows
        -- already here).
        IF v_next_lsn IS NULL OR (v_lsns[1], v_idxs[1]) < (v_next_lsn, v_next_idx) THEN
          v_next_lsn := v_lsns[1];
          v_next_idx := v_idxs[1];
        END IF;
        SELECT coalesce(array_agg(a.lsn ORDER BY a.ord), '{}'), coalesce(array_agg(a.idx ORDER BY a.ord), '{}')
        INTO v_lsns, v_idxs
        FROM (
          SELECT a.lsn, a.idx, a.ord FROM unnest(v_lsns, v_idxs, v_groups) WITH ORDINALITY AS a(lsn, idx, grp, ord)
          WHERE a.grp IS NULL OR ((
            SELECT e.state FROM sluice.messages e
            WHERE e.consumer_id = p_consumer AND e.group_key = a.grp
              AND (e.commit_lsn, e.commit_idx) < (a.lsn, a.idx)
              AND (e.state = 0 OR (p_dead_blocks_group AND e.state = 1))
            ORDER BY e.commit_lsn DESC, e.commit_idx DESC LIMIT 1) IS NULL
            AND NOT EXISTS (SELECT 1 FROM sluice.messages r
                            WHERE r.consumer_id = p_consumer AND r.replay AND r.group_key = a.grp))
          ORDER BY a.ord LIMIT v_room - v_claimed) a;
        IF cardinality(v_lsns) > 0 THEN
          RETURN QUERY SELECT * FROM sluice.stamp_deliveries(p_consumer, v_route.source_no, v_lsns, v_idxs, v_now, p_visibility_ms);
          GET DIAGNOSTICS v_n = ROW_COUNT;
          v_claimed := v_claimed + v_n;
        END IF;
      END IF;
    END IF;
  END IF;

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

-- 0005's webhook claim with admission (before new batches are formed, as many
-- log rows as the batches could take) and payloads read from the log.
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
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
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
  v_want := CASE WHEN v_pass = 1 THEN (p_batches - v_batches) * p_batch_size + 100 ELSE c_ahead END;
  SELECT count(*) INTO v_rows FROM (
    SELECT 1 FROM sluice.messages m
    WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND m.batch_id IS NULL
    LIMIT v_want) x;
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
      SELECT o.batch_id, 1, v_now, o.token, o.commit_lsn, o.commit_idx, o.group_key, l.payload, NULL::timestamptz
      FROM oldest o
      JOIN sluice.log l ON l.source_no = v_route.source_no AND l.commit_lsn = o.commit_lsn AND l.commit_idx = o.commit_idx
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
        SELECT v_batch, 1, v_now, v_token, k.lsn, k.idx, k.grp, l.payload, NULL::timestamptz
        FROM unnest(v_lsns, v_idxs, v_groups) WITH ORDINALITY AS k(lsn, idx, grp, ord)
        JOIN sluice.log l ON l.source_no = v_route.source_no AND l.commit_lsn = k.lsn AND l.commit_idx = k.idx
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
END $$;

-- Rewind: the consumer's changes from (p_lsn, p_idx) on are delivered again,
-- in order per group, while everything else goes on. Under the claim lock:
--   * the position moves back to just before the point (never forward: a
--     consumer behind the point keeps its backlog);
--   * a row at or after the point in flight (pull) or in a batch out
--     (webhook) is marked replay: when that delivery ends it waits again
--     instead of going, and until then its group is held (the rewound
--     changes before it must not overtake it);
--   * rows waiting at or after the point (taken in ahead) and dead letters
--     there are removed: admission takes them in again, in commit order.
-- Returns how many changes of the consumer's tables the log holds from the
-- point on (what will be delivered again, beside rows still waiting).
CREATE FUNCTION sluice.rewind_consumer(p_consumer uuid, p_lsn bigint, p_idx integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_route record;
  v_count bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  SELECT * INTO v_route FROM sluice.consumer_route(p_consumer);
  IF v_route.source_no IS NULL THEN
    RETURN NULL;
  END IF;
  UPDATE sluice.messages m SET replay = true
  WHERE m.consumer_id = p_consumer AND m.state = 0 AND NOT m.replay AND m.delivery_token IS NOT NULL
    AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  UPDATE sluice.messages m SET replay = true
  FROM (SELECT k.lsn, k.idx FROM sluice.webhook_batches b, unnest(b.lsns, b.idxs) AS k(lsn, idx)
        WHERE b.consumer_id = p_consumer) k
  WHERE m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx AND m.state = 0 AND NOT m.replay
    AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  -- Rows waiting at or after the point (taken in ahead, never delivered, in no
  -- batch) go: admission takes them in again in commit order, after the
  -- rewound changes of their group before them. Kept, one would head its
  -- group now and overtake those.
  DELETE FROM sluice.messages m
  WHERE m.consumer_id = p_consumer AND m.state = 0 AND m.delivery_token IS NULL AND NOT m.replay
    AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  -- Dead letters at or after the point go too: delivered again like the rest.
  DELETE FROM sluice.messages m
  WHERE m.consumer_id = p_consumer AND m.state = 1 AND (m.commit_lsn, m.commit_idx) >= (p_lsn, p_idx);
  -- The position is the last key taken in; just before the point is
  -- (p_lsn, p_idx - 1) (idx -1 precedes every change of a commit).
  UPDATE sluice.consumer_positions p SET commit_lsn = p_lsn, commit_idx = p_idx - 1, updated_at = now()
  WHERE p.consumer_id = p_consumer AND (p.commit_lsn, p.commit_idx) >= (p_lsn, p_idx);
  DELETE FROM sluice.claim_cursors c WHERE c.consumer_id = p_consumer;
  SELECT count(*) INTO v_count FROM sluice.log l
  WHERE l.source_no = v_route.source_no AND (l.commit_lsn, l.commit_idx) >= (p_lsn, p_idx)
    AND (l.schema_name || '.' || l.table_name) = ANY (v_route.tables);
  PERFORM pg_notify('sluice_messages', p_consumer::text);
  RETURN v_count;
END $$;

-- The end of a delivery that a rewind marked (replay): the pull ack of these
-- keys with their tokens, or (p_tokens NULL) a webhook batch answered, retried
-- elsewhere or dead-lettered, for those of its rows no batch names any more.
-- A row past the consumer's position is deleted: admission takes it in again,
-- in commit order after the rewound changes of its group before it. One at or
-- before the position (admission already met it) waits again, never
-- delivered, at its place. Under the claim lock: the position must not move
-- while this decides. Returns how many rows it settled.
CREATE FUNCTION sluice.end_replays(p_consumer uuid, p_lsns bigint[], p_idxs integer[], p_tokens integer[])
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_n integer;
BEGIN
  PERFORM pg_advisory_xact_lock(736001, hashtext(p_consumer::text));
  WITH ended AS (
    SELECT m.commit_lsn, m.commit_idx,
           (m.commit_lsn, m.commit_idx) > (p.commit_lsn, p.commit_idx) AS ahead
    FROM unnest(p_lsns, p_idxs, coalesce(p_tokens, array_fill(NULL::integer, ARRAY[cardinality(p_lsns)])))
      AS k(lsn, idx, token)
    JOIN sluice.messages m ON m.consumer_id = p_consumer AND m.commit_lsn = k.lsn AND m.commit_idx = k.idx
    JOIN sluice.consumer_positions p ON p.consumer_id = p_consumer
    WHERE m.replay AND m.state = 0
      AND CASE WHEN p_tokens IS NULL
        THEN NOT EXISTS (SELECT 1 FROM sluice.webhook_batches b
                         WHERE b.consumer_id = p_consumer AND k.lsn = ANY (b.lsns)
                           AND (k.lsn, k.idx) IN (SELECT u.l, u.i FROM unnest(b.lsns, b.idxs) AS u(l, i)))
        ELSE m.delivery_token = k.token END
  ), gone AS (
    DELETE FROM sluice.messages m USING ended e
    WHERE e.ahead AND m.consumer_id = p_consumer AND m.commit_lsn = e.commit_lsn AND m.commit_idx = e.commit_idx
    RETURNING 1
  ), back AS (
    UPDATE sluice.messages m SET delivery_token = NULL, visible_at = '-infinity', deliver_count = 0, replay = false
    FROM ended e
    WHERE NOT e.ahead AND m.consumer_id = p_consumer AND m.commit_lsn = e.commit_lsn AND m.commit_idx = e.commit_idx
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM back) INTO v_n;
  IF v_n > 0 THEN
    -- Rows waiting again may lie below the claim cursor.
    DELETE FROM sluice.claim_cursors c WHERE c.consumer_id = p_consumer;
    PERFORM pg_notify('sluice_messages', p_consumer::text);
  END IF;
  RETURN v_n;
END $$;
