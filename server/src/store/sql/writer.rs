//! Group commit on SQLite. SQLite has one writer at a time, so the store has one: a thread of
//! its own that owns the write connection and runs every write, one after another, each in a
//! savepoint of the transaction it has open; when no write is waiting it commits them all at
//! once — one commit and one fsync for every write that arrived together. Writes that arrive
//! during a commit wait for it and form the next batch. A write answers only after the commit
//! that holds it succeeded (also one that failed or rolled back: what it read may have come
//! from writes of its batch); one that fails rolls back to its savepoint, alone. A write whose
//! caller has gone before its turn is not run, as a PostgreSQL transaction dropped before its
//! commit keeps nothing; once run, it is committed with its batch like any other.
//!
//! A write is a job: a function run on the writer's thread with the connection. Nothing is
//! handed back and forth between tasks while the batch is open, so the writer never waits for
//! a task to be scheduled. A write that must hold the connection from a task instead
//! ([`Writer::hold`]: transactions begun and committed by their caller) blocks the writer's
//! thread until it ends.
//!
//! PostgreSQL needs none of this: concurrent transactions on its own connections already share
//! WAL flushes, and one transaction per write keeps a write from holding the row locks of
//! others (writes sharing transactions across several connections deadlock in cycles).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// The write connection, shared by the writer's thread and a write holding it from a task.
pub(super) type SharedConnection = Arc<Mutex<rusqlite::Connection>>;

/// How a batch ended, for each write in it.
type BatchEnd = Result<(), Arc<str>>;

/// Writes in one batch at most, so that a batch stays short.
const BATCH_LIMIT: usize = 512;

/// Whether a write's changes stay in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kept {
    /// Kept: committed with the batch; `has_events` when it recorded events.
    Yes { has_events: bool },
    /// Rolled back to its savepoint (failed, or wrote nothing worth keeping).
    No,
}

/// A write for the writer's thread: runs with the connection inside its savepoint.
type Work = Box<dyn FnOnce(&SharedConnection) -> Kept + Send>;

/// What the writer's thread receives.
enum Message {
    Write {
        work: Work,
        /// Told how the batch that held the write ended.
        done: oneshot::Sender<BatchEnd>,
    },
    Stop,
}

/// Batches and writes committed by the writer.
#[derive(Debug, Default)]
pub struct CommitCounts {
    batches: AtomicU64,
    writes: AtomicU64,
}

