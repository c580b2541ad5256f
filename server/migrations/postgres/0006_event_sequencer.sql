-- Cursors in commit order without a global lock: transactions write their events to
-- `event_inbox` (no lock, any number at once); a sequencer, one at a time under an advisory
-- lock, moves the committed ones into `events` and gives them cursors above every cursor given
-- before. A watcher resuming after cursor N can then never find an event committed late with
-- a cursor at or below N.
CREATE TABLE event_inbox (
    id BIGSERIAL PRIMARY KEY,
    event_type TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    message_id TEXT,
    channel TEXT,
    carrier TEXT,
    delivery_status TEXT,
    subject_status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL
);
-- The sequencer gives cursors itself; nothing takes values from the old sequence any more.
ALTER TABLE events ALTER COLUMN cursor DROP DEFAULT;
