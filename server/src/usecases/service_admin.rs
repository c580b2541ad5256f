//! Services through the API: create, read, list and change those kept in the database
//! (those of the configuration file are read-only here). Creating and changing need an admin
//! key; a service's key reads its own service only.

use std::sync::Arc;

use super::caller::not_found_service;
use super::{Caller, UseCaseError, UseCases};
use crate::clock::now_ms;
use crate::domain::service::check_service_id;
use crate::domain::{Service, ServiceError, ServiceSettings};
use crate::store::StoredService;

/// The fields UpdateService may name, as `Service` names them.
pub const UPDATABLE_FIELDS: &[&str] = &[
    "friendly_name",
    "code_length",
    "code_lifetime_seconds",
    "max_checks",
    "max_sends",
    "channels",
    "default_locale",
    "templates",
    "workflow",
    "app_hash",
    "domain",
    "webhook_url",
    "webhook_secret",
    "abuse_level",
];

/// `settings` with a new webhook secret when they have a URL and no secret.
fn with_webhook_secret(mut settings: ServiceSettings) -> ServiceSettings {
    if !settings.webhook_url.trim().is_empty() && settings.webhook_secret.is_empty() {
        settings.webhook_secret = crate::domain::webhook::WebhookSecret::generate();
    }
    settings
}

fn service_invalid(error: ServiceError) -> UseCaseError {
    UseCaseError::InvalidArgument {
        field: "service",
        reason: error.to_string(),
    }
}

