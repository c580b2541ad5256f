//! The event log: events recorded at commit, read back by cursor, and on PostgreSQL announced to
//! every process with `NOTIFY` so watchers on any replica wake at once.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use verify_carrier::Channel;

use super::Dialect;
use super::rows::parse_text;
use crate::domain::{
    DeliveryStatus, Event, EventKind, MessageFacts, RecordedEvent, Subject, SubjectKind,
    SubjectStatus,
};
use crate::store::{StoreError, StoreResult};

/// Any PostgreSQL advisory lock key: event inserts take it so cursors commit in order.
const EVENT_ORDER_LOCK: i64 = 0x7665_7269_6679; // "verify"
/// The channel events are announced on.
const EVENTS_CHANNEL: &str = "verifyd_events";

const EVENT_COLUMNS: &str = "cursor, event_type, subject_kind, subject_id, message_id, channel, carrier, delivery_status, \
     subject_status, detail, created_at_ms";

/// Inserts `events` as the last statements of a transaction.
pub(super) async fn insert(
    connection: &mut AnyConnection,
    dialect: Dialect,
    events: &[Event],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    if dialect == Dialect::Postgres {
        // Serialise event inserts until commit: cursors then become visible in order, so a
        // watcher that has seen cursor N never later finds an N-1 it skipped. The lock is the
        // last one any transaction takes, held only for these inserts and the commit.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EVENT_ORDER_LOCK)
            .execute(&mut *connection)
            .await?;
    }
    for event in events {
        let message = event.message.as_ref();
        sqlx::query(
            "INSERT INTO events (event_type, subject_kind, subject_id, message_id, channel, carrier, delivery_status, \
             subject_status, detail, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(event.kind.as_str())
        .bind(event.subject.kind().as_str())
        .bind(event.subject.id())
        .bind(message.map(|m| m.id.as_str()))
        .bind(message.map(|m| m.channel.as_str()))
        .bind(message.map(|m| m.carrier.as_str()))
        .bind(message.map(|m| m.status.as_str()))
        .bind(event.subject_status.as_str())
        .bind(&event.detail)
        .bind(event.at_ms)
        .execute(&mut *connection)
        .await?;
    }
    if dialect == Dialect::Postgres {
        // Delivered to listeners when (and only if) the transaction commits.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

pub(super) async fn after(
    pool: &AnyPool,
    cursor: i64,
    subject: Option<&Subject>,
    limit: u32,
) -> StoreResult<Vec<RecordedEvent>> {
    let rows = match subject {
        Some(subject) => {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE cursor > $1 AND subject_id = $2 AND subject_kind = $3 \
                 ORDER BY cursor LIMIT $4"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(cursor)
                .bind(subject.id())
                .bind(subject.kind().as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }
        None => {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(cursor)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(event).collect()
}

fn event(row: &AnyRow) -> StoreResult<RecordedEvent> {
    let kind = parse_text(row, "subject_kind", SubjectKind::parse)?;
    let subject = Subject::new(kind, row.try_get::<String, _>("subject_id")?);
    let status: String = row.try_get("subject_status")?;
    let subject_status = SubjectStatus::parse(kind, &status)
        .ok_or_else(|| StoreError::Corrupt(format!("subject status `{status}`")))?;
    let message_id: Option<String> = row.try_get("message_id")?;
    let message = match message_id {
        Some(id) => Some(MessageFacts {
            id,
            channel: parse_text(row, "channel", Channel::parse)?,
            carrier: row.try_get("carrier")?,
            status: parse_text(row, "delivery_status", DeliveryStatus::parse)?,
        }),
        None => None,
    };
    Ok(RecordedEvent {
        cursor: row.try_get("cursor")?,
        event: Event {
            kind: parse_text(row, "event_type", EventKind::parse)?,
            subject,
            message,
            subject_status,
            detail: row.try_get("detail")?,
            at_ms: row.try_get("created_at_ms")?,
        },
    })
}

/// Listens for events other processes commit and bumps `signal` for each, reconnecting with
/// back-off when the connection drops (watchers poll meanwhile).
pub(super) fn listen(database_url: String, signal: watch::Sender<u64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match sqlx::postgres::PgListener::connect(&database_url).await {
                Ok(mut listener) => match listener.listen(EVENTS_CHANNEL).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(200);
                        // Events may have been committed while nobody listened.
                        signal.send_modify(|version| *version += 1);
                        loop {
                            match listener.recv().await {
                                Ok(_) => signal.send_modify(|version| *version += 1),
                                Err(error) => {
                                    tracing::warn!(%error, "event listener lost its connection; watchers poll until it is back");
                                    break;
                                }
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "LISTEN for events failed"),
                },
                Err(error) => {
                    tracing::warn!(%error, "event listener cannot connect; watchers poll until it can")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}
