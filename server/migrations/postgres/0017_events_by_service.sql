-- no-transaction
-- A service's events in log order (WatchEvents of a service's key).
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_by_service ON events (service_id, cursor);
