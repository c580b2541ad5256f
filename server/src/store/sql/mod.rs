//! The store on SQLite and PostgreSQL through sqlx's `Any` driver: one set of statements, with
//! the few dialect differences (row locks, write transactions, event ordering, notifications
//! across processes) switched here.

pub mod conversion;
mod events;
mod notifications;
mod outbox;
mod receipts;
mod rows;
mod verifications;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};
use tokio::task::JoinHandle;

use super::{StoreError, StoreResult};
use crate::domain::{Event, Notification, OutboxMessage, RecordedEvent, Subject, Verification};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The SQL store: a pool, its dialect, and the signal that wakes watchers and dispatchers when
/// events are recorded (by this process, or by another one on PostgreSQL).
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite has one writer at a time: write transactions of this process queue here, in
    /// order, instead of racing for the database lock in SQLite's busy handler.
    write_gate: Option<Arc<Mutex<()>>>,
    events_changed: watch::Sender<u64>,
    listener: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

/// A write transaction and the events it will record. Dropping it without
/// [`commit`](WriteTx::commit) rolls it back.
pub struct WriteTx<'s> {
    tx: Transaction<'static, Any>,
    store: &'s SqlStore,
    events: Vec<Event>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTx<'_> {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.store.dialect
    }

    /// ` FOR UPDATE` on PostgreSQL; SQLite's write transaction already excludes other writers.
    pub(crate) fn lock_rows(&self) -> &'static str {
        match self.store.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Commits, with the recorded events; watchers in this process wake at once, and on
    /// PostgreSQL those of every other process through `NOTIFY`.
    pub async fn commit(mut self) -> StoreResult<()> {
        let events = std::mem::take(&mut self.events);
        let dialect = self.store.dialect;
        events::insert(&mut self.tx, dialect, &events).await?;
        self.tx.commit().await?;
        if !events.is_empty() {
            self.store
                .events_changed
                .send_modify(|version| *version += 1);
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(self) -> StoreResult<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl super::EventLog for WriteTx<'_> {
    fn record(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
    }
}

impl SqlStore {
    /// Connects to `database_url` (`sqlite://...` or `postgres://...`), applies migrations,
    /// and on PostgreSQL listens for events other processes record.
    pub async fn connect(database_url: &str) -> StoreResult<SqlStore> {
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
        let listener = (dialect == Dialect::Postgres)
            .then(|| events::listen(database_url.to_string(), events_changed.clone()));
        Ok(SqlStore {
            pool,
            dialect,
            write_gate: (dialect == Dialect::Sqlite).then(|| Arc::new(Mutex::new(()))),
            events_changed,
            listener,
        })
    }

    /// Begins a write transaction. On SQLite it waits its turn among this process's writers,
    /// then takes the write lock up front (`BEGIN IMMEDIATE`), so a read-then-write
    /// transaction never fails on a lock upgrade (other processes still wait in SQLite's busy
    /// handler).
    pub async fn begin(&self) -> StoreResult<WriteTx<'_>> {
        let turn = match &self.write_gate {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        };
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx {
            tx,
            store: self,
            events: Vec::new(),
            _turn: turn,
        })
    }

    /// A signal that changes whenever events are recorded: by this process at once, by other
    /// processes sharing a PostgreSQL database through `LISTEN` (watchers also poll, in case
    /// that connection is down).
    pub fn event_signal(&self) -> watch::Receiver<u64> {
        self.events_changed.subscribe()
    }

    /// A verification by id.
    pub async fn verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        rows::by_id(&self.pool, &rows::VERIFICATIONS, id).await
    }

    /// The most recent verification of a number (E.164), read without a lock.
    pub async fn latest_verification_of(&self, e164: &str) -> StoreResult<Option<Verification>> {
        verifications::latest_of(&self.pool, e164).await
    }

    /// Verifications by id, in no particular order; unknown ids are left out.
    pub async fn verifications(&self, ids: &[String]) -> StoreResult<Vec<Verification>> {
        rows::by_ids(&self.pool, &rows::VERIFICATIONS, ids).await
    }

    /// A notification by id.
    pub async fn notification(&self, id: &str) -> StoreResult<Option<Notification>> {
        rows::by_id(&self.pool, &rows::NOTIFICATIONS, id).await
    }

    /// Notifications by id, in no particular order; unknown ids are left out.
    pub async fn notifications(&self, ids: &[String]) -> StoreResult<Vec<Notification>> {
        rows::by_ids(&self.pool, &rows::NOTIFICATIONS, ids).await
    }

    /// A subject's messages, oldest first.
    pub async fn messages_of(&self, subject: &Subject) -> StoreResult<Vec<OutboxMessage>> {
        outbox::of_subject(&self.pool, subject).await
    }

    /// Pending verifications whose running workflow step is over at `now_ms`, at most `limit`.
    pub async fn verifications_with_due_steps(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Verification>> {
        verifications::with_due_steps(&self.pool, now_ms, limit).await
    }

    /// Whether a subject exists.
    pub async fn subject_exists(&self, subject: &Subject) -> StoreResult<bool> {
        Ok(match subject {
            Subject::Verification(id) => self.verification(id).await?.is_some(),
            Subject::Notification(id) => self.notification(id).await?.is_some(),
        })
    }

    /// Events after `cursor`, optionally of one subject, oldest first.
    pub async fn events_after(
        &self,
        cursor: i64,
        subject: Option<&Subject>,
        limit: u32,
    ) -> StoreResult<Vec<RecordedEvent>> {
        events::after(&self.pool, cursor, subject, limit).await
    }

    /// Conversion counts per region, channel and carrier over the messages queued from
    /// `since_ms` on, for the `adaptive` fallback strategy.
    pub async fn conversion_counts(
        &self,
        since_ms: i64,
    ) -> StoreResult<Vec<conversion::ConversionCount>> {
        conversion::conversion_counts(&self.pool, since_ms).await
    }

    /// Records the code secret's fingerprint on first use and says whether it matches the one
    /// recorded (replicas with different secrets must not share a database).
    pub async fn secret_fingerprint_matches(&self, fingerprint: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
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
        tx.commit().await?;
        Ok(stored == fingerprint)
    }

    /// Stops listening and closes connections.
    pub async fn close(&self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
        self.pool.close().await;
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// `$first, $first+1, ...` for `count` values, for an `IN (...)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the error is a unique-key violation (another writer got there first).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}
