-- no-transaction
-- Verifications pending or started in the last day get the default prefix (the number
-- without its last 3 digits); older ones no rule reads. Outside a transaction: only the rows
-- changed are locked, and only while this statement runs.
UPDATE verifications SET number_prefix = substr(to_e164, 1, greatest(length(to_e164) - 3, 5))
WHERE number_prefix IS NULL
  AND (status = 'pending' OR created_at_ms >= (extract(epoch FROM now()) * 1000)::bigint - 86400000);
