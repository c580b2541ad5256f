-- Carriers still to try, in order, when the current one refuses a message for now (failover).
ALTER TABLE messages ADD COLUMN fallback_carriers TEXT NOT NULL DEFAULT '';
