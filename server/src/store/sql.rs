//! The [`Store`] on SQLite and PostgreSQL through sqlx's `Any` driver: one set of statements,
//! with the few dialect differences (row locks, write transactions, event ordering) switched here.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};
use tokio::sync::watch;
use verify_carrier::{Channel, ReceiptStatus};

use super::*;

mod notifications;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// Any PostgreSQL advisory lock key: event inserts take it so cursors commit in order.
const EVENT_ORDER_LOCK: i64 = 0x7665_7269_6679; // "verify"

/// A write transaction and the events it will record. Events are inserted last, just before
/// commit, so on PostgreSQL the event-order lock is the last lock any transaction takes and is
/// held only for those inserts and the commit.
struct WriteTx {
    tx: Transaction<'static, Any>,
    events: Vec<OwnedEvent>,
}

impl WriteTx {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}

/// The SQL store.
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    events_changed: watch::Sender<u64>,
}

const VERIFICATION_COLUMNS: &str = "id, to_e164, region_code, status, channel, locale, code_length, code_nonce, code_check, \
     checks_used, max_checks, sends_used, max_sends, idempotency_key, classification, created_at_ms, expires_at_ms, updated_at_ms, \
     strategy, workflow, step, step_deadline_ms, step_failure, decision, program_id";

const MESSAGE_COLUMNS: &str = "id, verification_id, channel, carrier, fallback_carriers, step, status, carrier_message_id, detail, created_at_ms, updated_at_ms";

