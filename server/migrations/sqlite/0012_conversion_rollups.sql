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

CREATE TABLE conversion_hourly (
    period_ms INTEGER NOT NULL,
    service_id TEXT NOT NULL,
    region TEXT NOT NULL,
    channel TEXT NOT NULL,
    carrier TEXT NOT NULL,
    verifications INTEGER NOT NULL DEFAULT 0,
    approved INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    fallback_sent INTEGER NOT NULL DEFAULT 0,
    fallback_approved INTEGER NOT NULL DEFAULT 0,
    cost_micros INTEGER NOT NULL DEFAULT 0,
    costed_sent INTEGER NOT NULL DEFAULT 0,
    approvals_2s INTEGER NOT NULL DEFAULT 0,
    approvals_4s INTEGER NOT NULL DEFAULT 0,
    approvals_6s INTEGER NOT NULL DEFAULT 0,
    approvals_8s INTEGER NOT NULL DEFAULT 0,
    approvals_10s INTEGER NOT NULL DEFAULT 0,
    approvals_12s INTEGER NOT NULL DEFAULT 0,
    approvals_15s INTEGER NOT NULL DEFAULT 0,
    approvals_20s INTEGER NOT NULL DEFAULT 0,
    approvals_25s INTEGER NOT NULL DEFAULT 0,
    approvals_30s INTEGER NOT NULL DEFAULT 0,
    approvals_40s INTEGER NOT NULL DEFAULT 0,
    approvals_50s INTEGER NOT NULL DEFAULT 0,
    approvals_60s INTEGER NOT NULL DEFAULT 0,
    approvals_90s INTEGER NOT NULL DEFAULT 0,
    approvals_120s INTEGER NOT NULL DEFAULT 0,
    approvals_180s INTEGER NOT NULL DEFAULT 0,
    approvals_240s INTEGER NOT NULL DEFAULT 0,
    approvals_300s INTEGER NOT NULL DEFAULT 0,
    approvals_450s INTEGER NOT NULL DEFAULT 0,
    approvals_600s INTEGER NOT NULL DEFAULT 0,
    approvals_900s INTEGER NOT NULL DEFAULT 0,
    approvals_1800s INTEGER NOT NULL DEFAULT 0,
    approvals_3600s INTEGER NOT NULL DEFAULT 0,
    approvals_over_3600s INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (period_ms, service_id, region, channel, carrier)
);

CREATE TABLE conversion_daily (
    period_ms INTEGER NOT NULL,
    service_id TEXT NOT NULL,
    region TEXT NOT NULL,
    channel TEXT NOT NULL,
    carrier TEXT NOT NULL,
    verifications INTEGER NOT NULL DEFAULT 0,
    approved INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    fallback_sent INTEGER NOT NULL DEFAULT 0,
    fallback_approved INTEGER NOT NULL DEFAULT 0,
    cost_micros INTEGER NOT NULL DEFAULT 0,
    costed_sent INTEGER NOT NULL DEFAULT 0,
    approvals_2s INTEGER NOT NULL DEFAULT 0,
    approvals_4s INTEGER NOT NULL DEFAULT 0,
    approvals_6s INTEGER NOT NULL DEFAULT 0,
    approvals_8s INTEGER NOT NULL DEFAULT 0,
    approvals_10s INTEGER NOT NULL DEFAULT 0,
    approvals_12s INTEGER NOT NULL DEFAULT 0,
    approvals_15s INTEGER NOT NULL DEFAULT 0,
    approvals_20s INTEGER NOT NULL DEFAULT 0,
    approvals_25s INTEGER NOT NULL DEFAULT 0,
    approvals_30s INTEGER NOT NULL DEFAULT 0,
    approvals_40s INTEGER NOT NULL DEFAULT 0,
    approvals_50s INTEGER NOT NULL DEFAULT 0,
    approvals_60s INTEGER NOT NULL DEFAULT 0,
    approvals_90s INTEGER NOT NULL DEFAULT 0,
    approvals_120s INTEGER NOT NULL DEFAULT 0,
    approvals_180s INTEGER NOT NULL DEFAULT 0,
    approvals_240s INTEGER NOT NULL DEFAULT 0,
    approvals_300s INTEGER NOT NULL DEFAULT 0,
    approvals_450s INTEGER NOT NULL DEFAULT 0,
    approvals_600s INTEGER NOT NULL DEFAULT 0,
    approvals_900s INTEGER NOT NULL DEFAULT 0,
    approvals_1800s INTEGER NOT NULL DEFAULT 0,
    approvals_3600s INTEGER NOT NULL DEFAULT 0,
    approvals_over_3600s INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (period_ms, service_id, region, channel, carrier)
);

-- How far the rollup went in the event log; replicas advance it with compare-and-set, so an
-- event is counted once whichever replica rolls it up.
CREATE TABLE rollup_cursors (
    name TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL
);
INSERT INTO rollup_cursors (name, cursor) VALUES ('conversion', 0);
