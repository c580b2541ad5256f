//! Status webhooks' progress: each service's cursor in the event log and who holds it, and the
//! deliveries that failed, waiting to be tried again.

use std::collections::HashSet;

use super::db;
use super::{WriteTx, rows};
use crate::store::StoreResult;

/// An event whose delivery failed (or that waits behind one of its subject that did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRetry {
    /// The service.
    pub service_id: String,
    /// The event's cursor.
    pub cursor: i64,
    /// The verification or notification it is about.
    pub subject_id: String,
    /// The payload's type.
    pub event_type: String,
    /// Given up after the last retry.
    pub failed: bool,
    /// Attempts made (0: waiting behind an earlier event of its subject).
    pub attempts: u32,
    /// When it is tried next.
    pub next_attempt_at_ms: i64,
    /// When its first attempt (or its wait) began.
    pub first_failed_at_ms: i64,
    /// Why the last attempt failed.
    pub last_error: String,
}

const RETRY_COLUMNS: &str = "service_id, cursor, subject_id, event_type, status, attempts, \
     next_attempt_at_ms, first_failed_at_ms, last_error";

fn retry(row: &db::Row) -> StoreResult<WebhookRetry> {
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(WebhookRetry {
        service_id: row.try_get("service_id")?,
        cursor: row.try_get("cursor")?,
        subject_id: row.try_get("subject_id")?,
        event_type: row.try_get("event_type")?,
        failed: status == "failed",
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        first_failed_at_ms: row.try_get("first_failed_at_ms")?,
        last_error: row.try_get("last_error")?,
    })
}

/// The subjects of a service with an event being retried (their later events wait).
pub(super) async fn blocked_subjects(
    exec: db::Exec<'_>,
    service_id: &str,
) -> StoreResult<HashSet<String>> {
    let subjects: Vec<String> = db::query(
        "SELECT DISTINCT subject_id FROM webhook_retries WHERE service_id = $1 AND status = 'retrying'",
    )
    .bind(service_id)
    .scalar_all(exec)
    .await?;
    Ok(subjects.into_iter().collect())
}

/// The retries due at `now_ms`, each the earliest of its subject, oldest first.
pub(super) async fn due_heads(
    exec: db::Exec<'_>,
    service_id: &str,
    now_ms: i64,
    limit: u32,
) -> StoreResult<Vec<WebhookRetry>> {
    let sql = format!(
        "SELECT {RETRY_COLUMNS} FROM webhook_retries r WHERE r.service_id = $1 AND r.status = 'retrying' \
         AND r.next_attempt_at_ms <= $2 AND r.cursor = (SELECT min(h.cursor) FROM webhook_retries h \
         WHERE h.service_id = r.service_id AND h.subject_id = r.subject_id AND h.status = 'retrying') \
         ORDER BY r.cursor LIMIT $3"
    );
    db::query(sql)
        .bind(service_id)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(exec)
        .await?
        .iter()
        .map(retry)
        .collect()
}

/// A service's cursor; `None` before its webhook first ran.
pub(super) async fn cursor_of(exec: db::Exec<'_>, service_id: &str) -> StoreResult<Option<i64>> {
    db::query("SELECT cursor FROM webhook_cursors WHERE service_id = $1")
        .bind(service_id)
        .scalar_optional(exec)
        .await
}

/// A service's retries, oldest first.
pub(super) async fn retries_of(
    exec: db::Exec<'_>,
    service_id: &str,
    limit: u32,
) -> StoreResult<Vec<WebhookRetry>> {
    let sql = format!(
        "SELECT {RETRY_COLUMNS} FROM webhook_retries WHERE service_id = $1 ORDER BY cursor LIMIT $2"
    );
    db::query(sql)
        .bind(service_id)
        .bind(i64::from(limit))
        .fetch_all(exec)
        .await?
        .iter()
        .map(retry)
        .collect()
}

impl WriteTx {
    /// Takes (or renews) the lease on a service's webhook to `url` for `holder` until
    /// `until_ms`; the cursor when taken, `None` when another server holds it. With
    /// `start_cursor` (at the start of a round, not when renewing during one), the cursor
    /// starts there the first time, and again after the webhook was turned off.
    pub async fn claim_webhook(
        &mut self,
        service_id: &str,
        url: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
        start_cursor: Option<i64>,
    ) -> StoreResult<Option<i64>> {
        if let Some(start_cursor) = start_cursor {
            self.start_webhook(service_id, url, start_cursor).await?;
        }
        self.lease_webhook(service_id, holder, now_ms, until_ms)
            .await
    }

    /// Makes a service's cursor row, at `start_cursor`, or moves it there when the webhook was
    /// turned off: a webhook set up through the API starts with the events after that moment.
    pub async fn start_webhook(
        &mut self,
        service_id: &str,
        url: &str,
        start_cursor: i64,
    ) -> StoreResult<()> {
        db::query(
            "INSERT INTO webhook_cursors (service_id, cursor, holder, lease_until_ms, url) VALUES ($1, $2, NULL, 0, $3) \
             ON CONFLICT (service_id) DO NOTHING",
        )
        .bind(service_id)
        .bind(start_cursor)
        .bind(url)
        .execute(self.conn().await?)
        .await?;
        // Turned off and on again: what happened meanwhile is not sent.
        db::query(
            "UPDATE webhook_cursors SET cursor = $1, url = $2 WHERE service_id = $3 AND url = ''",
        )
        .bind(start_cursor)
        .bind(url)
        .bind(service_id)
        .execute(self.conn().await?)
        .await?;
        Ok(())
    }