impl SqlStore {
    /// Connects to `database_url` (`sqlite://...` or `postgres://...`) and applies migrations.
    pub async fn connect(database_url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if database_url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let url = match dialect {
            Dialect::Sqlite if !database_url.contains("mode=") => {
                let separator = if database_url.contains('?') { '&' } else { '?' };
                format!("{database_url}{separator}mode=rwc")
            }
            _ => database_url.to_string(),
        };
        let options = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10));
        let options = if dialect == Dialect::Sqlite {
            options.after_connect(|connection, _meta| {
                Box::pin(async move {
                    use sqlx::Executor;
                    connection.execute("PRAGMA busy_timeout = 10000").await?;
                    connection.execute("PRAGMA foreign_keys = ON").await?;
                    connection.execute("PRAGMA synchronous = FULL").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await?;
        if dialect == Dialect::Sqlite {
            // WAL lets readers (watchers, Get) run while the dispatcher writes.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await?;
        }
        let migrator = match dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        let (events_changed, _) = watch::channel(0);
        Ok(SqlStore {
            pool,
            dialect,
            events_changed,
        })
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// a read-then-write transaction never fails on a lock upgrade.
    async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx {
            tx,
            events: Vec::new(),
        })
    }

    /// ` FOR UPDATE` on PostgreSQL (SQLite's write transaction already excludes other writers).
    fn lock_rows(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The clause that claims rows no other transaction holds (PostgreSQL); SQLite has a
    /// single writer and needs none.
    fn skip_locked_rows(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    async fn commit_with_events(&self, mut tx: WriteTx) -> Result<(), StoreError> {
        let events = std::mem::take(&mut tx.events);
        if !events.is_empty() && self.dialect == Dialect::Postgres {
            // Serialise event inserts until commit: cursors then become visible in order, so
            // a watcher that has seen cursor N never later finds an N-1 it skipped.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENT_ORDER_LOCK)
                .execute(tx.conn())
                .await?;
        }
        for event in &events {
            sqlx::query(
                "INSERT INTO events (event_type, verification_id, message_id, channel, carrier, delivery_status, \
                 verification_status, detail, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(event.event_type.as_str())
            .bind(&event.verification_id)
            .bind(&event.message_id)
            .bind(event.channel.map(Channel::as_str))
            .bind(&event.carrier)
            .bind(event.delivery_status.map(DeliveryStatus::as_str))
            .bind(event.verification_status.as_str())
            .bind(&event.detail)
            .bind(event.now_ms)
            .execute(tx.conn())
            .await?;
        }
        tx.tx.commit().await?;
        if !events.is_empty() {
            self.events_changed.send_modify(|version| *version += 1);
        }
        Ok(())
    }

    fn insert_event(&self, tx: &mut WriteTx, event: NewEvent<'_>) {
        tx.events.push(OwnedEvent {
            event_type: event.event_type,
            verification_id: event.verification_id.to_string(),
            message_id: event.message_id.map(str::to_string),
            channel: event.channel,
            carrier: event.carrier.map(str::to_string),
            delivery_status: event.delivery_status,
            verification_status: event.verification_status,
            detail: event.detail.to_string(),
            now_ms: event.now_ms,
        });
    }

    /// The row of `table` where `clause` (binding `$1` to `value`) holds, locked for the rest of
    /// the transaction, read with `from_row`.
    async fn locked_row<T>(
        &self,
        tx: &mut WriteTx,
        table_and_columns: (&'static str, &'static str),
        clause: &'static str,
        value: &str,
        from_row: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let (table, columns) = table_and_columns;
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {clause}{}",
            self.lock_rows()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_optional(tx.conn())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn verification_in(
        &self,
        tx: &mut WriteTx,
        clause: &'static str,
        value: &str,
    ) -> Result<Option<VerificationRecord>, StoreError> {
        self.locked_row(
            tx,
            ("verifications", VERIFICATION_COLUMNS),
            clause,
            value,
            verification_from_row,
        )
        .await
    }

    async fn set_verification_status(
        &self,
        tx: &mut WriteTx,
        verification: &mut VerificationRecord,
        status: VerificationStatus,
        event_type: EventType,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE verifications SET status = $1, checks_used = $2, updated_at_ms = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(i64::from(verification.checks_used))
            .bind(now_ms)
            .bind(&verification.id)
            .execute(tx.conn())
            .await?;
        verification.status = status;
        verification.updated_at_ms = now_ms;
        self.insert_event(
            tx,
            NewEvent::verification(event_type, &verification.id, status, detail, now_ms),
        );
        if status != VerificationStatus::Pending {
            self.cancel_queued_messages(tx, &verification.id, status, now_ms)
                .await?;
        }
        Ok(())
    }

    /// Drops the queued messages of a verification that ended.
    async fn cancel_queued_messages(
        &self,
        tx: &mut WriteTx,
        verification_id: &str,
        status: VerificationStatus,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let rows = sqlx::query(
            "UPDATE messages SET status = 'canceled', detail = $1, updated_at_ms = $2 \
             WHERE verification_id = $3 AND status = 'queued' RETURNING id, channel, carrier",
        )
        .bind(format!("verification {}", status.as_str()))
        .bind(now_ms)
        .bind(verification_id)
        .fetch_all(tx.conn())
        .await?;
        for row in rows {
            let message_id: String = row.try_get("id")?;
            let channel = parse_channel(&row.try_get::<String, _>("channel")?)?;
            let carrier: String = row.try_get("carrier")?;
            let detail = format!("not sent: verification {}", status.as_str());
            self.insert_event(
                tx,
                NewEvent {
                    event_type: EventType::MessageCanceled,
                    verification_id,
                    message_id: Some(&message_id),
                    channel: Some(channel),
                    carrier: Some(&carrier),
                    delivery_status: Some(DeliveryStatus::Canceled),
                    verification_status: status,
                    detail: &detail,
                    now_ms,
                },
            );
        }
        Ok(())
    }

    async fn queue_message(
        &self,
        tx: &mut WriteTx,
        message: QueuedMessage<'_>,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO messages (id, verification_id, channel, carrier, fallback_carriers, step, status, due_at_ms, detail, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $6, $7, 'queued', $5, '', $5, $5)",
        )
        .bind(message.id)
        .bind(message.verification_id)
        .bind(message.channel.as_str())
        .bind(message.carrier)
        .bind(message.now_ms)
        .bind(message.fallback_carriers.join(","))
        .bind(i64::from(message.step))
        .execute(tx.conn())
        .await?;
        self.insert_event(
            tx,
            NewEvent {
                event_type: EventType::MessageQueued,
                verification_id: message.verification_id,
                message_id: Some(message.id),
                channel: Some(message.channel),
                carrier: Some(message.carrier),
                delivery_status: Some(DeliveryStatus::Queued),
                verification_status: VerificationStatus::Pending,
                detail,
                now_ms: message.now_ms,
            },
        );
        Ok(())
    }

    async fn remember_idempotency_key(
        &self,
        tx: &mut WriteTx,
        new: &NewVerification,
        verification_id: &str,
    ) -> Result<(), StoreError> {
        if let Some(key) = &new.idempotency_key {
            sqlx::query(
                "INSERT INTO idempotency_keys (idempotency_key, verification_id, to_e164, created_at_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(key)
            .bind(verification_id)
            .bind(&new.to_e164)
            .bind(new.now_ms)
            .execute(tx.conn())
            .await?;
        }
        Ok(())
    }

    async fn try_start_verification(
        &self,
        new: &NewVerification,
    ) -> Result<VerifyOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(key) = &new.idempotency_key {
            let earlier = sqlx::query(
                "SELECT verification_id, to_e164 FROM idempotency_keys WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(tx.conn())
            .await?;
            if let Some(earlier) = earlier {
                let verification_id: String = earlier.try_get("verification_id")?;
                let to_e164: String = earlier.try_get("to_e164")?;
                if to_e164 != new.to_e164 {
                    return Err(StoreError::Conflict(format!(
                        "idempotency_key: already used for verification {verification_id} of another number"
                    )));
                }
                let existing = self
                    .verification_in(&mut tx, "id = $1", &verification_id)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "idempotency key names missing {verification_id}"
                        ))
                    })?;
                tx.rollback().await?;
                return Ok(VerifyOutcome::Replayed(existing));
            }
        }
        let pending = self
            .verification_in(&mut tx, "to_e164 = $1 AND status = 'pending'", &new.to_e164)
            .await?;
        if let Some(mut pending) = pending {
            if pending.expires_at_ms > new.now_ms {
                if pending.sends_used >= pending.max_sends {
                    return Err(StoreError::TooManySends {
                        id: pending.id,
                        max_sends: pending.max_sends,
                    });
                }
                sqlx::query(
                    "UPDATE verifications SET sends_used = sends_used + 1, channel = $1, updated_at_ms = $2 WHERE id = $3",
                )
                .bind(new.channel.as_str())
                .bind(new.now_ms)
                .bind(&pending.id)
                .execute(tx.conn())
                .await?;
                let detail = format!("resend of the same code; {}", new.decision);
                self.queue_message(
                    &mut tx,
                    QueuedMessage::first_of(new, &pending.id, pending.step),
                    &detail,
                )
                .await?;
                self.remember_idempotency_key(&mut tx, new, &pending.id)
                    .await?;
                self.commit_with_events(tx).await?;
                pending.sends_used += 1;
                pending.channel = new.channel;
                pending.updated_at_ms = new.now_ms;
                return Ok(VerifyOutcome::Resent(pending));
            }
            self.set_verification_status(
                &mut tx,
                &mut pending,
                VerificationStatus::Expired,
                EventType::VerificationExpired,
                "code lifetime ran out",
                new.now_ms,
            )
            .await?;
        }
        let record = VerificationRecord {
            id: new.id.clone(),
            to_e164: new.to_e164.clone(),
            region_code: new.region_code.clone(),
            status: VerificationStatus::Pending,
            channel: new.channel,
            locale: new.locale.clone(),
            code_length: new.code_length,
            code_nonce: new.code.nonce.clone(),
            code_check: new.code.check.clone(),
            checks_used: 0,
            max_checks: new.max_checks,
            sends_used: 1,
            max_sends: new.max_sends,
            idempotency_key: new.idempotency_key.clone(),
            classification_json: new.classification_json.clone(),
            created_at_ms: new.now_ms,
            expires_at_ms: new.now_ms + new.ttl_ms,
            updated_at_ms: new.now_ms,
            strategy: new.strategy.clone(),
            workflow: new.workflow.clone(),
            step: new.step,
            step_deadline_ms: new.step_deadline_ms,
            step_failure: String::new(),
            decision: new.decision.clone(),
            program_id: new.program_id.clone(),
        };
        sqlx::query(
            "INSERT INTO verifications (id, to_e164, region_code, status, channel, locale, code_length, code_nonce, code_check, \
             checks_used, max_checks, sends_used, max_sends, idempotency_key, classification, created_at_ms, expires_at_ms, updated_at_ms, \
             strategy, workflow, step, step_deadline_ms, decision, program_id) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, 0, $9, 1, $10, $11, $12, $13, $14, $13, $15, $16, $17, $18, $19, $20)",
        )
        .bind(&record.id)
        .bind(&record.to_e164)
        .bind(&record.region_code)
        .bind(record.channel.as_str())
        .bind(&record.locale)
        .bind(i64::from(record.code_length))
        .bind(&record.code_nonce)
        .bind(&record.code_check)
        .bind(i64::from(record.max_checks))
        .bind(i64::from(record.max_sends))
        .bind(&record.idempotency_key)
        .bind(&record.classification_json)
        .bind(record.created_at_ms)
        .bind(record.expires_at_ms)
        .bind(&record.strategy)
        .bind(&record.workflow)
        .bind(i64::from(record.step))
        .bind(record.step_deadline_ms)
        .bind(&record.decision)
        .bind(&record.program_id)
        .execute(tx.conn())
        .await?;
        self.insert_event(
            &mut tx,
            NewEvent::verification(
                EventType::VerificationCreated,
                &record.id,
                VerificationStatus::Pending,
                "",
                new.now_ms,
            ),
        );
        self.queue_message(
            &mut tx,
            QueuedMessage::first_of(new, &record.id, record.step),
            &new.decision,
        )
        .await?;
        self.remember_idempotency_key(&mut tx, new, &record.id)
            .await?;
        self.commit_with_events(tx).await?;
        Ok(VerifyOutcome::Created(record))
    }

    async fn finish_claimed(
        &self,
        message_id: &str,
        status: DeliveryStatus,
        event_type: EventType,
        carrier_message_id: Option<&str>,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE messages SET status = $1, carrier_message_id = COALESCE($2, carrier_message_id), detail = $3, \
             claim_token = NULL, claim_expires_at_ms = NULL, updated_at_ms = $4 \
             WHERE id = $5 AND status = 'sending' RETURNING verification_id, channel, carrier",
        )
        .bind(status.as_str())
        .bind(carrier_message_id)
        .bind(detail)
        .bind(now_ms)
        .bind(message_id)
        .fetch_optional(tx.conn())
        .await?;
        self.settle_claimed(tx, row, message_id, event_type, status, detail, now_ms)
            .await
    }

    /// Ends the update of a claimed message: with no row (someone else settled it first, e.g.
    /// the abandoned-claim sweep) nothing changes; otherwise the event is recorded and committed.
    #[allow(clippy::too_many_arguments)]
    async fn settle_claimed(
        &self,
        mut tx: WriteTx,
        row: Option<AnyRow>,
        message_id: &str,
        event_type: EventType,
        status: DeliveryStatus,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(());
        };
        self.record_message_event(
            &mut tx, &row, message_id, event_type, status, detail, now_ms,
        )
        .await?;
        self.commit_with_events(tx).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_message_event(
        &self,
        tx: &mut WriteTx,
        row: &AnyRow,
        message_id: &str,
        event_type: EventType,
        status: DeliveryStatus,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let verification_id: String = row.try_get("verification_id")?;
        let channel = parse_channel(&row.try_get::<String, _>("channel")?)?;
        let carrier: String = row.try_get("carrier")?;
        if status == DeliveryStatus::Failed {
            // The running step's message failed: its next step is due now, not at its deadline.
            sqlx::query(
                "UPDATE verifications SET step_deadline_ms = $1, step_failure = $2 \
                 WHERE id = $3 AND status = 'pending' AND step_deadline_ms IS NOT NULL \
                 AND step = (SELECT step FROM messages WHERE id = $4)",
            )
            .bind(now_ms)
            .bind(format!("{carrier}: {detail}"))
            .bind(&verification_id)
            .bind(message_id)
            .execute(tx.conn())
            .await?;
        }
        let verification_status: String =
            sqlx::query_scalar("SELECT status FROM verifications WHERE id = $1")
                .bind(&verification_id)
                .fetch_one(tx.conn())
                .await?;
        let verification_status =
            VerificationStatus::parse(&verification_status).ok_or_else(|| {
                StoreError::Corrupt(format!("verification status `{verification_status}`"))
            })?;
        self.insert_event(
            tx,
            NewEvent {
                event_type,
                verification_id: &verification_id,
                message_id: Some(message_id),
                channel: Some(channel),
                carrier: Some(&carrier),
                delivery_status: Some(status),
                verification_status,
                detail,
                now_ms,
            },
        );
        Ok(())
    }
}

/// A message to insert into the outbox.
struct QueuedMessage<'a> {
    id: &'a str,
    verification_id: &'a str,
    channel: Channel,
    carrier: &'a str,
    fallback_carriers: &'a [String],
    step: u32,
    now_ms: i64,
}

