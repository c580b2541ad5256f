-- Abuse defense: the prefix each verification's number counts under (the number without its
-- last digits, as the rate limits configure it), so that the limits on a prefix and the
-- pumping guard read a prefix's codes by equality on an index. Verifications of the last day
-- and those pending get the default prefix (the number without its last 3 digits); older
-- ones no rule reads.
ALTER TABLE verifications ADD COLUMN number_prefix TEXT;
UPDATE verifications SET number_prefix = substr(to_e164, 1, max(length(to_e164) - 3, 5))
WHERE status = 'pending' OR created_at_ms >= CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000;
CREATE INDEX verifications_by_prefix ON verifications (number_prefix, created_at_ms);
