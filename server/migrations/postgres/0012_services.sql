-- Services: every verification, message, notification and event belongs to one; what was
-- stored before belongs to `default` (adding a column with a constant default rewrites no
-- rows). Idempotency keys are per service. Services created through the API are kept here
-- (those of the configuration file are not).
CREATE TABLE services (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

ALTER TABLE verifications ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';
-- Autofill lines of a verification's SMS (from the request or the service's defaults).
ALTER TABLE verifications ADD COLUMN app_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN autofill_domain TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE notifications ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';

-- Block events belong to no service (blocks are the whole server's): set by the next
-- migration, outside this one's locks.
ALTER TABLE events ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE event_inbox ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';

ALTER TABLE idempotency_keys ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (service_id, idempotency_key);

ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_idempotency_key_key;
CREATE UNIQUE INDEX notifications_idempotency ON notifications (service_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
