//! The store on SQLite (through `rusqlite`, in this process) and PostgreSQL (through sqlx):
//! one set of statements, with the few dialect differences (row locks, write transactions,
//! event ordering, notifications across processes) switched here.

mod blocks;
mod campaigns;
pub mod conversion;
mod db;
mod events;
pub mod listing;
mod notifications;
mod outbox;
mod rate_counts;
mod reach;
mod receipts;
mod rollups;
mod rows;
pub mod services;
mod upkeep;
mod verifications;
pub mod webhooks;
mod workers;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{StoreError, StoreResult};
use crate::domain::campaign::{Recipient, RecipientTally, Rejection};
use crate::domain::{
    Campaign, CampaignStatus, Event, Notification, OutboxMessage, RecordedEvent, Subject,
    Verification,
};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The SQL store: the connections of its database, and the signal that wakes watchers and
/// dispatchers when events are recorded (by this process, or by another one on PostgreSQL).
pub struct SqlStore {
    backend: Backend,
    events_changed: watch::Sender<u64>,
    /// PostgreSQL: the sequencer's background passes, the listener for other processes'
    /// events, and the upkeep of the busy tables.
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect())
            .finish_non_exhaustive()
    }
}

/// The connections of each database.
enum Backend {
    Sqlite {
        /// Connections for reads, used in turn (WAL: readers never wait for the writer).
        readers: Vec<Mutex<rusqlite::Connection>>,
        next_reader: AtomicUsize,
        /// Group commit on the one writer connection.
        writer: writer::Writer,
    },
    Postgres {
        /// The pool for requests' reads and writes.
        requests: AnyPool,
        /// A smaller one for the dispatcher and the event sequencer, so that a burst of
        /// requests holding every connection does not stall sending.
        background: AnyPool,
        /// Gives committed events their cursors.
        sequencer: Arc<events::Sequencer>,
    },
}

/// PostgreSQL connections for requests, and for the dispatcher and the sequencer.
const POSTGRES_REQUEST_CONNECTIONS: u32 = 16;
const POSTGRES_BACKGROUND_CONNECTIONS: u32 = 8;

/// Prepared statements each connection keeps: more than the store's statement forms (`IN`
/// lists and multi-row inserts take a few lengths each), so that none is prepared again on
/// every use (sqlx's default for PostgreSQL is 100).
const STATEMENT_CACHE: usize = 512;
/// The SQLite writer's page cache, in KiB.
const SQLITE_WRITER_CACHE_KIB: u32 = 16 * 1024;

/// Rows in one multi-row statement at most (15 columns each at most: 15,360 parameters).
const MAX_CHUNK: usize = 1024;

/// SQLite connections for reads.
const SQLITE_READERS: usize = 4;
/// How long an SQLite connection waits for another process's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A write transaction and the events it will record. On SQLite it is a savepoint in the
/// writer's batch, which commits with the writes that arrived together (see `writer`); on
/// PostgreSQL a transaction of its own. Dropping one from [`SqlStore::begin`] without
/// [`commit`](WriteTx::commit) rolls it back, alone.
pub struct WriteTx {
    inner: Transactional,
    dialect: Dialect,
    /// PostgreSQL: told when events were committed.
    sequencer: Option<Arc<events::Sequencer>>,
    events: Vec<Event>,
    /// Messages saved and not yet written, in the order saved. They are written together
    /// before the next statement of this write runs, or before its savepoint ends or it
    /// commits, so that the write reads what it saved; a message saved several times by then
    /// is written once.
    unsaved_messages: Vec<OutboxMessage>,
    /// Rolled back at its end though it succeeded (it wrote nothing worth keeping).
    discarded: bool,
}

/// A write's work, boxed for the writer's thread.
type Work<R, E> = Box<dyn for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<R, E>> + Send>;

/// What a write runs in.
enum Transactional {
    /// SQLite, on the writer's thread: a savepoint in its batch.
    InWriter(writer::SharedConnection),
    /// SQLite, the writer's connection held from a task: a savepoint in its batch.
    Held(writer::Held),
    /// PostgreSQL: a transaction of its own.
    Own(sqlx::Transaction<'static, sqlx::Any>),
}

impl WriteTx {
    fn new(
        inner: Transactional,
        dialect: Dialect,
        sequencer: Option<Arc<events::Sequencer>>,
    ) -> Self {
        WriteTx {
            inner,
            dialect,
            sequencer,
            events: Vec::new(),
            unsaved_messages: Vec::new(),
            discarded: false,
        }
    }

    /// Where this write's next statement runs, once the messages it saved are written.
    pub(crate) async fn conn(&mut self) -> StoreResult<db::Exec<'_>> {
        self.write_saved_messages().await?;
        Ok(self.conn_now())
    }

