-- Status webhooks. Each service's webhook follows the event log from a cursor (how far its
-- events went out), held by one server at a time (a lease). Events whose delivery failed wait
-- in webhook_retries, each with its attempts and next try; later events of the same subject
-- wait behind them (attempts 0), so a subject's events arrive in order.
CREATE TABLE webhook_cursors (
    service_id TEXT PRIMARY KEY,
    cursor BIGINT NOT NULL,
    holder TEXT,
    -- The URL it sends to; empty once the service's webhook was turned off (turned on again,
    -- it starts from the latest event rather than sending what happened meanwhile).
    url TEXT NOT NULL DEFAULT '',
    lease_until_ms BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE webhook_retries (
    service_id TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    subject_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    first_failed_at_ms BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (service_id, cursor)
);
CREATE INDEX webhook_retries_by_subject ON webhook_retries (service_id, subject_id, cursor);
