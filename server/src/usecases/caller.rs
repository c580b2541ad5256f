//! Who is asking: an admin key (or a server without keys) sees every service; a service's key
//! sees its own service only, and anything of another service is answered exactly as if it did
//! not exist (NOT_FOUND), so a key cannot even learn which ids exist elsewhere.

use super::UseCaseError;
use crate::domain::DEFAULT_SERVICE;

/// What a caller may see and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every service, blocks, and the services themselves.
    Admin,
    /// One service.
    Service(String),
}

/// The caller of a use case: the API key's name (for logs and `lifted_by`) and its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The configured name of the key; `None` on a server without keys.
    pub key_name: Option<String>,
    /// What it may see.
    pub scope: Scope,
}

impl Caller {
    /// A caller on a server without API keys: an admin.
    pub fn local() -> Caller {
        Caller {
            key_name: None,
            scope: Scope::Admin,
        }
    }

    /// An admin key's caller (benchmarks, tests).
    pub fn admin(key_name: impl Into<String>) -> Caller {
        Caller {
            key_name: Some(key_name.into()),
            scope: Scope::Admin,
        }
    }

    /// A service's key's caller.
    pub fn of_service(key_name: impl Into<String>, service_id: impl Into<String>) -> Caller {
        Caller {
            key_name: Some(key_name.into()),
            scope: Scope::Service(service_id.into()),
        }
    }

    /// Who, for `lifted_by` and logs: the key's name, or `local`.
    pub fn name(&self) -> &str {
        self.key_name.as_deref().unwrap_or("local")
    }

    /// The service a request acts on: the one it names, else the key's own (or `default` for
    /// an admin). A service's key naming another service is NOT_FOUND, as for a service that
    /// does not exist.
    pub fn service_for(&self, requested: &str) -> Result<String, UseCaseError> {
        let requested = requested.trim();
        match &self.scope {
            Scope::Admin if requested.is_empty() => Ok(DEFAULT_SERVICE.to_string()),
            Scope::Admin => Ok(requested.to_string()),
            Scope::Service(own) if requested.is_empty() || requested == own => Ok(own.clone()),
            Scope::Service(_) => Err(not_found_service(requested)),
        }
    }

    /// Whether the caller sees what belongs to `service_id`.
    pub fn sees(&self, service_id: &str) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::Service(own) => own == service_id,
        }
    }

    /// The service whose events a watch of every subject shows: `None` for all of them (an
    /// admin naming none).
    pub fn events_of(&self, requested: &str) -> Result<Option<String>, UseCaseError> {
        match (&self.scope, requested.trim()) {
            (Scope::Admin, "") => Ok(None),
            _ => self.service_for(requested).map(Some),
        }
    }

    /// Refuses a caller that is not an admin: `what` names what needs one.
    pub fn require_admin(&self, what: &str) -> Result<(), UseCaseError> {
        match &self.scope {
            Scope::Admin => Ok(()),
            Scope::Service(own) => Err(UseCaseError::PermissionDenied(format!(
                "{what} needs an admin API key (one without `service`); this key belongs to service `{own}`"
            ))),
        }
    }
}

/// NOT_FOUND for a service id.
pub(crate) fn not_found_service(id: &str) -> UseCaseError {
    UseCaseError::NotFound {
        resource: "service",
        field: "service_id",
        value: id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_key_acts_on_its_own_service_only() {
        let acme = Caller::of_service("acme-backend", "acme");
        assert_eq!(acme.service_for("").unwrap(), "acme");
        assert_eq!(acme.service_for("acme").unwrap(), "acme");
        assert!(matches!(
            acme.service_for("globex"),
            Err(UseCaseError::NotFound { .. })
        ));
        assert!(acme.sees("acme") && !acme.sees("globex") && !acme.sees(""));
        assert_eq!(acme.events_of("").unwrap().as_deref(), Some("acme"));
        assert!(matches!(
            acme.require_admin("ListBlocks"),
            Err(UseCaseError::PermissionDenied(_))
        ));
        let admin = Caller::local();
        assert_eq!(admin.service_for("").unwrap(), DEFAULT_SERVICE);
        assert_eq!(admin.service_for("globex").unwrap(), "globex");
        assert!(admin.sees("globex"));
        assert_eq!(admin.events_of("").unwrap(), None);
        assert_eq!(admin.events_of("acme").unwrap().as_deref(), Some("acme"));
        admin.require_admin("ListBlocks").unwrap();
    }
}
