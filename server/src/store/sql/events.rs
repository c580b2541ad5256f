//! The event log: events recorded at commit, read back by cursor; on PostgreSQL given their
//! cursors by a sequencer after commit, and announced to every process with `NOTIFY` so
//! watchers on any replica wake at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use verify_carrier::Channel;

use super::Dialect;
use super::db::{self, Row};
use super::rows::parse_text;
use crate::domain::{
    DeliveryStatus, Event, EventKind, MessageFacts, RecordedEvent, Subject, SubjectKind,
    SubjectStatus,
};
use crate::store::{StoreError, StoreResult};

/// The PostgreSQL advisory lock key the event sequencer holds while it gives out cursors.
const SEQUENCER_LOCK: i64 = 0x7665_7269_6679; // "verify"
/// The channel sequenced events are announced on.
const EVENTS_CHANNEL: &str = "verifyd_events";
/// Events the sequencer moves in one pass at most.
const SEQUENCE_BATCH: i64 = 10_000;

const EVENT_COLUMNS: &str = "cursor, event_type, subject_kind, subject_id, message_id, channel, carrier, delivery_status, \
     subject_status, detail, created_at_ms, service_id, previous_delivery_status";
const INSERTED_COLUMNS: &str = "event_type, subject_kind, subject_id, message_id, channel, carrier, delivery_status, \
     subject_status, detail, created_at_ms, service_id, previous_delivery_status";

/// Inserts `events`, in one statement, as the last of a write. On SQLite (one writer, so
/// commit order is insertion order) they get their cursors now; on PostgreSQL they go to the
/// inbox, and the [`Sequencer`] gives them cursors once committed.
pub(super) async fn insert(
    exec: db::Exec<'_>,
    dialect: Dialect,
    events: &[Event],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let table = match dialect {
        Dialect::Sqlite => "events",
        Dialect::Postgres => "event_inbox",
    };
    let mut query = db::query(format!(
        "INSERT INTO {table} ({INSERTED_COLUMNS}) VALUES {}",
        super::value_rows(12, events.len())
    ));
    for event in events {
        let message = event.message.as_ref();
        query = query
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
            .bind(&event.service_id)
            .bind(message.and_then(|m| m.previous_status).map(|s| s.as_str()));
    }
    query.execute(exec).await?;
    Ok(())
}

/// Gives committed PostgreSQL events their cursors, in passes: each pass, alone under an
/// advisory lock (so replicas sharing the database take turns), moves the events committed to
/// the inbox into the log with cursors above every cursor given before, and announces them
/// with `NOTIFY`. An event still in an open transaction is not seen by a pass; the next one
/// gives it a larger cursor. Watchers therefore see cursors only grow.
pub(super) struct Sequencer {
    pool: AnyPool,
    /// Set when this process committed events that no pass has seen yet.
    unsequenced: AtomicBool,
    /// Held for a pass, so that a reader waits for a running one.
    passing: Mutex<()>,
    /// Wakes the background pass.
    wake: Notify,
    /// Bumped after a pass moved events.
    events_changed: watch::Sender<u64>,
}

impl Sequencer {
    pub(super) fn new(pool: AnyPool, events_changed: watch::Sender<u64>) -> Arc<Sequencer> {
        Arc::new(Sequencer {
            pool,
            unsequenced: AtomicBool::new(false),
            passing: Mutex::new(()),
            wake: Notify::new(),
            events_changed,
        })
    }

