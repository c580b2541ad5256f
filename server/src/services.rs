//! The services one server knows: those of the configuration file (fixed while it runs) and
//! those stored through the API (read at start, then again every few seconds and whenever a
//! request names one not seen yet, so a service created on another replica is found at once
//! and a change made there is seen within [`REFRESH`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::{DEFAULT_SERVICE, Service, ServiceDefaults, ServiceSettings};
use crate::store::{SqlStore, StoreResult, StoredService};

/// How often stored services are read again.
pub const REFRESH: Duration = Duration::from_secs(5);
/// How often, at most, a request naming an unknown service makes the services be read again.
pub const MISS_RELOAD: Duration = Duration::from_secs(1);

/// The services of one server.
pub struct ServiceDirectory {
    defaults: ServiceDefaults,
    configured: HashMap<String, Arc<Service>>,
    stored: RwLock<HashMap<String, Arc<Service>>>,
    store: Arc<SqlStore>,
    /// When an unknown id last made the services be read again.
    last_miss_reload: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ServiceDirectory {
    /// The configured services (with `default`, configured or not) and those stored.
    pub async fn load(
        configured: &[ServiceSettings],
        defaults: ServiceDefaults,
        store: Arc<SqlStore>,
    ) -> Result<Arc<ServiceDirectory>, String> {
        let mut by_id = HashMap::new();
        for settings in configured {
            let mut service = settings
                .resolve(&defaults)
                .map_err(|e| format!("services `{}`: {e}", settings.id))?;
            service.configured = true;
            by_id.insert(service.id.clone(), Arc::new(service));
        }
        if !by_id.contains_key(DEFAULT_SERVICE) {
            let mut service = ServiceSettings::default_service()
                .resolve(&defaults)
                .map_err(|e| format!("service `default`: {e}"))?;
            service.configured = true;
            by_id.insert(service.id.clone(), Arc::new(service));
        }
        let directory = Arc::new(ServiceDirectory {
            defaults,
            configured: by_id,
            stored: RwLock::default(),
            store,
            last_miss_reload: std::sync::Mutex::default(),
        });
        directory
            .reload()
            .await
            .map_err(|e| format!("reading the stored services: {e}"))?;
        Ok(directory)
    }

    /// The server's `[codes]` as service defaults.
    pub fn defaults(&self) -> &ServiceDefaults {
        &self.defaults
    }

    /// A service known now (no read).
    pub fn get(&self, id: &str) -> Option<Arc<Service>> {
        if let Some(service) = self.configured.get(id) {
            return Some(Arc::clone(service));
        }
        self.stored
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// A service, read from the database when not known yet (created on another replica);
    /// the database is read for unknown ids at most every [`MISS_RELOAD`], so requests naming
    /// a service that does not exist do not each read it.
    pub async fn find(&self, id: &str) -> StoreResult<Option<Arc<Service>>> {
        if let Some(service) = self.get(id) {
            return Ok(Some(service));
        }
        self.reload_for_miss().await?;
        Ok(self.get(id))
    }

    /// Reads the services again for an id not known, unless that was done less than
    /// [`MISS_RELOAD`] ago.
    pub async fn reload_for_miss(&self) -> StoreResult<()> {
        let due = {
            let mut last = self
                .last_miss_reload
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|at| at.elapsed() >= MISS_RELOAD);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if due {
            self.reload().await?;
        }
        Ok(())
    }

    /// The longest code lifetime of any service (the rate limits read recorded codes back
    /// over it).
    pub fn longest_code_lifetime(&self) -> Duration {
        self.all()
            .iter()
            .map(|service| service.code_lifetime)
            .max()
            .unwrap_or(Duration::from_secs(self.defaults.code_lifetime_seconds))
    }

    /// Whether `id` names a service of the configuration file.
    pub fn is_configured(&self, id: &str) -> bool {
        self.configured.contains_key(id)
    }

    /// Every service, by id.
    pub fn all(&self) -> Vec<Arc<Service>> {
        let mut by_id: BTreeMap<String, Arc<Service>> = self
            .stored
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, service)| (id.clone(), Arc::clone(service)))
            .collect();
        for (id, service) in &self.configured {
            by_id.insert(id.clone(), Arc::clone(service));
        }
        by_id.into_values().collect()
    }

    /// A stored service as a [`Service`] (`None`, logged, when its stored settings no longer
    /// resolve).
    pub fn resolve_stored(&self, stored: &StoredService) -> Option<Service> {
        match stored.settings.resolve(&self.defaults) {
            Ok(mut service) => {
                service.created_at_ms = Some(stored.created_at_ms);
                service.updated_at_ms = Some(stored.updated_at_ms);
                Some(service)
            }
            Err(error) => {
                tracing::error!(service = %stored.settings.id, %error, "a stored service is not valid; it is left out");
                None
            }
        }
    }

    /// Takes in a service just stored or changed by this server.
    pub fn put(&self, service: Service) {
        self.stored
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service.id.clone(), Arc::new(service));
    }

    /// Reads the stored services again.
    pub async fn reload(&self) -> StoreResult<()> {
        let stored = self.store.services().await?;
        let mut by_id = HashMap::with_capacity(stored.len());
        for service in &stored {
            if self.configured.contains_key(&service.settings.id) {
                continue; // The configuration file's comes first.
            }
            if let Some(service) = self.resolve_stored(service) {
                by_id.insert(service.id.clone(), Arc::new(service));
            }
        }
        *self.stored.write().unwrap_or_else(PoisonError::into_inner) = by_id;
        Ok(())
    }

    /// Reads the stored services every [`REFRESH`] until `shutdown` turns true.
    pub fn follow(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let directory = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(REFRESH) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
                if let Err(error) = directory.reload().await {
                    tracing::warn!(%error, "reading the stored services failed; keeping the last ones read");
                }
            }
        });
    }
}