    /// Where this write's statements run, with no regard for messages saved and not yet
    /// written: for those that write them, and for rolling back.
    fn conn_now(&mut self) -> db::Exec<'_> {
        match &mut self.inner {
            Transactional::InWriter(connection) => db::Exec::Sqlite(connection),
            Transactional::Held(held) => db::Exec::Sqlite(held.connection()),
            Transactional::Own(tx) => db::Exec::Connection(tx),
        }
    }

    /// Rolls this write back when it ends, though it succeeds: it wrote nothing worth keeping
    /// (a write run by [`SqlStore::write`]).
    pub fn discard(&mut self) {
        self.discarded = true;
    }

    /// Whether SQLite ended this write's transaction by itself (it rolls the whole
    /// transaction back on some errors, such as a full disk). PostgreSQL refuses every
    /// statement of an aborted transaction instead.
    fn transaction_ended(&self) -> bool {
        let connection = match &self.inner {
            Transactional::InWriter(connection) => connection.as_ref(),
            Transactional::Held(held) => held.connection(),
            Transactional::Own(_) => return false,
        };
        connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_autocommit()
    }

    /// Inserts the events recorded, as the last of the write (in chunks of a few sizes).
    async fn insert_events(&mut self, dialect: Dialect, events: &[Event]) -> StoreResult<()> {
        for chunk in in_chunks(events) {
            events::insert(self.conn().await?, dialect, chunk).await?;
        }
        Ok(())
    }

    /// Runs `work` in a savepoint of this write: when it fails, or discards what it did (see
    /// [`discard`](WriteTx::discard)), its statements and the events it recorded are rolled
    /// back and the rest of the write stands. For a write that does several requests' work,
    /// each failing alone.
    pub async fn isolated<R, E, F>(&mut self, work: F) -> Result<R, E>
    where
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<R, E>>,
        E: From<StoreError>,
    {
        if self.transaction_ended() {
            // SQLite rolled the whole transaction back after an error: a savepoint now would
            // begin a transaction of its own, outside the batch.
            return Err(E::from(StoreError::Commit(
                "SQLite rolled the write back after an error in it".into(),
            )));
        }
        // Messages saved before the savepoint are written before it.
        self.write_saved_messages().await?;
        let recorded = self.events.len();
        let discarded = std::mem::replace(&mut self.discarded, false);
        db::query("SAVEPOINT isolated")
            .execute(self.conn_now())
            .await?;
        let mut result = work(self).await;
        if result.is_ok()
            && !self.discarded
            && let Err(error) = self.write_saved_messages().await
        {
            result = Err(E::from(error));
        }
        let keep = result.is_ok() && !self.discarded;
        self.discarded = discarded;
        if !keep {
            self.unsaved_messages.clear();
            db::query("ROLLBACK TO SAVEPOINT isolated")
                .execute(self.conn_now())
                .await?;
            self.events.truncate(recorded);
        }
        db::query("RELEASE SAVEPOINT isolated")
            .execute(self.conn_now())
            .await?;
        result
    }

    /// Writes the messages saved since the last statement, each once, as last saved: on
    /// PostgreSQL with one statement for each chunk, on SQLite one by one (its statements
    /// cost no round trip).
    async fn write_saved_messages(&mut self) -> StoreResult<()> {
        if self.unsaved_messages.is_empty() {
            return Ok(());
        }
        let mut messages = std::mem::take(&mut self.unsaved_messages);
        // Sorting is stable: among the saves of one message, the last stays last (first,
        // once reversed), and it is the one `dedup_by` keeps.
        messages.sort_by(|a, b| a.id.cmp(&b.id));
        messages.reverse();
        messages.dedup_by(|removed, kept| removed.id == kept.id);
        match self.dialect {
            Dialect::Sqlite => {
                for message in &messages {
                    outbox::update_message(self.conn_now(), message).await?;
                }
            }
            Dialect::Postgres => {
                for chunk in in_chunks(&messages) {
                    outbox::update_messages(self.conn_now(), chunk).await?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether every row this transaction reads is as good as locked: on SQLite the one writer
    /// excludes every other writer, so nothing read can change before the commit.
    pub(crate) fn reads_are_locked(&self) -> bool {
        self.dialect() == Dialect::Sqlite
    }

    /// ` FOR UPDATE` on PostgreSQL; SQLite's write transaction already excludes other writers.
    pub(crate) fn lock_rows(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Commits, with the recorded events: returns once the batch holding this write is
    /// durably committed. Watchers in this process wake at once, and on PostgreSQL those of
    /// every other process through `NOTIFY`.
    pub async fn commit(mut self) -> StoreResult<()> {
        self.write_saved_messages().await?;
        let events = std::mem::take(&mut self.events);
        let dialect = self.dialect();
        self.insert_events(dialect, &events).await?;
        match self.inner {
            Transactional::Held(held) => {
                held.end(writer::Kept::Yes {
                    has_events: !events.is_empty(),
                })
                .await?;
            }
            Transactional::InWriter(_) => return Err(in_writer_misuse()),
            Transactional::Own(tx) => {
                tx.commit().await?;
                if !events.is_empty()
                    && let Some(sequencer) = &self.sequencer
                {
                    sequencer.committed();
                }
            }
        }
        crate::metrics::record_committed(&events);
        Ok(())
    }

    /// Rolls back this write (others in its batch are untouched).
    pub async fn rollback(self) -> StoreResult<()> {
        match self.inner {
            Transactional::Held(held) => held.end(writer::Kept::No).await,
            Transactional::InWriter(_) => Err(in_writer_misuse()),
            Transactional::Own(tx) => Ok(tx.rollback().await?),
        }
    }

    /// On the writer's thread, after the work succeeded: records its events and says whether
    /// it is kept, with the events (counted once the batch commits).
    async fn finish_in_writer(&mut self) -> StoreResult<(writer::Kept, Vec<Event>)> {
        if self.discarded {
            return Ok((writer::Kept::No, Vec::new()));
        }
        self.write_saved_messages().await?;
        let events = std::mem::take(&mut self.events);
        self.insert_events(Dialect::Sqlite, &events).await?;
        let kept = writer::Kept::Yes {
            has_events: !events.is_empty(),
        };
        Ok((kept, events))
    }
}

/// What the caller of a write that panicked gets.
fn write_panicked() -> StoreError {
    StoreError::Commit("the write panicked".into())
}

/// A write run on the writer's thread is ended by the writer, not by its work.
fn in_writer_misuse() -> StoreError {
    StoreError::Commit("a write run by the writer is ended by it".into())
}

impl super::EventLog for WriteTx {
    fn record(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
    }
}

impl SqlStore {
    /// Connects to `database_url` (`sqlite://...` or `postgres://...`), applies migrations,
    /// and on PostgreSQL listens for events other processes record.
    pub async fn connect(database_url: &str) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let (events_changed, _) = watch::channel(0);
        let mut background = Vec::new();
        let backend = if database_url.starts_with("sqlite:") {
            let path = sqlite_path(database_url);
            reach::sqlite(std::path::Path::new(&path))?;
            migrate_sqlite(database_url).await?;
            let mut readers = Vec::new();
            for _ in 0..SQLITE_READERS {
                readers.push(Mutex::new(open_sqlite(&path)?));
            }
            let signal = events_changed.clone();
            let writer_connection = open_sqlite(&path)?;
            // The writer's page cache holds the indexes' pages a large insert (a campaign's
            // recipients) touches again and again; with the default 2 MiB it reads each page
            // back from the OS for every few rows.
            writer_connection
                .execute_batch(&format!("PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB};"))?;
            let writer = writer::Writer::new(
                writer_connection,
                &path,
                Arc::new(move |has_events| {
                    if has_events {
                        signal.send_modify(|version| *version += 1);
                    }
                }),
            )?;
            Backend::Sqlite {
                readers,
                next_reader: AtomicUsize::new(0),
                writer,
            }
        } else {
            reach::postgres(database_url).await?;
            let url = with_statement_cache(database_url);
            let pool = |connections| {
                AnyPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&url)
            };
            let requests = pool(POSTGRES_REQUEST_CONNECTIONS).await?;
            sqlx::migrate!("migrations/postgres")
                .run(&requests)
                .await
                .map_err(|e| StoreError::Database(e.into()))?;
            let background_pool = pool(POSTGRES_BACKGROUND_CONNECTIONS).await?;
            let sequencer = events::Sequencer::new(background_pool.clone(), events_changed.clone());
            background.push(Arc::clone(&sequencer).run());
            background.push(upkeep::keep_up(background_pool.clone()));
            background.push(events::listen(
                database_url.to_string(),
                events_changed.clone(),
            ));
            Backend::Postgres {
                requests,
                background: background_pool,
                sequencer,
            }
        };
        Ok(SqlStore {
            backend,
            events_changed,
            background,
        })
    }

    /// Which database this is.
    fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// Begins a write transaction. On SQLite it waits for the writer and joins its batch, which
    /// holds the write lock from its start (`BEGIN IMMEDIATE`), so a read-then-write never
    /// fails on a lock upgrade (other processes wait in SQLite's busy handler). On PostgreSQL
    /// it is a transaction of its own on a pooled connection.
    pub async fn begin(&self) -> StoreResult<WriteTx> {
        self.begin_on(false).await
    }

    /// Begins a write transaction for the dispatcher: as [`begin`](SqlStore::begin), on
    /// PostgreSQL on a connection of its own pool.
    pub async fn begin_background(&self) -> StoreResult<WriteTx> {
        self.begin_on(true).await
    }

    async fn begin_on(&self, background_work: bool) -> StoreResult<WriteTx> {
        Ok(match &self.backend {
            Backend::Sqlite { writer, .. } => WriteTx::new(
                Transactional::Held(writer.hold().await?),
                Dialect::Sqlite,
                None,
            ),
            Backend::Postgres {
                requests,
                background,
                sequencer,
            } => {
                let pool = if background_work {
                    background
                } else {
                    requests
                };
                WriteTx::new(
                    Transactional::Own(pool.begin().await?),
                    Dialect::Postgres,
                    Some(Arc::clone(sequencer)),
                )
            }
        })
    }

    /// Runs `work` as one write transaction and commits it when it returns `Ok`, unless it
    /// called [`WriteTx::discard`]; when it fails, nothing it wrote is kept. Returns once the
    /// commit is durable. On SQLite the work runs on the writer's thread, in the batch of
    /// writes that commit together (its awaits must not wait for other tasks: the store's
    /// own calls complete at once there); on PostgreSQL in this task, in a transaction of its
    /// own.
    pub async fn write<R, E, F>(&self, work: F) -> Result<R, E>
    where
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_on(false, Box::new(work)).await
    }

    /// As [`write`](SqlStore::write), for the dispatcher: on PostgreSQL on a connection of its
    /// own pool.
    pub async fn write_background<R, E, F>(&self, work: F) -> Result<R, E>
    where
        F: for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<R, E>> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_on(true, Box::new(work)).await
    }

    async fn write_on<R, E>(&self, background_work: bool, work: Work<R, E>) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let Backend::Sqlite { writer, .. } = &self.backend else {
            let mut tx = self.begin_on(background_work).await?;
            // A panic fails the write alone, as on the writer's thread.
            let finished = {
                let started =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut tx)));
                match started {
                    Ok(future) => {
                        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(future))
                            .await
                            .ok()
                    }
                    Err(_) => None,
                }
            };
            let worked = finished.unwrap_or_else(|| {
                tracing::error!("a write panicked; it is rolled back");
                Err(E::from(write_panicked()))
            });
            return match worked {
                Ok(value) if tx.discarded => {
                    tx.rollback().await?;
                    Ok(value)
                }
                Ok(value) => {
                    tx.commit().await?;
                    Ok(value)
                }
                Err(error) => {
                    // Dropping the transaction rolls it back too; this says so at once.
                    let _ = tx.rollback().await;
                    Err(error)
                }
            };
        };
        type Answer<R, E> = Option<(Result<R, E>, Vec<Event>)>;
        let answer: Arc<Mutex<Answer<R, E>>> = Arc::new(Mutex::new(None));
        let filled = Arc::clone(&answer);
        // The work runs on the writer's thread, inside the caller's span (what it queues keeps
        // the caller's trace).
        let span = tracing::Span::current();
        writer
            .run(move |connection| {
                let _entered = span.enter();
                let mut tx = WriteTx::new(
                    Transactional::InWriter(Arc::clone(connection)),
                    Dialect::Sqlite,
                    None,
                );
                let (result, kept, events) = futures::executor::block_on(async {
                    match work(&mut tx).await {
                        Ok(value) => match tx.finish_in_writer().await {
                            Ok((kept, events)) => (Ok(value), kept, events),
                            Err(error) => (Err(E::from(error)), writer::Kept::No, Vec::new()),
                        },
                        Err(error) => (Err(error), writer::Kept::No, Vec::new()),
                    }
                });
                *filled.lock().unwrap_or_else(PoisonError::into_inner) = Some((result, events));
                kept
            })
            .await?;
        let answered = answer.lock().unwrap_or_else(PoisonError::into_inner).take();
        match answered {
            Some((result, events)) => {
                // The batch holding the write committed (`run` failed otherwise).
                crate::metrics::record_committed(&events);
                result
            }
            None => Err(E::from(write_panicked())),
        }
    }

    /// Where a read runs: an SQLite reader (in turn) or the PostgreSQL pool.
    fn read(&self) -> db::Exec<'_> {
        match &self.backend {
            Backend::Sqlite {
                readers,
                next_reader,
                writer,
            } => {
                let start = next_reader.fetch_add(1, Ordering::Relaxed);
                // A free one if there is one, else the next in turn.
                let index = (0..readers.len())
                    .map(|offset| (start + offset) % readers.len())
                    .find(|&index| readers[index].try_lock().is_ok())
                    .unwrap_or(start % readers.len());
                db::Exec::SqliteRead(&readers[index], writer.durability())
            }
            Backend::Postgres { requests, .. } => db::Exec::Pool(requests),
        }
    }

    /// Where a read for the dispatcher runs: as [`read`](SqlStore::read), but on PostgreSQL
    /// through the dispatcher's pool.
    fn read_background(&self) -> db::Exec<'_> {
        match &self.backend {
            Backend::Postgres { background, .. } => db::Exec::Pool(background),
            Backend::Sqlite { .. } => self.read(),
        }
    }

    /// A signal that changes whenever events are recorded: by this process at once, by other
    /// processes sharing a PostgreSQL database through `LISTEN` (watchers also poll, in case
    /// that connection is down).
    pub fn event_signal(&self) -> watch::Receiver<u64> {
        self.events_changed.subscribe()
    }

    /// A verification by id.
    pub async fn verification(&self, id: &str) -> StoreResult<Option<Verification>> {
        rows::by_id(self.read(), &rows::VERIFICATIONS, id).await
    }

    /// The most recent verification of a number (E.164) in a service, read without a lock.
    pub async fn latest_verification_of(
        &self,
        service_id: &str,
        e164: &str,
    ) -> StoreResult<Option<Verification>> {
        verifications::latest_of(self.read(), service_id, e164).await
    }

    /// A page of verifications, newest first.
    pub async fn list_verifications(
        &self,
        filter: &listing::ListFilter,
    ) -> StoreResult<Vec<Verification>> {
        listing::verifications(self.read(), filter).await
    }

    /// A page of notifications, newest first, each with its (latest) message.
    pub async fn list_notifications(
        &self,
        filter: &listing::ListFilter,
    ) -> StoreResult<Vec<(Notification, OutboxMessage)>> {
        let notifications = listing::notifications(self.read(), filter).await?;
        let ids: Vec<String> = notifications.iter().map(|n| n.id.clone()).collect();
        let mut latest: std::collections::HashMap<String, OutboxMessage> =
            std::collections::HashMap::new();
        for message in listing::messages_of_subjects(self.read(), &ids).await? {
            latest.insert(message.subject.id().to_string(), message);
        }
        notifications
            .into_iter()
            .map(|notification| {
                let message = latest.remove(&notification.id).ok_or_else(|| {
                    StoreError::Corrupt(format!("notification {} has no message", notification.id))
                })?;
                Ok((notification, message))
            })
            .collect()
    }

    /// The subjects of a service with an event whose webhook delivery is being retried.
    pub async fn webhook_blocked_subjects(
        &self,
        service_id: &str,
    ) -> StoreResult<std::collections::HashSet<String>> {
        webhooks::blocked_subjects(self.read_background(), service_id).await
    }

    /// The webhook retries due at `now_ms`, each the earliest of its subject.
    pub async fn due_webhook_retries(
        &self,
        service_id: &str,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<webhooks::WebhookRetry>> {
        webhooks::due_heads(self.read_background(), service_id, now_ms, limit).await
    }

    /// How far a service's webhook went (`None` before it first ran) and its failed
    /// deliveries, oldest first.
    pub async fn webhook_deliveries(
        &self,
        service_id: &str,
        limit: u32,
    ) -> StoreResult<(Option<i64>, Vec<webhooks::WebhookRetry>)> {
        let cursor = webhooks::cursor_of(self.read(), service_id).await?;
        let retries = webhooks::retries_of(self.read(), service_id, limit).await?;
        Ok((cursor, retries))
    }

    /// The event at `cursor`.
    pub async fn event_at(&self, cursor: i64) -> StoreResult<Option<RecordedEvent>> {
        events::at(self.read_background(), cursor).await
    }

    /// Every service stored through the API, by id.
    pub async fn services(&self) -> StoreResult<Vec<services::StoredService>> {
        services::all(self.read_background()).await
    }

    /// Verifications by id, in no particular order (unknown ids are left out), read for the
    /// dispatcher (on PostgreSQL through its own pool, so a burst of requests does not hold
    /// sending up).
    pub async fn verifications_for_dispatch(
        &self,
        ids: &[String],
    ) -> StoreResult<Vec<Verification>> {
        rows::by_ids(self.read_background(), &rows::VERIFICATIONS, ids).await
    }

    /// Notifications by id, read for the dispatcher (see
    /// [`verifications_for_dispatch`](SqlStore::verifications_for_dispatch)).
    pub async fn notifications_for_dispatch(
        &self,
        ids: &[String],
    ) -> StoreResult<Vec<Notification>> {
        rows::by_ids(self.read_background(), &rows::NOTIFICATIONS, ids).await
    }

    /// Blocks, newest first: those in force at `active_at`, or with `None` every block kept
    /// (ended and lifted ones for a week); at most `limit`.
    pub async fn list_blocks(
        &self,
        active_at: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<verify_policy::abuse::Block>> {
        blocks::list(self.read(), active_at, limit).await
    }

    /// Every block that ends at `since_ms` or later, for the abuse guard's view of them (read
    /// in the background pool).
    pub async fn blocks_since(
        &self,
        since_ms: i64,
    ) -> StoreResult<Vec<verify_policy::abuse::Block>> {
        blocks::since(self.read_background(), since_ms).await
    }

    /// `(bucket, slot, count)` of the rate counts whose bucket starts with `prefix`, in slots
    /// from `since_slot_ms` on (read in the background pool).
    pub async fn rate_counts_under(
        &self,
        prefix: &str,
        since_slot_ms: i64,
    ) -> StoreResult<Vec<(String, i64, i64)>> {
        rate_counts::under(self.read_background(), prefix, since_slot_ms).await
    }

    /// A notification by id.
    pub async fn notification(&self, id: &str) -> StoreResult<Option<Notification>> {
        rows::by_id(self.read(), &rows::NOTIFICATIONS, id).await
    }

    /// A campaign by id.
    pub async fn campaign(&self, id: &str) -> StoreResult<Option<Campaign>> {
        campaigns::by_id(self.read(), id).await
    }

    /// Campaigns in `statuses`, oldest first, read for the campaign sender.
    pub async fn campaigns_in(&self, statuses: &[CampaignStatus]) -> StoreResult<Vec<Campaign>> {
        campaigns::in_statuses(self.read_background(), statuses).await
    }

    /// A page of campaigns, newest first (see `campaigns::list`).
    pub async fn list_campaigns(
        &self,
        service_id: Option<&str>,
        statuses: &[CampaignStatus],
        before_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Campaign>> {
        campaigns::list(self.read(), service_id, statuses, before_id, limit).await
    }

    /// A campaign's recipients counted by where they are, at `now_ms`.
    pub async fn campaign_tallies(
        &self,
        campaign_id: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<RecipientTally>> {
        campaigns::tallies(self.read(), campaign_id, now_ms).await
    }

    /// Why a campaign's recipients were refused, most frequent first.
    pub async fn campaign_refusals(
        &self,
        campaign_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, u64)>> {
        campaigns::refusals(self.read(), campaign_id, limit).await
    }

    /// When the earliest recipient of a campaign waiting past `now_ms` is due.
    pub async fn next_campaign_window(
        &self,
        campaign_id: &str,
        now_ms: i64,
    ) -> StoreResult<Option<i64>> {
        campaigns::next_window(self.read(), campaign_id, now_ms).await
    }

    /// A page of a campaign's rejected lines after `after_line`.
    pub async fn campaign_rejections(
        &self,
        campaign_id: &str,
        after_line: u64,
        limit: u32,
    ) -> StoreResult<Vec<Rejection>> {
        campaigns::rejections(self.read(), campaign_id, after_line, limit).await
    }

    /// Campaigns by id, read for the dispatcher.
    pub async fn campaigns_for_dispatch(&self, ids: &[String]) -> StoreResult<Vec<Campaign>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(campaign) = campaigns::by_id(self.read_background(), id).await? {
                found.push(campaign);
            }
        }
        Ok(found)
    }

    /// Recipients of a campaign by line, read for the dispatcher.
    pub async fn recipients_for_dispatch(
        &self,
        campaign_id: &str,
        lines: &[u64],
    ) -> StoreResult<Vec<Recipient>> {
        campaigns::recipients_by_lines(self.read_background(), campaign_id, lines).await
    }

    /// Whether a subject has messages not yet settled by a carrier, read for the campaign
    /// sender.
    pub async fn has_unsettled_messages(&self, subject: &Subject) -> StoreResult<bool> {
        outbox::has_unsettled(self.read_background(), subject).await
    }

    /// Whether a campaign has recipients still pending, read for the campaign sender.
    pub async fn has_pending_campaign_recipients(&self, campaign_id: &str) -> StoreResult<bool> {
        campaigns::has_pending(self.read_background(), campaign_id).await
    }

    /// Campaign messages not yet handed over, per carrier.
    pub async fn campaign_backlog_by_carrier(&self) -> StoreResult<Vec<(String, u64)>> {
        campaigns::queued_by_carrier(self.read_background()).await
    }

    /// A subject's messages, oldest first.
    pub async fn messages_of(&self, subject: &Subject) -> StoreResult<Vec<OutboxMessage>> {
        outbox::of_subject(self.read(), subject).await
    }

    /// Pending verifications whose running workflow step is over at `now_ms`, at most `limit`.
    pub async fn verifications_with_due_steps(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Verification>> {
        verifications::with_due_steps(self.read(), now_ms, limit).await
    }

    /// The service of a subject; `None` when it does not exist.
    pub async fn service_of(&self, subject: &Subject) -> StoreResult<Option<String>> {
        Ok(match subject {
            Subject::Verification(id) => self.verification(id).await?.map(|v| v.service_id),
            Subject::Notification(id) => self.notification(id).await?.map(|n| n.service_id),
            Subject::Campaign(id) => self.campaign(id).await?.map(|c| c.service_id),
            // Events are not watched by block.
            Subject::Block(_) => None,
        })
    }

    /// Events after `cursor`, optionally of one subject or of one service, oldest first.
    pub async fn events_after(
        &self,
        cursor: i64,
        subject: Option<&Subject>,
        service_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<RecordedEvent>> {
        if let Backend::Postgres { sequencer, .. } = &self.backend {
            sequencer.catch_up().await?;
        }
        events::after(self.read(), cursor, subject, service_id, limit).await
    }

    /// The cursor of the latest event recorded (0 when none is).
    pub async fn latest_event_cursor(&self) -> StoreResult<i64> {
        events::latest_cursor(self.read()).await
    }

    /// The subjects of the events after `cursor`, oldest first, at most `limit`, with their
    /// events' cursors. Unlike [`events_after`](SqlStore::events_after), it does not run a
    /// sequencer pass first on PostgreSQL: its reader follows the log as the sequencer's
    /// passes announce them.
    pub async fn subjects_changed_after(
        &self,
        cursor: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, Subject)>> {
        events::subjects_after(self.read(), cursor, limit).await
    }

    /// Conversion counts per region, channel and carrier over the messages queued from
    /// `since_ms` on, for the `adaptive` fallback strategy.
    pub async fn conversion_counts(
        &self,
        since_ms: i64,
    ) -> StoreResult<Vec<conversion::ConversionCount>> {
        conversion::conversion_counts(self.read(), since_ms).await
    }

    /// Messages not yet handed to a carrier, per status (those with none are left out).
    pub async fn outbox_depth(&self) -> StoreResult<Vec<(crate::domain::DeliveryStatus, i64)>> {
        let rows = db::query(
            "SELECT status, COUNT(*) AS messages FROM messages \
             WHERE status IN ('scheduled', 'queued', 'claimed', 'sending') GROUP BY status",
        )
        .fetch_all(self.read_background())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    rows::parse_text(row, "status", crate::domain::DeliveryStatus::parse)?,
                    row.try_get::<i64>("messages")?,
                ))
            })
            .collect()
    }

    /// How far the conversion rollup went in the event log.
    pub async fn conversion_rollup_cursor(&self) -> StoreResult<i64> {
        rollups::cursor(self.read_background()).await
    }

    /// The verifications with these ids and their messages, as the conversion rollup reads
    /// them; unknown ids are left out.
    pub async fn verification_records(
        &self,
        ids: &[String],
    ) -> StoreResult<HashMap<String, crate::domain::conversion::VerificationRecord>> {
        let mut records = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(rollups::RECORDS_PER_READ) {
            records.extend(rollups::verification_records(self.read_background(), chunk).await?);
        }
        Ok(records)
    }

    /// Each group's figures for `query`, summed from the conversion rollup.
    pub async fn conversion_stats(
        &self,
        query: &crate::domain::conversion::StatsQuery,
    ) -> StoreResult<Vec<crate::domain::conversion::StatsRow>> {
        let mut segments = Vec::new();
        for segment in query.segments() {
            segments.push(rollups::segment_sums(self.read(), query, segment).await?);
        }
        let mut rows = rollups::merge(segments);
        query.sort(&mut rows);
        Ok(rows)
    }

    /// Records the code secret's fingerprint on first use and says whether it matches the one
    /// recorded (replicas with different secrets must not share a database).
    pub async fn secret_fingerprint_matches(&self, fingerprint: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        db::query(
            "INSERT INTO server_settings (name, value) VALUES ('code_secret_fingerprint', $1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(tx.conn().await?)
        .await?;
        let stored: String =
            db::query("SELECT value FROM server_settings WHERE name = 'code_secret_fingerprint'")
                .scalar(tx.conn().await?)
                .await?;
        tx.commit().await?;
        Ok(stored == fingerprint)
    }

    /// Batches committed so far and the writes they held (group commit at work when the
    /// second is larger).
    pub fn commit_counts(&self) -> Option<(u64, u64)> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Some(writer.counts().read()),
            Backend::Postgres { .. } => None,
        }
    }

    /// Stops listening and closes connections; on SQLite once the writer has committed the
    /// writes sent to it before.
    pub async fn close(&self) {
        for task in &self.background {
            task.abort();
        }
        match &self.backend {
            Backend::Sqlite { writer, .. } => writer.stop_and_wait().await,
            Backend::Postgres {
                requests,
                background,
                ..
            } => {
                requests.close().await;
                background.close().await;
            }
        }
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// A PostgreSQL URL with [`STATEMENT_CACHE`] as its statement cache, unless it sets one.
fn with_statement_cache(database_url: &str) -> String {
    if database_url.contains("statement-cache-capacity=") {
        return database_url.to_string();
    }
    let separator = if database_url.contains('?') { '&' } else { '?' };
    format!("{database_url}{separator}statement-cache-capacity={STATEMENT_CACHE}")
}

/// The file of an SQLite URL (`sqlite://path?options` or `sqlite:path`).
fn sqlite_path(database_url: &str) -> String {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or(database_url);
    rest.split('?').next().unwrap_or(rest).to_string()
}

/// Creates the SQLite database if need be, sets WAL (a property of the file: readers then run
/// while the writer writes) and applies the migrations, through sqlx, whose migration table
/// earlier versions wrote.
async fn migrate_sqlite(database_url: &str) -> StoreResult<()> {
    let url = if database_url.contains("mode=") {
        database_url.to_string()
    } else {
        let separator = if database_url.contains('?') { '&' } else { '?' };
        format!("{database_url}{separator}mode=rwc")
    };
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {}",
        SQLITE_BUSY_TIMEOUT.as_millis()
    )))
    .execute(&pool)
    .await?;
    sqlx::query("PRAGMA journal_mode = WAL")
        .fetch_optional(&pool)
        .await?;
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&pool)
        .await?;
    sqlx::migrate!("migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|e| StoreError::Database(e.into()))?;
    pool.close().await;
    Ok(())
}

