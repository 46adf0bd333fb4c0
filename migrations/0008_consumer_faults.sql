-- Consumers whose messages cannot be claimed: a claim statement fails for them
-- (a setting stored before its maximum existed and out of a column's range, a
-- broken function...). The API and `sluice status` show such a consumer as
-- failing, with this reason, instead of active. The gateway process that saw
-- the failure writes the row (again every few seconds while it lasts); a
-- successful claim deletes it (src/buffer/faults.ts). Healthy claims write
-- nothing here.
CREATE TABLE sluice.consumer_faults (
  consumer_id uuid PRIMARY KEY REFERENCES sluice.consumers (id) ON DELETE CASCADE,
  reason      text NOT NULL,
  since       timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  instance_id text
);
