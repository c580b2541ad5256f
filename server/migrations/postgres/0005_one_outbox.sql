-- One outbox for every kind of message, keyed by a typed subject (a verification or a
-- notification); events name their subject the same way. Dispatchers hold messages under a
-- lease renewed by a heartbeat (`claimed_by` names the dispatcher), so the messages of one that
-- died are taken over in seconds. Receipts that arrive before their message's submission is
-- recorded wait in `early_receipts`.

ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_verification_id_fkey;
ALTER TABLE messages RENAME COLUMN verification_id TO subject_id;
ALTER TABLE messages ADD COLUMN subject_kind TEXT NOT NULL DEFAULT 'verification';
ALTER TABLE messages ALTER COLUMN subject_kind DROP DEFAULT;
ALTER TABLE messages ADD COLUMN claimed_by TEXT;
-- Hand-offs to a carrier so far; an outcome settles only the attempt it belongs to.
ALTER TABLE messages ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
-- A message left 'sending' by the previous version may have reached its carrier: maybe sent.
UPDATE messages SET status = 'maybe_sent' WHERE status = 'sending';
ALTER TABLE messages DROP COLUMN claim_token, DROP COLUMN claim_expires_at_ms;
DROP INDEX IF EXISTS messages_by_verification;
CREATE INDEX messages_by_subject ON messages (subject_id, created_at_ms);
CREATE INDEX messages_by_holder ON messages (claimed_by) WHERE claimed_by IS NOT NULL;

INSERT INTO messages (id, subject_kind, subject_id, channel, carrier, fallback_carriers, step, status,
                      due_at_ms, claimed_by, carrier_message_id, detail, created_at_ms, updated_at_ms)
SELECT 'msg_' || substr(id, 4), 'notification', id, channel, carrier, fallback_carriers, 0,
       CASE status WHEN 'sending' THEN 'maybe_sent' ELSE status END,
       due_at_ms, NULL, carrier_message_id, detail, created_at_ms, updated_at_ms
FROM notifications;
ALTER TABLE notifications
    DROP COLUMN channel, DROP COLUMN carrier, DROP COLUMN fallback_carriers, DROP COLUMN status,
    DROP COLUMN due_at_ms, DROP COLUMN claim_token, DROP COLUMN claim_expires_at_ms,
    DROP COLUMN carrier_message_id, DROP COLUMN detail, DROP COLUMN updated_at_ms;

ALTER TABLE events RENAME COLUMN verification_id TO subject_id;
ALTER TABLE events RENAME COLUMN verification_status TO subject_status;
ALTER TABLE events ADD COLUMN subject_kind TEXT NOT NULL DEFAULT 'verification';
ALTER TABLE events ALTER COLUMN subject_kind DROP DEFAULT;
UPDATE events
SET subject_kind = 'notification',
    message_id = 'msg_' || substr(message_id, 4),
    subject_status = CASE
        WHEN event_type = 'notification_scheduled' THEN 'scheduled'
        WHEN delivery_status IN ('queued', 'sending') THEN 'queued'
        WHEN delivery_status = 'canceled' THEN 'failed'
        ELSE delivery_status END
WHERE subject_id LIKE 'nt\_%' ESCAPE '\';
DROP INDEX IF EXISTS events_by_verification;
CREATE INDEX events_by_subject ON events (subject_id, cursor);

-- One row per dispatcher: a dispatcher whose heartbeat is older than the lease (or whose
-- process on this host is gone) is dead, and its messages are taken over.
CREATE TABLE dispatcher_workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL
);

-- Receipts whose message is not known as submitted yet, under every id they may be known by
-- (`receipt_id` groups them); applied when the submission is recorded, forgotten after a while.
CREATE TABLE early_receipts (
    id BIGSERIAL PRIMARY KEY,
    receipt_id TEXT NOT NULL,
    carrier TEXT NOT NULL,
    carrier_message_id TEXT NOT NULL,
    message_id TEXT,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX early_receipts_by_carrier_id ON early_receipts (carrier, carrier_message_id);
CREATE INDEX early_receipts_by_message ON early_receipts (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX early_receipts_by_age ON early_receipts (received_at_ms);

-- Messages the previous version left 'sending' (claimed, perhaps handed to their carrier) are
-- maybe sent: say so, with an event, so that clients see why.
UPDATE messages
SET detail = 'verifyd was upgraded while this message was being handed to ' || carrier || '; not sent again: the carrier may have it'
WHERE status = 'maybe_sent';
INSERT INTO events (event_type, subject_kind, subject_id, message_id, channel, carrier, delivery_status, subject_status, detail, created_at_ms)
SELECT 'message_maybe_sent', m.subject_kind, m.subject_id, m.id, m.channel, m.carrier, 'maybe_sent',
       COALESCE(v.status, 'maybe_sent'), m.detail, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)
FROM messages m LEFT JOIN verifications v ON m.subject_kind = 'verification' AND v.id = m.subject_id
WHERE m.status = 'maybe_sent'
ORDER BY m.id;