impl<'a> QueuedMessage<'a> {
    /// The message a Verify call queues for `verification_id` at `step`.
    fn first_of(new: &'a NewVerification, verification_id: &'a str, step: u32) -> Self {
        QueuedMessage {
            id: &new.message_id,
            verification_id,
            channel: new.channel,
            carrier: &new.carrier,
            fallback_carriers: &new.fallback_carriers,
            step,
            now_ms: new.now_ms,
        }
    }
}

/// An event waiting for its transaction's commit.
struct OwnedEvent {
    event_type: EventType,
    verification_id: String,
    message_id: Option<String>,
    channel: Option<Channel>,
    carrier: Option<String>,
    delivery_status: Option<DeliveryStatus>,
    verification_status: VerificationStatus,
    detail: String,
    now_ms: i64,
}

/// An event to record.
struct NewEvent<'a> {
    event_type: EventType,
    verification_id: &'a str,
    message_id: Option<&'a str>,
    channel: Option<Channel>,
    carrier: Option<&'a str>,
    delivery_status: Option<DeliveryStatus>,
    verification_status: VerificationStatus,
    detail: &'a str,
    now_ms: i64,
}

impl<'a> NewEvent<'a> {
    fn verification(
        event_type: EventType,
        verification_id: &'a str,
        verification_status: VerificationStatus,
        detail: &'a str,
        now_ms: i64,
    ) -> Self {
        NewEvent {
            event_type,
            verification_id,
            message_id: None,
            channel: None,
            carrier: None,
            delivery_status: None,
            verification_status,
            detail,
            now_ms,
        }
    }
}