/// An SQLite connection with the settings every one of ours has.
fn open_sqlite(path: &str) -> StoreResult<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(path)?;
    connection.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    // Temporary data in files: a statement journal (a savepoint's undo) and a sorter stay in
    // memory up to SQLite's spill sizes (64 KiB, the page cache) and only larger ones go to a
    // file. With `MEMORY`, a write of thousands of campaign recipients held a hundred MiB of
    // undo, and a campaign's counts over a million recipients their whole sort, in memory.
    connection.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA temp_store = FILE;",
    )?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(connection)
}

/// Placeholders from `$first` for an `IN (...)` list of `ids`, and the ids to bind to them:
/// the last id repeated up to the next power of two. An `IN` list means the same with
/// duplicates, and the statement's text then takes one of a few forms, which the
/// prepared-statement caches keep (batches of any size up to 512 would otherwise make up to
/// 512 statements of each query, pushing the others out).
pub(crate) fn id_list(first: usize, ids: &[String]) -> (String, Vec<&String>) {
    let padded = ids.len().next_power_of_two();
    let bound = ids
        .iter()
        .chain(std::iter::repeat_n(&ids[ids.len() - 1], padded - ids.len()))
        .collect();
    (placeholders(first, padded), bound)
}

/// `rows` cut in chunks whose lengths are powers of two, largest first (37 rows: 32, 4, 1), for
/// multi-row `INSERT`s: their statement texts then take a few forms per table, which the
/// prepared-statement caches keep (each length would otherwise be a statement of its own, on
/// PostgreSQL prepared again by every connection, crowding out the rest).
pub(crate) fn in_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // Capped, so that no statement needs more parameters than PostgreSQL takes (65,535).
        let length = (1 << rest.len().ilog2()).min(MAX_CHUNK);
        let (chunk, after) = rest.split_at(length);
        rest = after;
        Some(chunk)
    })
}

