//! Notifications: what to send and to whom (their delivery is their message in the outbox).

use async_trait::async_trait;

use super::rows::{self, NOTIFICATION_COLUMNS, join_list};
use super::{WriteTx, db, is_unique_violation};
use crate::domain::Notification;
use crate::store::{NotificationRepository, ServiceKey, StoreError, StoreResult};

#[async_trait]
impl NotificationRepository for WriteTx {
    async fn insert_notification(&mut self, n: &Notification) -> StoreResult<()> {
        let result = db::query(
            "INSERT INTO notifications (id, to_e164, region_code, time_zones, category, program_id, template, body, sender, \
             decision, idempotency_key, created_at_ms, service_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&n.id)
        .bind(&n.to_e164)
        .bind(&n.region_code)
        .bind(join_list(&n.time_zones))
        .bind(n.category.as_str())
        .bind(&n.program_id)
        .bind(&n.template)
        .bind(&n.body)
        .bind(&n.sender)
        .bind(&n.decision)
        .bind(&n.idempotency_key)
        .bind(n.created_at_ms)
        .bind(&n.service_id)
        .execute(self.conn().await?)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => Err(StoreError::Contended(
                "a notification idempotency key".into(),
            )),
            Err(error) => Err(error),
        }
    }

    async fn notification_for_key(
        &mut self,
        key: &ServiceKey,
    ) -> StoreResult<Option<Notification>> {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE service_id = $1 AND idempotency_key = $2"
        );
        let row = db::query(sql)
            .bind(&key.service_id)
            .bind(&key.key)
            .fetch_optional(self.conn().await?)
            .await?;
        row.as_ref().map(rows::notification).transpose()
    }
}
