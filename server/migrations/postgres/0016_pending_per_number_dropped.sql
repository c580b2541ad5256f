-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS verifications_one_pending_per_number;
