-- no-transaction
-- A service's verifications newest first (ids are time-ordered), for ListVerifications with a
-- service's key. Built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS verifications_by_service ON verifications (service_id, id);