impl CommitCounts {
    /// Batches committed and the writes they held, so far.
    pub fn read(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

/// The writer of a store: its thread and the way to it.
pub(super) struct Writer {
    messages: mpsc::Sender<Message>,
    connection: SharedConnection,
    counts: Arc<CommitCounts>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A write holding the connection from a task (see [`Writer::hold`]): its savepoint is open
/// until [`Held::end`]; dropped before, it is rolled back.
pub(super) struct Held {
    connection: SharedConnection,
    ended: Option<mpsc::Sender<Kept>>,
    done: oneshot::Receiver<BatchEnd>,
}

impl Writer {
    /// The writer over `connection`, its thread started; `on_commit(has_events)` runs after
    /// each successful commit, before its writes are answered.
    pub(super) fn new(
        connection: rusqlite::Connection,
        on_commit: Arc<dyn Fn(bool) + Send + Sync>,
    ) -> StoreResult<Writer> {
        let connection = Arc::new(Mutex::new(connection));
        let counts = Arc::new(CommitCounts::default());
        let (messages, inbox) = mpsc::channel();
        let thread = WriterThread {
            connection: Arc::clone(&connection),
            inbox,
            on_commit,
            counts: Arc::clone(&counts),
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || thread.run())
            .map_err(|error| {
                StoreError::Commit(format!("the writer thread did not start: {error}").into())
            })?;
        Ok(Writer {
            messages,
            connection,
            counts,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// What the writer committed so far.
    pub(super) fn counts(&self) -> &CommitCounts {
        &self.counts
    }

    /// Runs `work` on the writer's thread in the open batch; returns once the batch is
    /// committed (an error when it failed to commit: then nothing of it was stored).
    pub(super) async fn run(
        &self,
        work: impl FnOnce(&SharedConnection) -> Kept + Send + 'static,
    ) -> StoreResult<()> {
        let (done, answer) = oneshot::channel();
        self.messages
            .send(Message::Write {
                work: Box::new(work),
                done,
            })
            .map_err(|_| stopped())?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Commit(reason)),
            Err(_) => Err(stopped()),
        }
    }

    /// Waits for the writer's turn and holds the connection, inside a savepoint of the open
    /// batch, until the returned write ends. The writer's thread waits meanwhile: the task
    /// holding it must not wait for another write (nor for anything that does).
    pub(super) async fn hold(&self) -> StoreResult<Held> {
        let (ended, until_ended) = mpsc::channel();
        let (started, on_start) = oneshot::channel();
        let (done, answer) = oneshot::channel();
        let work = move |_: &SharedConnection| {
            if started.send(()).is_err() {
                return Kept::No;
            }
            // Dropped without a word: rolled back.
            until_ended.recv().unwrap_or(Kept::No)
        };
        self.messages
            .send(Message::Write {
                work: Box::new(work),
                done,
            })
            .map_err(|_| stopped())?;
        let mut held = Held {
            connection: Arc::clone(&self.connection),
            ended: Some(ended),
            done: answer,
        };
        if on_start.await.is_err() {
            // The batch failed before this write's turn: say why.
            return match (&mut held.done).await {
                Ok(Err(reason)) => Err(StoreError::Commit(reason)),
                _ => Err(stopped()),
            };
        }
        Ok(held)
    }

    /// Tells the writer's thread to stop once it has run the writes sent before (writes sent
    /// later fail).
    pub(super) fn stop(&self) {
        let _ = self.messages.send(Message::Stop);
    }

    /// Stops the writer's thread and waits until it has committed its last batch.
    pub(super) async fn stop_and_wait(&self) {
        self.stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Held {
    /// The connection, inside this write's savepoint.
    pub(super) fn connection(&self) -> &Mutex<rusqlite::Connection> {
        &self.connection
    }

    /// Ends the write, kept or rolled back; returns once its batch is committed (what it read
    /// may have come from writes of its batch).
    pub(super) async fn end(mut self, kept: Kept) -> StoreResult<()> {
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(kept);
        }
        match (&mut self.done).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Commit(reason)),
            Err(_) => Err(stopped()),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Commit("the writer stopped".into())
}

/// The writer's thread: its connection and what it receives.
struct WriterThread {
    connection: SharedConnection,
    inbox: mpsc::Receiver<Message>,
    on_commit: Arc<dyn Fn(bool) + Send + Sync>,
    counts: Arc<CommitCounts>,
    /// Entered on the thread, so that writes may use the runtime's timers and blocking pool.
    runtime: Option<tokio::runtime::Handle>,
}

/// The open batch on the writer's thread.
#[derive(Default)]
struct Batch {
    done: Vec<oneshot::Sender<BatchEnd>>,
    kept: usize,
    has_events: bool,
}

impl WriterThread {
    fn run(self) {
        let _runtime = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
        while let Ok(Message::Write { work, done }) = self.inbox.recv() {
            if done.is_closed() {
                // Its caller has gone: nobody waits for it, and nothing of it is kept.
                continue;
            }
            self.end_stray_transaction();
            // The write lock up front: a read-then-write never fails on a lock upgrade; another
            // process holding it is waited for in SQLite's busy handler, on this thread.
            if let Err(error) = self.execute("BEGIN IMMEDIATE") {
                tracing::error!(%error, "beginning a batch of writes failed");
                let _ = done.send(Err(format!("could not begin: {error}").into()));
                continue;
            }
            let mut batch = Batch::default();
            let mut next = Some((work, done));
            let mut stopping = false;
            while let Some((work, done)) = next.take() {
                if done.is_closed() {
                    next = self.next_write(&mut stopping);
                    continue;
                }
                batch.done.push(done);
                if let Err(reason) = self.run_one(work, &mut batch) {
                    self.abort(batch, reason);
                    batch = Batch::default();
                    break;
                }
                if batch.done.len() < BATCH_LIMIT {
                    next = self.next_write(&mut stopping);
                }
            }
            if !batch.done.is_empty() {
                self.commit(batch);
            }
            if stopping {
                break;
            }
        }
        let (batches, writes) = self.counts.read();
        tracing::info!(batches, writes, "the SQLite writer stopped");
    }

    /// The write waiting next, if one is (`stopping` is set when the stop came first).
    fn next_write(&self, stopping: &mut bool) -> Option<(Work, oneshot::Sender<BatchEnd>)> {
        match self.inbox.try_recv() {
            Ok(Message::Write { work, done }) => Some((work, done)),
            Ok(Message::Stop) => {
                *stopping = true;
                None
            }
            Err(_) => None,
        }
    }

    /// Rolls back a transaction left open by a batch whose end failed, so that the next one
    /// can begin.
    fn end_stray_transaction(&self) {
        if !self.no_transaction_open()
            && let Err(error) = self.execute("ROLLBACK")
        {
            tracing::error!(%error, "rolling back a transaction left open failed");
        }
    }

    /// Whether no transaction is open: between batches, or when SQLite ended the batch's by
    /// itself (it rolls the whole transaction back on some errors, such as a full disk).
    fn no_transaction_open(&self) -> bool {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_autocommit()
    }

    /// Runs one write in its savepoint; an error means the transaction is no longer usable.
    fn run_one(&self, work: Work, batch: &mut Batch) -> Result<(), Arc<str>> {
        self.execute("SAVEPOINT write")
            .map_err(|error| format!("opening a write's savepoint failed: {error}"))?;
        let kept =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&self.connection)))
                .unwrap_or_else(|_| {
                    tracing::error!("a write panicked; it is rolled back");
                    Kept::No
                });
        if self.no_transaction_open() {
            return Err("SQLite rolled the batch back after an error in one write".into());
        }
        let ended = match kept {
            Kept::Yes { has_events } => {
                batch.kept += 1;
                batch.has_events |= has_events;
                self.execute("RELEASE SAVEPOINT write")
            }
            Kept::No => self
                .execute("ROLLBACK TO SAVEPOINT write")
                .and_then(|()| self.execute("RELEASE SAVEPOINT write")),
        };
        ended.map_err(|error| format!("ending a write's savepoint failed: {error}").into())
    }

    /// Commits the batch (or ends one that kept nothing) and tells its writes.
    fn commit(&self, batch: Batch) {
        let statement = if batch.kept == 0 {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        let end = match self.execute(statement) {
            Ok(()) => {
                if batch.kept > 0 {
                    self.counts.batches.fetch_add(1, Ordering::Relaxed);
                    self.counts
                        .writes
                        .fetch_add(batch.kept as u64, Ordering::Relaxed);
                }
                (self.on_commit)(batch.kept > 0 && batch.has_events);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, writes = batch.kept, "a batch of writes failed to commit");
                // SQLite may leave the transaction open after a failed COMMIT (SQLITE_BUSY).
                let _ = self.execute("ROLLBACK");
                Err(format!("commit failed: {error}").into())
            }
        };
        for done in batch.done {
            let _ = done.send(end.clone());
        }
    }

    /// Rolls the whole batch back, telling its writes why.
    fn abort(&self, batch: Batch, reason: Arc<str>) {
        tracing::error!(%reason, "a batch of writes is rolled back");
        let _ = self.execute("ROLLBACK");
        for done in batch.done {
            let _ = done.send(Err(Arc::clone(&reason)));
        }
    }

    fn execute(&self, sql: &str) -> Result<(), rusqlite::Error> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connection.prepare_cached(sql)?.raw_execute()?;
        Ok(())
    }
}
