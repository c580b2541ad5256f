-- Services: every verification, message, notification and event belongs to one; what was
-- stored before belongs to `default`. Idempotency keys and the one pending verification of a
-- number are per service. Services created through the API are kept here (those of the
-- configuration file are not).
CREATE TABLE services (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

ALTER TABLE verifications ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';
-- Autofill lines of a verification's SMS (from the request or the service's defaults).
ALTER TABLE verifications ADD COLUMN app_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN autofill_domain TEXT NOT NULL DEFAULT '';
DROP INDEX verifications_one_pending_per_number;
CREATE UNIQUE INDEX verifications_one_pending_per_number ON verifications (service_id, to_e164) WHERE status = 'pending';

ALTER TABLE messages ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';

-- Block events belong to no service (blocks are the whole server's).
ALTER TABLE events ADD COLUMN service_id TEXT NOT NULL DEFAULT 'default';
UPDATE events SET service_id = '' WHERE subject_kind = 'block';
CREATE INDEX events_by_service ON events (service_id, cursor);

CREATE TABLE idempotency_keys_new (
    service_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    verification_id TEXT NOT NULL REFERENCES verifications (id),
    to_e164 TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (service_id, idempotency_key)
);
INSERT INTO idempotency_keys_new (service_id, idempotency_key, verification_id, to_e164, created_at_ms)
SELECT 'default', idempotency_key, verification_id, to_e164, created_at_ms FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys;

-- The notifications' idempotency key was unique in the whole server: rebuilt, unique per service.
CREATE TABLE notifications_new (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL DEFAULT 'default',
    to_e164 TEXT NOT NULL,
    region_code TEXT NOT NULL,
    time_zones TEXT NOT NULL,
    category TEXT NOT NULL,
    program_id TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    sender TEXT NOT NULL DEFAULT '',
    decision TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,
    created_at_ms INTEGER NOT NULL
);
INSERT INTO notifications_new (id, service_id, to_e164, region_code, time_zones, category, program_id, template, body,
                               sender, decision, idempotency_key, created_at_ms)
SELECT id, 'default', to_e164, region_code, time_zones, category, program_id, template, body,
       sender, decision, idempotency_key, created_at_ms
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE UNIQUE INDEX notifications_idempotency ON notifications (service_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
