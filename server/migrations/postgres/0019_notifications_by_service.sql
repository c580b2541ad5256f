-- no-transaction
-- A service's notifications newest first, for ListNotifications with a service's key.
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_by_service ON notifications (service_id, id);
