-- Fallback workflows: each verification runs a workflow of steps (e.g. "sms(30s) -> voice(1m)")
-- chosen by a strategy; the dispatcher runs the next step when the current one's deadline
-- passes without an approved check, or when its message fails.
ALTER TABLE verifications ADD COLUMN strategy TEXT NOT NULL DEFAULT 'ordered';
ALTER TABLE verifications ADD COLUMN workflow TEXT NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN step BIGINT NOT NULL DEFAULT 0;
-- When the current step gives way to the next; NULL when no next step is due.
ALTER TABLE verifications ADD COLUMN step_deadline_ms BIGINT;
-- Why the step ended early (its message failed); empty while it runs.
ALTER TABLE verifications ADD COLUMN step_failure TEXT NOT NULL DEFAULT '';
ALTER TABLE verifications ADD COLUMN decision TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN step BIGINT NOT NULL DEFAULT 0;
CREATE INDEX verifications_step_due ON verifications (step_deadline_ms) WHERE status = 'pending' AND step_deadline_ms IS NOT NULL;
-- The program (configured [[programs]]) a code is sent for; its registrations go with the message.
ALTER TABLE verifications ADD COLUMN program_id TEXT NOT NULL DEFAULT '';
