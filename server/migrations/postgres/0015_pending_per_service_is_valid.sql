-- Stops here if the index before was left invalid by an interrupted build: the next
-- migration drops the index it replaces, and nothing would then keep one pending
-- verification per number and service. Drop the invalid index and start verifyd again.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = 'verifications_one_pending_per_service_number' AND i.indisvalid
    ) THEN
        RAISE EXCEPTION 'index verifications_one_pending_per_service_number is not valid (an interrupted build): DROP INDEX verifications_one_pending_per_service_number; then start verifyd again';
    END IF;
END
$$;
