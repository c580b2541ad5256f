-- no-transaction
-- Block events belong to no service. Outside a transaction with the schema changes: the
-- events table is scanned with only the changed rows locked, and writes go on meanwhile.
UPDATE events SET service_id = '' WHERE subject_kind = 'block' AND service_id <> '';
UPDATE event_inbox SET service_id = '' WHERE subject_kind = 'block' AND service_id <> '';
