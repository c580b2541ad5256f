//! Notifications on the SQL store: creation with idempotency, the due-notification claim, the
//! outcome of an attempt, and receipts for them. Their events use the notification id as the
//! event's subject.

use super::*;

const NOTIFICATION_COLUMNS: &str = "id, to_e164, region_code, time_zones, category, program_id, template, body, sender, \
     channel, carrier, fallback_carriers, status, due_at_ms, carrier_message_id, detail, decision, idempotency_key, \
     created_at_ms, updated_at_ms";

fn notification_from_row(row: &AnyRow) -> Result<NotificationRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let zones: String = row.try_get("time_zones")?;
    Ok(NotificationRecord {
        id: row.try_get("id")?,
        to_e164: row.try_get("to_e164")?,
        region_code: row.try_get("region_code")?,
        time_zones: split_carriers(&zones),
        category: row.try_get("category")?,
        program_id: row.try_get("program_id")?,
        template: row.try_get("template")?,
        body: row.try_get("body")?,
        sender: row.try_get("sender")?,
        channel: parse_channel(&row.try_get::<String, _>("channel")?)?,
        carrier: row.try_get("carrier")?,
        fallback_carriers: split_carriers(&row.try_get::<String, _>("fallback_carriers")?),
        status: NotificationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("notification status `{status}`")))?,
        due_at_ms: row.try_get("due_at_ms")?,
        carrier_message_id: row.try_get("carrier_message_id")?,
        detail: row.try_get("detail")?,
        decision: row.try_get("decision")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// The delivery status a notification's events show.
fn delivery_of(status: NotificationStatus) -> DeliveryStatus {
    match status {
        NotificationStatus::Scheduled | NotificationStatus::Queued => DeliveryStatus::Queued,
        NotificationStatus::Sending => DeliveryStatus::Sending,
        NotificationStatus::Submitted => DeliveryStatus::Submitted,
        NotificationStatus::Delivered => DeliveryStatus::Delivered,
        NotificationStatus::Failed => DeliveryStatus::Failed,
    }
}

impl SqlStore {
    /// Records an event about notification `n`, in its state after the change.
    fn notification_event(
        &self,
        tx: &mut WriteTx,
        n: &NotificationRecord,
        event_type: EventType,
        detail: &str,
        now_ms: i64,
    ) {
        self.insert_event(
            tx,
            NewEvent {
                event_type,
                verification_id: &n.id,
                message_id: Some(&n.id),
                channel: Some(n.channel),
                carrier: Some(&n.carrier),
                delivery_status: Some(delivery_of(n.status)),
                verification_status: VerificationStatus::Pending,
                detail,
                now_ms,
            },
        );
    }

    async fn notification_in(
        &self,
        tx: &mut WriteTx,
        clause: &'static str,
        value: &str,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        self.locked_row(
            tx,
            ("notifications", NOTIFICATION_COLUMNS),
            clause,
            value,
            notification_from_row,
        )
        .await
    }

    pub(super) async fn insert_notification(
        &self,
        n: NotificationRecord,
    ) -> Result<(NotificationRecord, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(key) = &n.idempotency_key
            && let Some(earlier) = self
                .notification_in(&mut tx, "idempotency_key = $1", key)
                .await?
        {
            tx.rollback().await?;
            if earlier.to_e164 != n.to_e164 {
                return Err(StoreError::Conflict(format!(
                    "idempotency_key: already used for notification {} to another number",
                    earlier.id
                )));
            }
            return Ok((earlier, true));
        }
        sqlx::query(
            "INSERT INTO notifications (id, to_e164, region_code, time_zones, category, program_id, template, body, sender, \
             channel, carrier, fallback_carriers, status, due_at_ms, detail, decision, idempotency_key, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, '', $15, $16, $17, $17)",
        )
        .bind(&n.id)
        .bind(&n.to_e164)
        .bind(&n.region_code)
        .bind(n.time_zones.join(","))
        .bind(&n.category)
        .bind(&n.program_id)
        .bind(&n.template)
        .bind(&n.body)
        .bind(&n.sender)
        .bind(n.channel.as_str())
        .bind(&n.carrier)
        .bind(n.fallback_carriers.join(","))
        .bind(n.status.as_str())
        .bind(n.due_at_ms)
        .bind(&n.decision)
        .bind(&n.idempotency_key)
        .bind(n.created_at_ms)
        .execute(tx.conn())
        .await?;
        let event_type = if n.status == NotificationStatus::Scheduled {
            EventType::NotificationScheduled
        } else {
            EventType::MessageQueued
        };
        self.notification_event(&mut tx, &n, event_type, &n.decision, n.created_at_ms);
        self.commit_with_events(tx).await?;
        Ok((n, false))
    }

    pub(super) async fn select_notification(
        &self,
        id: &str,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(notification_from_row).transpose()
    }