    /// This process committed events: sequence them soon.
    pub(super) fn committed(&self) {
        self.unsequenced.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Sequences what this process committed, if a pass has not yet: a reader then sees its
    /// own process's events at once.
    pub(super) async fn catch_up(&self) -> StoreResult<()> {
        let _pass = self.passing.lock().await;
        if self.unsequenced.swap(false, Ordering::SeqCst) {
            self.drain().await?;
        }
        Ok(())
    }

    /// Passes until the inbox is empty (as far as committed events go).
    async fn drain(&self) -> StoreResult<()> {
        loop {
            let moved = self.pass().await?;
            if moved > 0 {
                self.events_changed.send_modify(|version| *version += 1);
            }
            if moved < SEQUENCE_BATCH as u64 {
                return Ok(());
            }
        }
    }

    /// One pass; returns how many events it moved.
    async fn pass(&self) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        db::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .execute(db::Exec::Connection(&mut tx))
            .await?;
        let sql = format!(
            "WITH moved AS (DELETE FROM event_inbox WHERE id IN \
             (SELECT id FROM event_inbox ORDER BY id LIMIT $1) RETURNING id, {INSERTED_COLUMNS}) \
             INSERT INTO events (cursor, {INSERTED_COLUMNS}) \
             SELECT (SELECT COALESCE(max(cursor), 0) FROM events) + row_number() OVER (ORDER BY id), \
             {INSERTED_COLUMNS} FROM moved"
        );
        let moved = db::query(sql)
            .bind(SEQUENCE_BATCH)
            .execute(db::Exec::Connection(&mut tx))
            .await?
            .rows_affected();
        if moved > 0 {
            // Delivered to listeners when (and only if) the pass commits.
            db::query("SELECT pg_notify($1, '')")
                .bind(EVENTS_CHANNEL)
                .execute(db::Exec::Connection(&mut tx))
                .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Runs passes whenever this process commits events, and every second for events other
    /// processes committed and left (a replica that stopped before its pass).
    pub(super) fn run(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        self.unsequenced.store(true, Ordering::SeqCst);
                    }
                }
                if let Err(error) = self.catch_up().await {
                    self.unsequenced.store(true, Ordering::SeqCst);
                    tracing::warn!(%error, "sequencing events failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
    }
}

pub(super) async fn after(
    exec: db::Exec<'_>,
    cursor: i64,
    subject: Option<&Subject>,
    service_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<RecordedEvent>> {
    let rows = match (subject, service_id) {
        (Some(subject), _) => {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE cursor > $1 AND subject_id = $2 AND subject_kind = $3 \
                 ORDER BY cursor LIMIT $4"
            );
            db::query(sql)
                .bind(cursor)
                .bind(subject.id())
                .bind(subject.kind().as_str())
                .bind(i64::from(limit))
                .fetch_all(exec)
                .await?
        }
        (None, Some(service_id)) => {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE service_id = $1 AND cursor > $2 \
                 ORDER BY cursor LIMIT $3"
            );
            db::query(sql)
                .bind(service_id)
                .bind(cursor)
                .bind(i64::from(limit))
                .fetch_all(exec)
                .await?
        }
        (None, None) => {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2"
            );
            db::query(sql)
                .bind(cursor)
                .bind(i64::from(limit))
                .fetch_all(exec)
                .await?
        }
    };
    rows.iter().map(event).collect()
}

/// The event at `cursor`.
pub(super) async fn at(exec: db::Exec<'_>, cursor: i64) -> StoreResult<Option<RecordedEvent>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE cursor = $1");
    let row = db::query(sql).bind(cursor).fetch_optional(exec).await?;
    row.as_ref().map(event).transpose()
}

/// The cursor of the latest event (0 when there is none).
pub(super) async fn latest_cursor(exec: db::Exec<'_>) -> StoreResult<i64> {
    db::query("SELECT COALESCE(max(cursor), 0) AS latest FROM events")
        .fetch_one(exec)
        .await?
        .try_get("latest")
}

/// The subjects of the events after `cursor`, oldest first, at most `limit`, each with its
/// event's cursor: what a cache of subjects needs to know to forget the ones that changed.
pub(super) async fn subjects_after(
    exec: db::Exec<'_>,
    cursor: i64,
    limit: u32,
) -> StoreResult<Vec<(i64, Subject)>> {
    let rows = db::query(
        "SELECT cursor, subject_kind, subject_id FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2",
    )
    .bind(cursor)
    .bind(i64::from(limit))
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|row| {
            let kind = parse_text(row, "subject_kind", SubjectKind::parse)?;
            Ok((
                row.try_get("cursor")?,
                Subject::new(kind, row.try_get::<String>("subject_id")?),
            ))
        })
        .collect()
}

fn event(row: &Row) -> StoreResult<RecordedEvent> {
    let kind = parse_text(row, "subject_kind", SubjectKind::parse)?;
    let subject = Subject::new(kind, row.try_get::<String>("subject_id")?);
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
            previous_status: row
                .try_get::<Option<String>>("previous_delivery_status")?
                .map(|text| {
                    DeliveryStatus::parse(&text).ok_or_else(|| {
                        StoreError::Corrupt(format!("previous delivery status `{text}`"))
                    })
                })
                .transpose()?,
        }),
        None => None,
    };
    Ok(RecordedEvent {
        cursor: row.try_get("cursor")?,
        event: Event {
            kind: parse_text(row, "event_type", EventKind::parse)?,
            service_id: row.try_get("service_id")?,
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
