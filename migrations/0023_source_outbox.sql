-- The transactional outbox in commit order with the table changes around it.
-- Capture stores each outbox message twice: in its stream's log, for the
-- stream's consumers (when its transaction is stored whole), and in the
-- source's own log at its place among the transaction's changes (its
-- commit_lsn, and the commit_idx the decoder gave it between them), written
-- with those changes (src/streams/outbox.ts outboxLogRow), with schema_name
-- '', table_name the stream's name, action 'publish' and group_key its key.
-- A consumer of the source that names the stream in `outbox` reads those rows
-- as one more table, ".<stream>", so it is served the message after the row
-- changes before it in its transaction and before the next transaction's:
-- one log, one order.
CREATE OR REPLACE FUNCTION sluice.consumer_route(p_consumer uuid,
  OUT source_no integer, OUT tables text[], OUT group_by jsonb, OUT active boolean, OUT actions text[],
  OUT filtered boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT coalesce(s.log_no, st.log_no),
         CASE WHEN st.log_no IS NOT NULL THEN ARRAY['.' || st.name]
              ELSE ARRAY(SELECT jsonb_array_elements_text(c.config -> 'tables'))
                   || ARRAY(SELECT '.' || o FROM jsonb_array_elements_text(coalesce(c.config -> 'outbox', '[]'::jsonb)) o) END,
         CASE WHEN c.config -> 'group_by' IS NULL OR c.config -> 'group_by' IN ('true'::jsonb, 'null'::jsonb)
              THEN NULL ELSE c.config -> 'group_by' END,
         c.state = 'active',
         -- An actions filter selects among table changes; outbox messages pass it.
         CASE WHEN jsonb_typeof(c.config -> 'filter' -> 'actions') = 'array'
              THEN ARRAY(SELECT jsonb_array_elements_text(c.config -> 'filter' -> 'actions'))
                   || CASE WHEN jsonb_array_length(coalesce(c.config -> 'outbox', '[]'::jsonb)) > 0
                           THEN ARRAY['publish'] ELSE ARRAY[]::text[] END END,
         coalesce(jsonb_typeof(c.config -> 'filter' -> 'where') = 'object'
                  AND c.config -> 'filter' -> 'where' <> '{}'::jsonb, false)
         OR coalesce(jsonb_typeof(c.config -> 'subjects') = 'array' AND NOT c.config -> 'subjects' @> '[">"]'::jsonb, false)
  INTO source_no, tables, group_by, active, actions, filtered
  FROM sluice.consumers c
  LEFT JOIN sluice.sources s ON s.name = c.source_name
  LEFT JOIN sluice.streams st ON st.name = c.source_name AND s.log_no IS NULL
  WHERE c.id = p_consumer;
END $$;

-- The view over the log stays what it says: captured changes. Outbox
-- messages are read through their streams (and their consumers).
CREATE OR REPLACE VIEW sluice.changes AS
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
CROSS JOIN LATERAL (SELECT l.payload::jsonb AS j) m
WHERE l.action <> 'publish';
