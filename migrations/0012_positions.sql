-- Sources get a `retention` setting (issue 10): how long and how much of their
-- captured changes sluice.log keeps. The config loader writes it into every
-- source it stores, defaults included; sources stored before it get the
-- defaults here (7 days, 20 GiB: DEFAULTS.retention in src/config/schema.ts),
-- so every stored source has one and applying an unchanged config file after
-- the upgrade changes nothing.
--
-- Where consumers start and rewinds go are written by src/log/positions.ts
-- into sluice.consumer_positions (0010); they need no new SQL.
UPDATE sluice.sources
SET config = config || jsonb_build_object('retention', jsonb_build_object('max_age_ms', 604800000, 'max_size_bytes', 21474836480))
WHERE NOT config ? 'retention';
