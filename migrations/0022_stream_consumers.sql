-- Consumers of streams. A consumer's source_name names the log it reads: a
-- source's or a stream's (their names never clash). A stream's messages are
-- stored with schema_name '' and table_name the stream's name
-- (src/streams/queries.ts), so to the walks and admissions, which select by
-- "schema.table", a stream is one table named ".<stream>": the route gives a
-- stream consumer that one table. Subject patterns are matched in the gateway
-- (src/pipeline/route/subjects.ts), on the filtered path a where filter takes;
-- a consumer of every subject (">") needs no filter.
-- A source's consumer may have subject patterns too, matched against its
-- changes' subjects (<database>.<schema>.<table>.<action>).
CREATE OR REPLACE FUNCTION sluice.consumer_route(p_consumer uuid,
  OUT source_no integer, OUT tables text[], OUT group_by jsonb, OUT active boolean, OUT actions text[],
  OUT filtered boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT coalesce(s.log_no, st.log_no),
         CASE WHEN st.log_no IS NOT NULL THEN ARRAY['.' || st.name]
              ELSE ARRAY(SELECT jsonb_array_elements_text(c.config -> 'tables')) END,
         CASE WHEN c.config -> 'group_by' IS NULL OR c.config -> 'group_by' IN ('true'::jsonb, 'null'::jsonb)
              THEN NULL ELSE c.config -> 'group_by' END,
         c.state = 'active',
         CASE WHEN jsonb_typeof(c.config -> 'filter' -> 'actions') = 'array'
              THEN ARRAY(SELECT jsonb_array_elements_text(c.config -> 'filter' -> 'actions')) END,
         coalesce(jsonb_typeof(c.config -> 'filter' -> 'where') = 'object'
                  AND c.config -> 'filter' -> 'where' <> '{}'::jsonb, false)
         OR coalesce(jsonb_typeof(c.config -> 'subjects') = 'array' AND NOT c.config -> 'subjects' @> '[">"]'::jsonb, false)
  INTO source_no, tables, group_by, active, actions, filtered
  FROM sluice.consumers c
  LEFT JOIN sluice.sources s ON s.name = c.source_name
  LEFT JOIN sluice.streams st ON st.name = c.source_name AND s.log_no IS NULL
  WHERE c.id = p_consumer;
END $$;
