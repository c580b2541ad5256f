-- Abuse defense: requests counted per rate-limit bucket (`limit|value`) and time slot (a
-- sixtieth of the limit's window). Rows whose slot left every window are removed each minute.
CREATE TABLE rate_counts (
    bucket TEXT NOT NULL,
    slot_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (bucket, slot_ms)
);
