-- A service's verifications and notifications newest first (ids are time-ordered), for
-- ListVerifications and ListNotifications with a service's key.
CREATE INDEX verifications_by_service ON verifications (service_id, id);
CREATE INDEX notifications_by_service ON notifications (service_id, id);