impl UseCases {
    /// Stores a new service (admin keys only); its id must be free.
    pub async fn create_service(
        &self,
        caller: &Caller,
        settings: ServiceSettings,
    ) -> Result<Arc<Service>, UseCaseError> {
        caller.require_admin("CreateService")?;
        let service = with_webhook_secret(settings)
            .resolve(self.services.defaults())
            .map_err(service_invalid)?;
        let taken = || UseCaseError::AlreadyExists(format!("service `{}`", service.id));
        if self.services.is_configured(&service.id) {
            return Err(taken());
        }
        let now = now_ms();
        let stored = StoredService {
            settings: service.settings(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        let latest = self.store.latest_event_cursor().await?;
        let mut tx = self.store.begin().await?;
        let inserted = tx.insert_service(&stored).await?;
        if !inserted {
            tx.rollback().await?;
            return Err(taken());
        }
        if !service.webhook_url.is_empty() {
            // Its webhook gets every event from now on, however soon a sender takes it up.
            tx.start_webhook(&service.id, &service.webhook_url, latest)
                .await?;
        }
        tx.commit().await?;
        let service = self
            .services
            .resolve_stored(&stored)
            .ok_or_else(|| UseCaseError::internal("storage", "a stored service did not resolve"))?;
        tracing::info!(service = %service.id, by = caller.name(), "service created");
        self.services.put(service.clone());
        Ok(Arc::new(service))
    }

    /// A service: any for an admin, its own for a service's key (another is NOT_FOUND).
    pub async fn get_service(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Arc<Service>, UseCaseError> {
        check_service_id(id).map_err(|e| UseCaseError::invalid("service_id", e.reason))?;
        if !caller.sees(id) {
            return Err(not_found_service(id));
        }
        self.services
            .find(id)
            .await?
            .ok_or_else(|| not_found_service(id))
    }

    /// The services the caller sees, by id (read afresh, so one created on another replica
    /// is listed).
    pub async fn list_services(&self, caller: &Caller) -> Result<Vec<Arc<Service>>, UseCaseError> {
        self.services.reload().await?;
        Ok(self
            .services
            .all()
            .into_iter()
            .filter(|service| caller.sees(&service.id))
            .collect())
    }

    /// Changes a stored service (admin keys only): the fields named in `fields` take their
    /// values from `settings`, or every field does when `fields` is empty. Verifications
    /// already started keep what they started with.
    pub async fn update_service(
        &self,
        caller: &Caller,
        settings: ServiceSettings,
        fields: &[String],
    ) -> Result<Arc<Service>, UseCaseError> {
        caller.require_admin("UpdateService")?;
        let id = settings.id.clone();
        check_service_id(&id).map_err(|e| UseCaseError::invalid("service.id", e.reason))?;
        if let Some(unknown) = fields
            .iter()
            .find(|field| !UPDATABLE_FIELDS.contains(&field.as_str()))
        {
            return Err(UseCaseError::invalid(
                "update_fields",
                format!(
                    "`{unknown}` is not a field that changes; use {}",
                    UPDATABLE_FIELDS.join(", ")
                ),
            ));
        }
        if self.services.is_configured(&id) {
            return Err(UseCaseError::precondition(
                "service.id",
                format!(
                    "service `{id}` comes from the configuration file; change it there and restart"
                ),
            ));
        }
        let latest = self.store.latest_event_cursor().await?;
        let mut tx = self.store.begin().await?;
        let Some(mut stored) = tx.lock_service(&id).await? else {
            tx.rollback().await?;
            return Err(not_found_service(&id));
        };
        stored.settings = with_webhook_secret(merged(&stored.settings, settings, fields));
        let service = stored
            .settings
            .resolve(self.services.defaults())
            .map_err(service_invalid)?;
        stored.settings = service.settings();
        stored.updated_at_ms = now_ms();
        tx.save_service(&stored).await?;
        if !service.webhook_url.is_empty() {
            tx.start_webhook(&service.id, &service.webhook_url, latest)
                .await?;
        }
        tx.commit().await?;
        let service = self
            .services
            .resolve_stored(&stored)
            .ok_or_else(|| UseCaseError::internal("storage", "a stored service did not resolve"))?;
        tracing::info!(service = %id, by = caller.name(), ?fields, "service changed");
        self.services.put(service.clone());
        Ok(Arc::new(service))
    }
}

/// A service's status webhook: its URL, how far its events went, and the deliveries that
/// failed.
#[derive(Debug, Clone)]
pub struct WebhookState {
    /// The URL; empty when the service has none.
    pub url: String,
    /// Every event up to this cursor went out or is among `failed`.
    pub delivered_through: i64,
    /// The deliveries that failed (retrying, waiting behind one, or given up), oldest first.
    pub failed: Vec<crate::store::WebhookRetry>,
}

impl UseCases {
    /// The state of a service's status webhook (the caller's own service, or for an admin the
    /// one named).
    pub async fn webhook_deliveries(
        &self,
        caller: &Caller,
        service_id: &str,
        limit: u32,
    ) -> Result<WebhookState, UseCaseError> {
        let service = self.service_for(caller, service_id).await?;
        let limit = match limit {
            0 => 100,
            n => n.min(1000),
        };
        let (cursor, failed) = self.store.webhook_deliveries(&service.id, limit).await?;
        Ok(WebhookState {
            url: service.webhook_url.clone(),
            delivered_through: cursor.unwrap_or(0),
            failed,
        })
    }
}

/// `current` with the `fields` of `new` (every field when `fields` is empty).
fn merged(current: &ServiceSettings, new: ServiceSettings, fields: &[String]) -> ServiceSettings {
    if fields.is_empty() {
        return ServiceSettings {
            id: current.id.clone(),
            ..new
        };
    }
    let mut merged = current.clone();
    for field in fields {
        match field.as_str() {
            "friendly_name" => merged.friendly_name = new.friendly_name.clone(),
            "code_length" => merged.code_length = new.code_length,
            "code_lifetime_seconds" => merged.code_lifetime_seconds = new.code_lifetime_seconds,
            "max_checks" => merged.max_checks = new.max_checks,
            "max_sends" => merged.max_sends = new.max_sends,
            "channels" => merged.channels = new.channels.clone(),
            "default_locale" => merged.default_locale = new.default_locale.clone(),
            "templates" => merged.templates = new.templates.clone(),
            "workflow" => merged.workflow = new.workflow.clone(),
            "app_hash" => merged.app_hash = new.app_hash.clone(),
            "domain" => merged.domain = new.domain.clone(),
            "webhook_url" => merged.webhook_url = new.webhook_url.clone(),
            "webhook_secret" => merged.webhook_secret = new.webhook_secret.clone(),
            "abuse_level" => merged.abuse_level = new.abuse_level.clone(),
            _ => {}
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_fields_change_and_the_others_stay() {
        let current = ServiceSettings {
            id: "acme".into(),
            friendly_name: "Acme".into(),
            code_length: Some(6),
            workflow: "sms(30s) -> voice(60s)".into(),
            ..ServiceSettings::default()
        };
        let new = ServiceSettings {
            id: "acme".into(),
            friendly_name: "Acme Shop".into(),
            ..ServiceSettings::default()
        };
        let changed = merged(&current, new.clone(), &["friendly_name".into()]);
        assert_eq!(changed.friendly_name, "Acme Shop");
        assert_eq!(changed.code_length, Some(6));
        assert_eq!(changed.workflow, "sms(30s) -> voice(60s)");
        let replaced = merged(&current, new, &[]);
        assert_eq!(replaced.code_length, None);
        assert_eq!(replaced.workflow, "");
    }
}
