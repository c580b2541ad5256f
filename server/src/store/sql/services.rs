//! Services created through the API (those of the configuration file are not stored): their
//! settings as JSON, so a field added later needs no migration.

use super::db;
use super::{WriteTx, is_unique_violation};
use crate::domain::ServiceSettings;
use crate::store::{StoreError, StoreResult};

/// A stored service: its settings and when it was stored and last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredService {
    /// The settings, every value set.
    pub settings: ServiceSettings,
    /// Stored, unix ms.
    pub created_at_ms: i64,
    /// Last changed, unix ms.
    pub updated_at_ms: i64,
}

fn read(row: &db::Row) -> StoreResult<StoredService> {
    let text: String = row.try_get("settings")?;
    let settings = serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("service settings: {e}")))?;
    Ok(StoredService {
        settings,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn encode(settings: &ServiceSettings) -> StoreResult<String> {
    serde_json::to_string(settings)
        .map_err(|e| StoreError::Corrupt(format!("service settings: {e}")))
}

/// Every stored service, by id.
pub(super) async fn all(exec: db::Exec<'_>) -> StoreResult<Vec<StoredService>> {
    db::query("SELECT settings, created_at_ms, updated_at_ms FROM services ORDER BY id")
        .fetch_all(exec)
        .await?
        .iter()
        .map(read)
        .collect()
}

impl WriteTx {
    /// Stores a new service; `Ok(false)` when its id is taken.
    pub async fn insert_service(&mut self, service: &StoredService) -> StoreResult<bool> {
        let result = db::query(
            "INSERT INTO services (id, settings, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&service.settings.id)
        .bind(encode(&service.settings)?)
        .bind(service.created_at_ms)
        .bind(service.updated_at_ms)
        .execute(self.conn().await?)
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_unique_violation(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// A stored service, locked for the rest of the transaction.
    pub async fn lock_service(&mut self, id: &str) -> StoreResult<Option<StoredService>> {
        let sql = format!(
            "SELECT settings, created_at_ms, updated_at_ms FROM services WHERE id = $1{}",
            self.lock_rows()
        );
        let row = db::query(sql)
            .bind(id)
            .fetch_optional(self.conn().await?)
            .await?;
        row.as_ref().map(read).transpose()
    }

    /// Saves a changed service.
    pub async fn save_service(&mut self, service: &StoredService) -> StoreResult<()> {
        let updated =
            db::query("UPDATE services SET settings = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(encode(&service.settings)?)
                .bind(service.updated_at_ms)
                .bind(&service.settings.id)
                .execute(self.conn().await?)
                .await?
                .rows_affected();
        super::rows::updated_one(updated, "service", &service.settings.id)
    }
}
