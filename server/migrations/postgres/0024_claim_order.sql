-- Dispatchers claim due messages in order of priority, then due time: this index holds
-- exactly the claimable messages in that order, so a claim reads the first few due ones of
-- each priority instead of sorting every due message (a campaign keeps thousands queued).
CREATE INDEX messages_claimable ON messages (priority, due_at_ms, id)
    WHERE status IN ('scheduled', 'queued');