    /// The lease, if free, expired or already `holder`'s; the cursor when taken.
    async fn lease_webhook(
        &mut self,
        service_id: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Option<i64>> {
        let taken = db::query(
            "UPDATE webhook_cursors SET holder = $1, lease_until_ms = $2 WHERE service_id = $3 \
             AND (holder IS NULL OR holder = $1 OR lease_until_ms < $4)",
        )
        .bind(holder)
        .bind(until_ms)
        .bind(service_id)
        .bind(now_ms)
        .execute(self.conn().await?)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(None);
        }
        db::query("SELECT cursor FROM webhook_cursors WHERE service_id = $1")
            .bind(service_id)
            .scalar_optional(self.conn().await?)
            .await
    }

    /// Marks a service's webhook turned off: its pending deliveries are dropped, and when it is
    /// turned on again it starts from the latest event.
    pub async fn turn_off_webhook(&mut self, service_id: &str) -> StoreResult<()> {
        db::query("UPDATE webhook_cursors SET url = '', holder = NULL, lease_until_ms = 0 WHERE service_id = $1")
            .bind(service_id)
            .execute(self.conn().await?)
            .await?;
        db::query("DELETE FROM webhook_retries WHERE service_id = $1")
            .bind(service_id)
            .execute(self.conn().await?)
            .await?;
        Ok(())
    }

    /// Gives up `holder`'s lease on a service's webhook (at shutdown), so the next server
    /// takes it at once.
    pub async fn release_webhook(&mut self, service_id: &str, holder: &str) -> StoreResult<()> {
        db::query(
            "UPDATE webhook_cursors SET holder = NULL, lease_until_ms = 0 WHERE service_id = $1 AND holder = $2",
        )
        .bind(service_id)
        .bind(holder)
        .execute(self.conn().await?)
        .await?;
        Ok(())
    }

    /// Moves a service's cursor to `cursor` if `holder` still holds it; whether it did.
    pub async fn advance_webhook(
        &mut self,
        service_id: &str,
        holder: &str,
        cursor: i64,
    ) -> StoreResult<bool> {
        let moved = db::query(
            "UPDATE webhook_cursors SET cursor = $1 WHERE service_id = $2 AND holder = $3 AND cursor < $1",
        )
        .bind(cursor)
        .bind(service_id)
        .bind(holder)
        .execute(self.conn().await?)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }

    /// Stores new retries (an event already stored is left as it is).
    pub async fn insert_webhook_retries(
        &mut self,
        retries: &[WebhookRetry],
        now_ms: i64,
    ) -> StoreResult<()> {
        for r in retries {
            db::query(
                "INSERT INTO webhook_retries (service_id, cursor, subject_id, event_type, status, attempts, \
                 next_attempt_at_ms, first_failed_at_ms, last_error, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (service_id, cursor) DO NOTHING",
            )
            .bind(&r.service_id)
            .bind(r.cursor)
            .bind(&r.subject_id)
            .bind(&r.event_type)
            .bind(if r.failed { "failed" } else { "retrying" })
            .bind(i64::from(r.attempts))
            .bind(r.next_attempt_at_ms)
            .bind(r.first_failed_at_ms)
            .bind(&r.last_error)
            .bind(now_ms)
            .execute(self.conn().await?)
            .await?;
        }
        Ok(())
    }

    /// Saves a retry after another attempt: gone when delivered, else its new state.
    pub async fn save_webhook_retry(
        &mut self,
        retry: &WebhookRetry,
        delivered: bool,
        now_ms: i64,
    ) -> StoreResult<()> {
        if delivered {
            db::query("DELETE FROM webhook_retries WHERE service_id = $1 AND cursor = $2")
                .bind(&retry.service_id)
                .bind(retry.cursor)
                .execute(self.conn().await?)
                .await?;
            return Ok(());
        }
        let updated = db::query(
            "UPDATE webhook_retries SET status = $1, attempts = $2, next_attempt_at_ms = $3, \
             last_error = $4, updated_at_ms = $5 WHERE service_id = $6 AND cursor = $7",
        )
        .bind(if retry.failed { "failed" } else { "retrying" })
        .bind(i64::from(retry.attempts))
        .bind(retry.next_attempt_at_ms)
        .bind(&retry.last_error)
        .bind(now_ms)
        .bind(&retry.service_id)
        .bind(retry.cursor)
        .execute(self.conn().await?)
        .await?
        .rows_affected();
        rows::updated_one(updated, "webhook retry", &retry.cursor.to_string())
    }

    /// Makes every delivery being retried due at `now_ms` (at start: the operator may have
    /// fixed what made them fail, a URL or a CA, and should not wait hours for the next try).
    pub async fn retry_webhooks_now(&mut self, now_ms: i64) -> StoreResult<u64> {
        Ok(db::query(
            "UPDATE webhook_retries SET next_attempt_at_ms = $1 WHERE status = 'retrying' \
             AND attempts > 0 AND next_attempt_at_ms > $1",
        )
        .bind(now_ms)
        .execute(self.conn().await?)
        .await?
        .rows_affected())
    }

    /// Removes deliveries given up before `before_ms`.
    pub async fn forget_webhook_failures_before(&mut self, before_ms: i64) -> StoreResult<u64> {
        Ok(
            db::query("DELETE FROM webhook_retries WHERE status = 'failed' AND updated_at_ms < $1")
                .bind(before_ms)
                .execute(self.conn().await?)
                .await?
                .rows_affected(),
        )
    }
}
