-- no-transaction
-- Built without blocking writes to verifications (a build interrupted leaves an invalid index
-- that `IF NOT EXISTS` would keep: drop it and start verifyd again).
CREATE INDEX CONCURRENTLY IF NOT EXISTS verifications_by_prefix ON verifications (number_prefix, created_at_ms);
