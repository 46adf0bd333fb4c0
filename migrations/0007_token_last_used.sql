-- When each stored API token was last used, so operators can find and revoke
-- tokens nobody uses any more. Written at most once a minute per token and
-- gateway process (src/http/auth.ts), so a busy pull client costs no write per
-- request; NULL: not used since this column exists.
ALTER TABLE sluice.api_tokens ADD COLUMN last_used_at timestamptz;