fn is_unique_violation(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => {
            db.is_unique_violation() || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

fn split_carriers(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_channel(text: &str) -> Result<Channel, StoreError> {
    Channel::parse(text).ok_or_else(|| StoreError::Corrupt(format!("channel `{text}`")))
}

fn parse_u32(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value}")))
}

fn verification_from_row(row: &AnyRow) -> Result<VerificationRecord, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(VerificationRecord {
        id: row.try_get("id")?,
        to_e164: row.try_get("to_e164")?,
        region_code: row.try_get("region_code")?,
        status: VerificationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("verification status `{status}`")))?,
        channel: parse_channel(&row.try_get::<String, _>("channel")?)?,
        locale: row.try_get("locale")?,
        code_length: parse_u32(row, "code_length")?,
        code_nonce: row.try_get("code_nonce")?,
        code_check: row.try_get("code_check")?,
        checks_used: parse_u32(row, "checks_used")?,
        max_checks: parse_u32(row, "max_checks")?,
        sends_used: parse_u32(row, "sends_used")?,
        max_sends: parse_u32(row, "max_sends")?,
        idempotency_key: row.try_get("idempotency_key")?,
        classification_json: row.try_get("classification")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        strategy: row.try_get("strategy")?,
        workflow: row.try_get("workflow")?,
        step: parse_u32(row, "step")?,
        step_deadline_ms: row.try_get("step_deadline_ms")?,
        step_failure: row.try_get("step_failure")?,
        decision: row.try_get("decision")?,
        program_id: row.try_get("program_id")?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<MessageRecord, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(MessageRecord {
        id: row.try_get("id")?,
        verification_id: row.try_get("verification_id")?,
        channel: parse_channel(&row.try_get::<String, _>("channel")?)?,
        carrier: row.try_get("carrier")?,
        fallback_carriers: split_carriers(&row.try_get::<String, _>("fallback_carriers")?),
        step: parse_u32(row, "step")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("message status `{status}`")))?,
        carrier_message_id: row.try_get("carrier_message_id")?,
        detail: row.try_get("detail")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<EventRecord, StoreError> {
    let event_type: String = row.try_get("event_type")?;
    let verification_status: String = row.try_get("verification_status")?;
    let channel: Option<String> = row.try_get("channel")?;
    let delivery_status: Option<String> = row.try_get("delivery_status")?;
    Ok(EventRecord {
        cursor: row.try_get("cursor")?,
        event_type: EventType::parse(&event_type)
            .ok_or_else(|| StoreError::Corrupt(format!("event type `{event_type}`")))?,
        verification_id: row.try_get("verification_id")?,
        message_id: row.try_get("message_id")?,
        channel: channel.as_deref().map(parse_channel).transpose()?,
        carrier: row.try_get("carrier")?,
        delivery_status: delivery_status
            .as_deref()
            .map(|s| {
                DeliveryStatus::parse(s)
                    .ok_or_else(|| StoreError::Corrupt(format!("delivery status `{s}`")))
            })
            .transpose()?,
        verification_status: VerificationStatus::parse(&verification_status).ok_or_else(|| {
            StoreError::Corrupt(format!("verification status `{verification_status}`"))
        })?,
        detail: row.try_get("detail")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

#[async_trait]
impl Store for SqlStore {
    async fn start_verification(&self, new: NewVerification) -> Result<VerifyOutcome, StoreError> {
        // Two concurrent Verify calls for one number race on the one-pending-per-number index;
        // the loser retries and finds the winner's verification to resend.
        let mut attempt = 0;
        loop {
            match self.try_start_verification(&new).await {
                Err(error) if attempt < 3 && is_unique_violation(&error) => attempt += 1,
                other => return other,
            }
        }
    }

    async fn verification(&self, id: &str) -> Result<Option<VerificationRecord>, StoreError> {
        let sql = format!("SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(verification_from_row).transpose()
    }

    async fn messages(&self, verification_id: &str) -> Result<Vec<MessageRecord>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE verification_id = $1 ORDER BY created_at_ms, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(verification_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn check(
        &self,
        target: CheckTarget,
        code: &str,
        codes: &CodeBook,
        now_ms: i64,
    ) -> Result<(CheckResult, VerificationRecord), StoreError> {
        let mut tx = self.begin_write().await?;
        let (found, field, value) = match &target {
            CheckTarget::Id(id) => (
                self.verification_in(&mut tx, "id = $1", id).await?,
                "verification_id",
                id.clone(),
            ),
            CheckTarget::Number(number) => (
                self.verification_in(
                    &mut tx,
                    "id = (SELECT id FROM verifications WHERE to_e164 = $1 ORDER BY created_at_ms DESC, id DESC LIMIT 1)",
                    number,
                )
                .await?,
                "to",
                number.clone(),
            ),
        };
        let Some(mut verification) = found else {
            return Err(StoreError::NotFound { field, value });
        };
        let matches = || codes.matches(&verification.code_nonce, &verification.code_check, code);
        let result = match verification.status {
            VerificationStatus::Approved => {
                // Idempotent: the right code stays approved; a wrong one is just wrong.
                let result = if matches() {
                    CheckResult::Approved
                } else {
                    CheckResult::WrongCode
                };
                tx.rollback().await?;
                return Ok((result, verification));
            }
            VerificationStatus::Canceled => CheckResult::Canceled,
            VerificationStatus::Expired => CheckResult::Expired,
            VerificationStatus::MaxAttemptsReached => CheckResult::TooManyAttempts,
            VerificationStatus::Pending if verification.expires_at_ms <= now_ms => {
                self.set_verification_status(
                    &mut tx,
                    &mut verification,
                    VerificationStatus::Expired,
                    EventType::VerificationExpired,
                    "code lifetime ran out",
                    now_ms,
                )
                .await?;
                self.commit_with_events(tx).await?;
                return Ok((CheckResult::Expired, verification));
            }
            VerificationStatus::Pending if verification.checks_left() == 0 => {
                CheckResult::TooManyAttempts
            }
            VerificationStatus::Pending => {
                // A code of the wrong length is an input error; it uses no check.
                if code.len() != verification.code_length as usize {
                    return Err(StoreError::CodeLength {
                        expected: verification.code_length,
                        got: code.len(),
                    });
                }
                verification.checks_used += 1;
                if matches() {
                    self.set_verification_status(
                        &mut tx,
                        &mut verification,
                        VerificationStatus::Approved,
                        EventType::VerificationApproved,
                        "right code checked",
                        now_ms,
                    )
                    .await?;
                    self.commit_with_events(tx).await?;
                    return Ok((CheckResult::Approved, verification));
                }
                let left = verification.checks_left();
                if left == 0 {
                    self.set_verification_status(
                        &mut tx,
                        &mut verification,
                        VerificationStatus::MaxAttemptsReached,
                        EventType::VerificationMaxAttemptsReached,
                        "wrong code; no checks left",
                        now_ms,
                    )
                    .await?;
                } else {
                    self.set_verification_status(
                        &mut tx,
                        &mut verification,
                        VerificationStatus::Pending,
                        EventType::CheckFailed,
                        &format!("wrong code; {left} checks left"),
                        now_ms,
                    )
                    .await?;
                }
                self.commit_with_events(tx).await?;
                return Ok((CheckResult::WrongCode, verification));
            }
        };
        tx.rollback().await?;
        Ok((result, verification))
    }

    async fn cancel(&self, id: &str, now_ms: i64) -> Result<VerificationRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(mut verification) = self.verification_in(&mut tx, "id = $1", id).await? else {
            return Err(StoreError::NotFound {
                field: "verification_id",
                value: id.to_string(),
            });
        };
        match verification.status {
            VerificationStatus::Canceled => {
                tx.rollback().await?;
                Ok(verification)
            }
            VerificationStatus::Pending => {
                self.set_verification_status(
                    &mut tx,
                    &mut verification,
                    VerificationStatus::Canceled,
                    EventType::VerificationCanceled,
                    "canceled by the client",
                    now_ms,
                )
                .await?;
                self.commit_with_events(tx).await?;
                Ok(verification)
            }
            other => Err(StoreError::Conflict(format!(
                "verification_id: verification {id} is {} and can no longer be canceled",
                other.as_str()
            ))),
        }
    }

    async fn claim_due_messages(
        &self,
        claim_token: &str,
        now_ms: i64,
        claim_expires_at_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let skip_locked = self.skip_locked_rows();
        let claim = format!(
            "UPDATE messages SET status = 'sending', claim_token = $1, claim_expires_at_ms = $2, updated_at_ms = $3 \
             WHERE id IN (SELECT id FROM messages WHERE status = 'queued' AND due_at_ms <= $3 \
             ORDER BY due_at_ms, id LIMIT $4{skip_locked}) RETURNING id"
        );
        let verification_columns = VERIFICATION_COLUMNS
            .split(", ")
            .map(|column| format!("v.{column} AS {column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let select = format!(
            "SELECT m.id AS m_id, m.verification_id AS m_verification_id, m.channel AS m_channel, m.carrier AS m_carrier, \
             m.fallback_carriers AS m_fallback_carriers, m.step AS m_step, m.status AS m_status, m.carrier_message_id AS m_carrier_message_id, m.detail AS m_detail, \
             m.created_at_ms AS m_created_at_ms, m.updated_at_ms AS m_updated_at_ms, {verification_columns} \
             FROM messages m JOIN verifications v ON v.id = m.verification_id \
             WHERE m.claim_token = $1 ORDER BY m.due_at_ms, m.id"
        );
        // Claim and read back in one transaction: a claim is never left without its reader.
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(sqlx::AssertSqlSafe(claim))
            .bind(claim_token)
            .bind(claim_expires_at_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(tx.conn())
            .await?;
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(claim_token)
            .fetch_all(tx.conn())
            .await?;
        let messages = rows
            .iter()
            .map(|row| {
                let status: String = row.try_get("m_status")?;
                Ok(ClaimedMessage {
                    message: MessageRecord {
                        id: row.try_get("m_id")?,
                        verification_id: row.try_get("m_verification_id")?,
                        channel: parse_channel(&row.try_get::<String, _>("m_channel")?)?,
                        carrier: row.try_get("m_carrier")?,
                        fallback_carriers: split_carriers(
                            &row.try_get::<String, _>("m_fallback_carriers")?,
                        ),
                        step: parse_u32(row, "m_step")?,
                        status: DeliveryStatus::parse(&status).ok_or_else(|| {
                            StoreError::Corrupt(format!("message status `{status}`"))
                        })?,
                        carrier_message_id: row.try_get("m_carrier_message_id")?,
                        detail: row.try_get("m_detail")?,
                        created_at_ms: row.try_get("m_created_at_ms")?,
                        updated_at_ms: row.try_get("m_updated_at_ms")?,
                    },
                    verification: verification_from_row(row)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.tx.commit().await?;
        Ok(messages)
    }

    async fn record_submitted(
        &self,
        message_id: &str,
        carrier_message_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let detail = format!("accepted by the carrier as {carrier_message_id}");
        self.finish_claimed(
            message_id,
            DeliveryStatus::Submitted,
            EventType::MessageSubmitted,
            Some(carrier_message_id),
            &detail,
            now_ms,
        )
        .await
    }

    async fn record_failed(
        &self,
        message_id: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.finish_claimed(
            message_id,
            DeliveryStatus::Failed,
            EventType::MessageFailed,
            None,
            detail,
            now_ms,
        )
        .await
    }

    async fn record_rerouted(
        &self,
        message_id: &str,
        next_carrier: &str,
        remaining: &[String],
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE messages SET status = 'queued', carrier = $1, fallback_carriers = $2, detail = $3, \
             claim_token = NULL, claim_expires_at_ms = NULL, due_at_ms = $4, updated_at_ms = $4 \
             WHERE id = $5 AND status = 'sending' RETURNING verification_id, channel, carrier",
        )
        .bind(next_carrier)
        .bind(remaining.join(","))
        .bind(detail)
        .bind(now_ms)
        .bind(message_id)
        .fetch_optional(tx.conn())
        .await?;
        self.settle_claimed(
            tx,
            row,
            message_id,
            EventType::MessageRerouted,
            DeliveryStatus::Queued,
            detail,
            now_ms,
        )
        .await
    }

    async fn record_canceled(
        &self,
        message_id: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.finish_claimed(
            message_id,
            DeliveryStatus::Canceled,
            EventType::MessageCanceled,
            None,
            detail,
            now_ms,
        )
        .await
    }

    async fn record_receipt(
        &self,
        carrier: &str,
        carrier_message_id: &str,
        message_id: Option<&str>,
        status: ReceiptStatus,
        detail: &str,
        now_ms: i64,
    ) -> Result<ReceiptOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let found = match message_id {
            Some(id) => {
                sqlx::query("SELECT id, status, carrier, carrier_message_id FROM messages WHERE id = $1")
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, status, carrier, carrier_message_id FROM messages WHERE carrier = $1 AND carrier_message_id = $2",
                )
                .bind(carrier)
                .bind(carrier_message_id)
                .fetch_optional(tx.conn())
                .await?
            }
        };
        let Some(found) = found else {
            tx.rollback().await?;
            return Ok(self
                .notification_receipt(
                    carrier,
                    carrier_message_id,
                    message_id,
                    status,
                    detail,
                    now_ms,
                )
                .await?
                .unwrap_or(ReceiptOutcome::Unknown));
        };
        let id: String = found.try_get("id")?;
        let current: String = found.try_get("status")?;
        let stored_carrier: String = found.try_get("carrier")?;
        if stored_carrier != carrier {
            tx.rollback().await?;
            return Ok(ReceiptOutcome::Unknown);
        }
        match DeliveryStatus::parse(&current) {
            Some(DeliveryStatus::Queued | DeliveryStatus::Sending) => {
                tx.rollback().await?;
                return Ok(ReceiptOutcome::NotYetSubmitted);
            }
            Some(DeliveryStatus::Submitted) => {}
            _ => {
                tx.rollback().await?;
                return Ok(ReceiptOutcome::Duplicate);
            }
        }
        let (new_status, event_type) = match status {
            ReceiptStatus::Delivered => (DeliveryStatus::Delivered, EventType::MessageDelivered),
            ReceiptStatus::Failed => (DeliveryStatus::Failed, EventType::MessageFailed),
        };
        let row = sqlx::query(
            "UPDATE messages SET status = $1, detail = $2, updated_at_ms = $3 WHERE id = $4 AND status = 'submitted' \
             RETURNING verification_id, channel, carrier",
        )
        .bind(new_status.as_str())
        .bind(detail)
        .bind(now_ms)
        .bind(&id)
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(ReceiptOutcome::Duplicate);
        };
        self.record_message_event(&mut tx, &row, &id, event_type, new_status, detail, now_ms)
            .await?;
        self.commit_with_events(tx).await?;
        Ok(ReceiptOutcome::Applied)
    }

    async fn expire_due(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE status = 'pending' AND expires_at_ms <= $1 \
             ORDER BY expires_at_ms LIMIT 100{}",
            self.lock_rows()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .fetch_all(tx.conn())
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let count = rows.len() as u64;
        for row in &rows {
            let mut verification = verification_from_row(row)?;
            self.set_verification_status(
                &mut tx,
                &mut verification,
                VerificationStatus::Expired,
                EventType::VerificationExpired,
                "code lifetime ran out",
                now_ms,
            )
            .await?;
        }
        self.commit_with_events(tx).await?;
        Ok(count)
    }

    async fn due_steps(&self, now_ms: i64, limit: u32) -> Result<Vec<DueStep>, StoreError> {
        let sql = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE status = 'pending' \
             AND step_deadline_ms IS NOT NULL AND step_deadline_ms <= $1 \
             ORDER BY step_deadline_ms, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let verification = verification_from_row(row)?;
            let messages = self.messages(&verification.id).await?;
            due.push(DueStep {
                verification,
                messages,
            });
        }
        Ok(due)
    }

    async fn advance_step(&self, advance: StepAdvance) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let (step, deadline, sends) = match &advance.action {
            StepAction::Send {
                step, deadline_ms, ..
            } => (*step, *deadline_ms, 1i64),
            StepAction::Stop => (advance.expected_step, None, 0i64),
        };
        let moved = sqlx::query(
            "UPDATE verifications SET step = $1, step_deadline_ms = $2, step_failure = '', \
             sends_used = sends_used + $3, updated_at_ms = $4 \
             WHERE id = $5 AND status = 'pending' AND step = $6 AND step_deadline_ms = $7 \
             AND sends_used + $3 <= max_sends AND expires_at_ms > $4",
        )
        .bind(i64::from(step))
        .bind(deadline)
        .bind(sends)
        .bind(advance.now_ms)
        .bind(&advance.verification_id)
        .bind(i64::from(advance.expected_step))
        .bind(advance.expected_deadline_ms)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if moved == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        self.insert_event(
            &mut tx,
            NewEvent::verification(
                EventType::FallbackStep,
                &advance.verification_id,
                VerificationStatus::Pending,
                &advance.detail,
                advance.now_ms,
            ),
        );
        if let StepAction::Send {
            message_id,
            step,
            channel,
            carrier,
            fallback_carriers,
            ..
        } = &advance.action
        {
            sqlx::query("UPDATE verifications SET channel = $1 WHERE id = $2")
                .bind(channel.as_str())
                .bind(&advance.verification_id)
                .execute(tx.conn())
                .await?;
            self.queue_message(
                &mut tx,
                QueuedMessage {
                    id: message_id,
                    verification_id: &advance.verification_id,
                    channel: *channel,
                    carrier,
                    fallback_carriers,
                    step: *step,
                    now_ms: advance.now_ms,
                },
                &advance.detail,
            )
            .await?;
        }
        self.commit_with_events(tx).await?;
        Ok(true)
    }

    async fn create_notification(
        &self,
        notification: NotificationRecord,
    ) -> Result<(NotificationRecord, bool), StoreError> {
        self.insert_notification(notification).await
    }

    async fn notification(&self, id: &str) -> Result<Option<NotificationRecord>, StoreError> {
        self.select_notification(id).await
    }

    async fn claim_due_notifications(
        &self,
        claim_token: &str,
        now_ms: i64,
        claim_expires_at_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        self.claim_notifications(claim_token, now_ms, claim_expires_at_ms, limit)
            .await
    }

    async fn settle_notification(
        &self,
        id: &str,
        outcome: NotificationOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.settle(id, outcome, now_ms).await
    }

    async fn fail_abandoned_claims(&self, now_ms: i64) -> Result<u64, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE status = 'sending' AND claim_expires_at_ms <= $1 LIMIT 500",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        for id in &ids {
            self.record_failed(
                id,
                "dispatcher stopped during submission; not resent to avoid a duplicate (request a resend)",
                now_ms,
            )
            .await?;
        }
        let notifications = self.fail_abandoned_notifications(now_ms).await?;
        Ok(ids.len() as u64 + notifications)
    }

    async fn events_after(
        &self,
        cursor: i64,
        verification_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let columns = "cursor, event_type, verification_id, message_id, channel, carrier, delivery_status, \
                       verification_status, detail, created_at_ms";
        let rows = match verification_id {
            Some(id) => {
                let sql = format!(
                    "SELECT {columns} FROM events WHERE cursor > $1 AND verification_id = $2 ORDER BY cursor LIMIT $3"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(cursor)
                    .bind(id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {columns} FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(cursor)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(event_from_row).collect()
    }

    async fn ensure_secret_fingerprint(&self, fingerprint: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO server_settings (name, value) VALUES ('code_secret_fingerprint', $1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(tx.conn())
        .await?;
        let stored: String = sqlx::query_scalar(
            "SELECT value FROM server_settings WHERE name = 'code_secret_fingerprint'",
        )
        .fetch_one(tx.conn())
        .await?;
        tx.tx.commit().await?;
        if stored != fingerprint {
            return Err(StoreError::Conflict(
                "this database was first used with another code secret: every verifyd sharing a \
                 database needs the same `secret` (or the same data_dir/verifyd-secret.key); with \
                 another secret, codes already sent would not check"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn conversion_counts(&self, since_ms: i64) -> Result<Vec<ConversionCount>, StoreError> {
        super::conversion::conversion_counts(&self.pool, since_ms).await
    }

    fn event_signal(&self) -> watch::Receiver<u64> {
        self.events_changed.subscribe()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres") {
            Ok(Dialect::Postgres)
        } else {
            Err(format!("unsupported database url scheme in `{url}`"))
        }
    }
}
