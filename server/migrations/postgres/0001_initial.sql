-- Verifications, their messages (the outbox) and the event log.
CREATE TABLE verifications (
    id TEXT PRIMARY KEY,
    to_e164 TEXT NOT NULL,
    region_code TEXT,
    status TEXT NOT NULL,
    channel TEXT NOT NULL,
    locale TEXT NOT NULL,
    code_length BIGINT NOT NULL,
    code_nonce BYTEA NOT NULL,
    code_check BYTEA NOT NULL,
    checks_used BIGINT NOT NULL DEFAULT 0,
    max_checks BIGINT NOT NULL,
    sends_used BIGINT NOT NULL DEFAULT 0,
    max_sends BIGINT NOT NULL,
    idempotency_key TEXT,
    classification TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX verifications_one_pending_per_number ON verifications (to_e164) WHERE status = 'pending';
CREATE INDEX verifications_by_number ON verifications (to_e164, created_at_ms);
CREATE INDEX verifications_pending_expiry ON verifications (expires_at_ms) WHERE status = 'pending';

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    verification_id TEXT NOT NULL REFERENCES verifications (id),
    channel TEXT NOT NULL,
    carrier TEXT NOT NULL,
    status TEXT NOT NULL,
    due_at_ms BIGINT NOT NULL,
    claim_token TEXT,
    claim_expires_at_ms BIGINT,
    carrier_message_id TEXT,
    detail TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX messages_due ON messages (status, due_at_ms);
CREATE INDEX messages_by_verification ON messages (verification_id, created_at_ms);
CREATE INDEX messages_by_carrier_message_id ON messages (carrier, carrier_message_id);
CREATE INDEX messages_by_claim_token ON messages (claim_token) WHERE claim_token IS NOT NULL;

CREATE TABLE events (
    cursor BIGSERIAL PRIMARY KEY,
    event_type TEXT NOT NULL,
    verification_id TEXT NOT NULL,
    message_id TEXT,
    channel TEXT,
    carrier TEXT,
    delivery_status TEXT,
    verification_status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX events_by_verification ON events (verification_id, cursor);

-- Client idempotency keys: each maps to the verification its first request created or resent.
CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    verification_id TEXT NOT NULL REFERENCES verifications (id),
    to_e164 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Facts every verifyd sharing this database must agree on (the code secret's fingerprint).
CREATE TABLE server_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