/// `($1, ..., $columns), ($columns+1, ...), ...` for `rows` rows of a multi-row `VALUES`.
pub(crate) fn value_rows(columns: usize, rows: usize) -> String {
    thread_local! {
        static ROWS: StatementParts = Default::default();
    }
    ROWS.with(|known| {
        known.get_or_make((columns, rows), || {
            (0..rows)
                .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
                .collect::<Vec<_>>()
                .join(", ")
        })
    })
}

/// `$first, $first+1, ...` for `count` values, for an `IN (...)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    thread_local! {
        static LISTS: StatementParts = Default::default();
    }
    LISTS.with(|known| {
        known.get_or_make((first, count), || {
            (first..first + count)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    })
}

/// Parts of statement texts made once per thread for each shape (the shapes are few: `IN`
/// lists are padded to a few lengths, writes insert a few rows at a time), up to a bound.
#[derive(Default)]
struct StatementParts(std::cell::RefCell<std::collections::HashMap<(usize, usize), String>>);

impl StatementParts {
    fn get_or_make(&self, shape: (usize, usize), make: impl FnOnce() -> String) -> String {
        if let Some(text) = self.0.borrow().get(&shape) {
            return text.clone();
        }
        let text = make();
        let mut known = self.0.borrow_mut();
        if known.len() < 1024 {
            known.insert(shape, text.clone());
        }
        text
    }
}

/// Whether the error is a unique-key violation (another writer got there first).
pub(crate) fn is_unique_violation(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
            failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        }
        _ => false,
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_largest_first_and_capped() {
        let lengths =
            |rows: usize| -> Vec<usize> { in_chunks(&vec![0u8; rows]).map(<[u8]>::len).collect() };
        assert_eq!(lengths(0), Vec::<usize>::new());
        assert_eq!(lengths(37), [32, 4, 1]);
        assert_eq!(lengths(1024), [1024]);
        assert_eq!(lengths(2 * MAX_CHUNK + 3), [MAX_CHUNK, MAX_CHUNK, 2, 1]);
    }
}
