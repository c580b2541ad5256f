-- Abuse defense: the prefix each verification's number counts under (the number without its
-- last digits, as the rate limits configure it), so that the limits on a prefix and the
-- pumping guard read a prefix's codes by equality on an index. Adding the column is quick;
-- the next two migrations fill it in and index it outside a transaction, so that a large
-- table is not locked meanwhile.
ALTER TABLE verifications ADD COLUMN number_prefix TEXT;
