-- The W3C traceparent of the request that queued each message (when traces are exported), so
-- that the dispatcher's send, the carrier's call and the receipt continue the request's trace.
ALTER TABLE messages ADD COLUMN trace_parent TEXT;
