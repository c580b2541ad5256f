-- Conversion statistics, rolled up from the event log as it grows (see server/src/rollup.rs),
-- so that GetConversionStats reads a few rows per hour or day instead of every verification.
--
-- Each row counts the verifications created in one period (an hour in conversion_hourly, a UTC
-- day in conversion_daily) of one service and country, with the channel and carrier of the
-- message concerned: for a verification (verifications, approved, approvals_*), its first
-- message that reached a carrier (empty when none did); for a message (sent, delivered,
-- failed, fallback_*, cost_micros: millionths of the route's declared cost), the message
-- itself. A verification is counted once it ended (approved, expired, canceled or out of
-- checks). approvals_Ns counts approvals that came more than the previous bound and at most N
-- seconds after the first message.
--
-- Events keep the message's status before the event (previous_delivery_status), so that a
-- message is counted as sent once however many events it has (an answer that comes after a
-- message was recorded maybe sent, for one). Events recorded before this column are read as
-- if the message had not been sent before.
ALTER TABLE events ADD COLUMN previous_delivery_status TEXT;
ALTER TABLE event_inbox ADD COLUMN previous_delivery_status TEXT;

CREATE TABLE conversion_hourly (
    period_ms BIGINT NOT NULL,
    service_id TEXT NOT NULL,
    region TEXT NOT NULL,
    channel TEXT NOT NULL,
    carrier TEXT NOT NULL,
    verifications BIGINT NOT NULL DEFAULT 0,
    approved BIGINT NOT NULL DEFAULT 0,
    sent BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    fallback_sent BIGINT NOT NULL DEFAULT 0,
    fallback_approved BIGINT NOT NULL DEFAULT 0,
    cost_micros BIGINT NOT NULL DEFAULT 0,
    costed_sent BIGINT NOT NULL DEFAULT 0,
    approvals_2s BIGINT NOT NULL DEFAULT 0,
    approvals_4s BIGINT NOT NULL DEFAULT 0,
    approvals_6s BIGINT NOT NULL DEFAULT 0,
    approvals_8s BIGINT NOT NULL DEFAULT 0,
    approvals_10s BIGINT NOT NULL DEFAULT 0,
    approvals_12s BIGINT NOT NULL DEFAULT 0,
    approvals_15s BIGINT NOT NULL DEFAULT 0,
    approvals_20s BIGINT NOT NULL DEFAULT 0,
    approvals_25s BIGINT NOT NULL DEFAULT 0,
    approvals_30s BIGINT NOT NULL DEFAULT 0,
    approvals_40s BIGINT NOT NULL DEFAULT 0,
    approvals_50s BIGINT NOT NULL DEFAULT 0,
    approvals_60s BIGINT NOT NULL DEFAULT 0,
    approvals_90s BIGINT NOT NULL DEFAULT 0,
    approvals_120s BIGINT NOT NULL DEFAULT 0,
    approvals_180s BIGINT NOT NULL DEFAULT 0,
    approvals_240s BIGINT NOT NULL DEFAULT 0,
    approvals_300s BIGINT NOT NULL DEFAULT 0,
    approvals_450s BIGINT NOT NULL DEFAULT 0,
    approvals_600s BIGINT NOT NULL DEFAULT 0,
    approvals_900s BIGINT NOT NULL DEFAULT 0,
    approvals_1800s BIGINT NOT NULL DEFAULT 0,
    approvals_3600s BIGINT NOT NULL DEFAULT 0,
    approvals_over_3600s BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (period_ms, service_id, region, channel, carrier)
);

-- The same columns, key and defaults.
CREATE TABLE conversion_daily (LIKE conversion_hourly INCLUDING ALL);

-- How far the rollup went in the event log; replicas advance it with compare-and-set, so an
-- event is counted once whichever replica rolls it up.
CREATE TABLE rollup_cursors (
    name TEXT PRIMARY KEY,
    cursor BIGINT NOT NULL
);
INSERT INTO rollup_cursors (name, cursor) VALUES ('conversion', 0);
