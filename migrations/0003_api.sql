-- API tokens for the management and pull APIs (the bootstrap admin token comes
-- from the environment and is never stored). Only the SHA-256 digest of a token
-- is kept, so a copy of this table grants nothing; requests look tokens up by
-- that digest. Revoking deletes the row.
CREATE TABLE sluice.api_tokens (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text NOT NULL,
  token_hash  bytea NOT NULL UNIQUE,
  -- The token's first characters, so people can tell tokens apart in a list.
  hint        text NOT NULL,
  -- NULL: an admin token. Otherwise the consumer names whose pull routes it may call.
  consumers   text[],
  created_at  timestamptz NOT NULL DEFAULT now()
);