    pub(super) async fn claim_notifications(
        &self,
        claim_token: &str,
        now_ms: i64,
        claim_expires_at_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let skip_locked = self.skip_locked_rows();
        let claim = format!(
            "UPDATE notifications SET status = 'sending', claim_token = $1, claim_expires_at_ms = $2, updated_at_ms = $3 \
             WHERE id IN (SELECT id FROM notifications WHERE status IN ('queued', 'scheduled') AND due_at_ms <= $3 \
             ORDER BY due_at_ms, id LIMIT $4{skip_locked})"
        );
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(sqlx::AssertSqlSafe(claim))
            .bind(claim_token)
            .bind(claim_expires_at_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .execute(tx.conn())
            .await?
            .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE claim_token = $1 ORDER BY due_at_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(claim_token)
            .fetch_all(tx.conn())
            .await?;
        tx.tx.commit().await?;
        rows.iter().map(notification_from_row).collect()
    }

    pub(super) async fn settle(
        &self,
        id: &str,
        outcome: NotificationOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(mut n) = self.notification_in(&mut tx, "id = $1", id).await? else {
            tx.rollback().await?;
            return Ok(());
        };
        if n.status != NotificationStatus::Sending {
            tx.rollback().await?;
            return Ok(());
        }
        let (event_type, detail) = match outcome {
            NotificationOutcome::Submitted { carrier_message_id } => {
                n.status = NotificationStatus::Submitted;
                let detail = format!("accepted by the carrier as {carrier_message_id}");
                n.carrier_message_id = Some(carrier_message_id);
                (EventType::MessageSubmitted, detail)
            }
            NotificationOutcome::Failed { detail } => {
                n.status = NotificationStatus::Failed;
                (EventType::MessageFailed, detail)
            }
            NotificationOutcome::Rerouted {
                carrier,
                rest,
                detail,
            } => {
                n.status = NotificationStatus::Queued;
                n.carrier = carrier;
                n.fallback_carriers = rest;
                n.due_at_ms = now_ms;
                (EventType::MessageRerouted, detail)
            }
            NotificationOutcome::Deferred { until_ms, detail } => {
                n.status = NotificationStatus::Scheduled;
                n.due_at_ms = until_ms;
                (EventType::NotificationScheduled, detail)
            }
        };
        n.detail = detail.clone();
        sqlx::query(
            "UPDATE notifications SET status = $1, carrier = $2, fallback_carriers = $3, due_at_ms = $4, \
             carrier_message_id = $5, detail = $6, claim_token = NULL, claim_expires_at_ms = NULL, updated_at_ms = $7 \
             WHERE id = $8",
        )
        .bind(n.status.as_str())
        .bind(&n.carrier)
        .bind(n.fallback_carriers.join(","))
        .bind(n.due_at_ms)
        .bind(&n.carrier_message_id)
        .bind(&n.detail)
        .bind(now_ms)
        .bind(&n.id)
        .execute(tx.conn())
        .await?;
        self.notification_event(&mut tx, &n, event_type, &detail, now_ms);
        self.commit_with_events(tx).await
    }

    /// Fails notifications whose claim ran out (their dispatcher died mid-submission): like a
    /// code's message, not resent, since the carrier may have it.
    pub(super) async fn fail_abandoned_notifications(
        &self,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM notifications WHERE status = 'sending' AND claim_expires_at_ms <= $1 LIMIT 500",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        for id in &ids {
            self.settle(
                id,
                NotificationOutcome::Failed {
                    detail: "dispatcher stopped during submission; not resent to avoid a duplicate"
                        .into(),
                },
                now_ms,
            )
            .await?;
        }
        Ok(ids.len() as u64)
    }

    /// A receipt for a notification's message: `None` when it names no notification.
    pub(super) async fn notification_receipt(
        &self,
        carrier: &str,
        carrier_message_id: &str,
        message_id: Option<&str>,
        status: ReceiptStatus,
        detail: &str,
        now_ms: i64,
    ) -> Result<Option<ReceiptOutcome>, StoreError> {
        let mut tx = self.begin_write().await?;
        let found = match message_id.filter(|id| id.starts_with(NOTIFICATION_ID_PREFIX)) {
            Some(id) => self.notification_in(&mut tx, "id = $1", id).await?,
            None => {
                let sql = format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE carrier = $1 AND carrier_message_id = $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(carrier)
                    .bind(carrier_message_id)
                    .fetch_optional(tx.conn())
                    .await?;
                row.as_ref().map(notification_from_row).transpose()?
            }
        };
        let Some(mut n) = found.filter(|n| n.carrier == carrier) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let outcome = match n.status {
            NotificationStatus::Submitted => {
                n.status = match status {
                    ReceiptStatus::Delivered => NotificationStatus::Delivered,
                    ReceiptStatus::Failed => NotificationStatus::Failed,
                };
                n.detail = detail.to_string();
                sqlx::query(
                    "UPDATE notifications SET status = $1, detail = $2, updated_at_ms = $3 WHERE id = $4",
                )
                .bind(n.status.as_str())
                .bind(detail)
                .bind(now_ms)
                .bind(&n.id)
                .execute(tx.conn())
                .await?;
                let event_type = match status {
                    ReceiptStatus::Delivered => EventType::MessageDelivered,
                    ReceiptStatus::Failed => EventType::MessageFailed,
                };
                self.notification_event(&mut tx, &n, event_type, detail, now_ms);
                self.commit_with_events(tx).await?;
                return Ok(Some(ReceiptOutcome::Applied));
            }
            NotificationStatus::Sending => ReceiptOutcome::NotYetSubmitted,
            _ => ReceiptOutcome::Duplicate,
        };
        tx.rollback().await?;
        Ok(Some(outcome))
    }
}
