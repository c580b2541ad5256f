-- no-transaction
-- One pending verification per number and service (the same number may be verified by two
-- services at once). Built without blocking writes; the index per number goes next.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS verifications_one_pending_per_service_number
ON verifications (service_id, to_e164) WHERE status = 'pending';
