-- Campaigns: one text (per locale) sent to a list under each recipient's country rules.
-- Recipients are stored as they stream in, one narrow row each; a recipient becomes a message
-- in the outbox (subject kind 'campaign', its id named after the recipient's line, so it
-- cannot be created twice) when its turn on a route comes, and from then on the message's
-- status is the recipient's.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    program_id TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL DEFAULT '',
    bodies TEXT NOT NULL,
    default_locale TEXT NOT NULL,
    variable_names TEXT NOT NULL,
    sender TEXT NOT NULL DEFAULT '',
    senders_by_region TEXT NOT NULL DEFAULT '{}',
    start_at_ms BIGINT,
    deadline_ms BIGINT,
    landline_action TEXT NOT NULL,
    tracks_confirmation BIGINT NOT NULL,
    status TEXT NOT NULL,
    accepted BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE UNIQUE INDEX campaigns_by_key ON campaigns (service_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX campaigns_by_status ON campaigns (status);

CREATE TABLE campaign_recipients (
    campaign_id TEXT NOT NULL,
    line BIGINT NOT NULL,
    to_e164 TEXT NOT NULL,
    region_code TEXT NOT NULL,
    channel TEXT NOT NULL,
    route TEXT NOT NULL,
    locale TEXT NOT NULL DEFAULT '',
    vars TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    message_id TEXT,
    confirmed_at_ms BIGINT,
    PRIMARY KEY (campaign_id, line)
);
-- The next recipients due on a route (the carrier planned when they were taken in), in line
-- order within a due time.
CREATE INDEX campaign_recipients_due ON campaign_recipients (campaign_id, route, not_before_ms, line)
    WHERE state = 'pending';
-- A number once per campaign; confirmations name the number.
CREATE UNIQUE INDEX campaign_recipients_by_number ON campaign_recipients (campaign_id, to_e164);

CREATE TABLE campaign_rejections (
    campaign_id TEXT NOT NULL,
    line BIGINT NOT NULL,
    field TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (campaign_id, line)
);

-- Codes go first: a dispatcher claims due messages by priority (0 for codes and
-- notifications, 1 for campaigns), then by due time.
ALTER TABLE messages ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
-- The messages of a subject not yet settled by a carrier: what pausing, resuming and canceling
-- a campaign of a million recipients touch, and what tells that it is done.
CREATE INDEX messages_unsettled_by_subject ON messages (subject_id)
    WHERE status IN ('scheduled', 'queued', 'claimed', 'sending');
