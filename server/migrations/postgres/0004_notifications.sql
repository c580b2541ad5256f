-- Notifications: messages that are not codes, sent under the country rules. Each row is its
-- own outbox entry: due at due_at_ms (later when a rule deferred it), claimed by a dispatcher
-- like a verification's message. Their events use the notification id as the events' subject
-- (the verification_id column).
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    to_e164 TEXT NOT NULL,
    region_code TEXT NOT NULL,
    time_zones TEXT NOT NULL,
    category TEXT NOT NULL,
    program_id TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    sender TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    carrier TEXT NOT NULL,
    fallback_carriers TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    due_at_ms BIGINT NOT NULL,
    claim_token TEXT,
    claim_expires_at_ms BIGINT,
    carrier_message_id TEXT,
    detail TEXT NOT NULL DEFAULT '',
    decision TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT UNIQUE,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (status, due_at_ms);
CREATE INDEX notifications_by_carrier_message_id ON notifications (carrier, carrier_message_id);
CREATE INDEX notifications_by_claim_token ON notifications (claim_token) WHERE claim_token IS NOT NULL;
