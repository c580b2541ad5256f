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
//! The fsync of a commit does not hold the writer up. In WAL mode the writer's connection
//! commits without one (`synchronous = NORMAL`), and a second thread, the syncer, flushes the
//! write-ahead log to disk (`fdatasync`) while the writer runs the next batch; a batch's writes
//! are answered only once the flush that covers its commit has returned. One flush covers every
//! commit before it, so a slow disk makes the flushes fewer and the batches larger, never a
//! write answered early. Readers on other connections can see a commit before its flush ends,
//! so each read waits, after it ran, until what it may have seen is durable
//! ([`Durability::covers_reads_so_far`]); a read waits for at most a flush under way, never
//! for a write to run. A failed flush leaves durability unknown: the store then refuses every
//! write and read, and verifyd must be restarted (SQLite recovers from its log).
//!
//! PostgreSQL needs none of this: concurrent transactions on its own connections already share
//! WAL flushes, and one transaction per write keeps a write from holding the row locks of
//! others (writes sharing transactions across several connections deadlock in cycles).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{oneshot, watch};

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
    durability: Arc<Durability>,
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
    /// The writer over `connection` (of the database file `path`), its threads started;
    /// `on_commit(has_events)` runs once each successful commit is durable, before its writes
    /// are answered.
    pub(super) fn new(
        connection: rusqlite::Connection,
        path: &str,
        on_commit: Arc<dyn Fn(bool) + Send + Sync>,
    ) -> StoreResult<Writer> {
        let journal_mode: String =
            connection.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        // In WAL mode the syncer flushes the log after each commit; otherwise (a database
        // some other tool left in another mode) SQLite syncs inside the commit.
        let wal = if journal_mode.eq_ignore_ascii_case("wal") {
            connection.execute_batch("PRAGMA synchronous = NORMAL")?;
            // The file SQLite opened (it follows symbolic links), with the log beside it.
            let database = connection.path().filter(|p| !p.is_empty()).unwrap_or(path);
            Some(WalFile::new(PathBuf::from(format!("{database}-wal"))))
        } else {
            None
        };
        let connection = Arc::new(Mutex::new(connection));
        let counts = Arc::new(CommitCounts::default());
        let durability = Arc::new(Durability::new());
        let (to_syncer, syncer_inbox) = mpsc::channel();
        let syncer = Syncer {
            inbox: syncer_inbox,
            wal,
            durability: Arc::clone(&durability),
            on_commit,
        };
        let syncer = spawn("sqlite-syncer", move || syncer.run())?;
        let (messages, inbox) = mpsc::channel();
        let thread = WriterThread {
            connection: Arc::clone(&connection),
            inbox,
            to_syncer,
            syncer: Some(syncer),
            durability: Arc::clone(&durability),
            counts: Arc::clone(&counts),
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        let thread = spawn("sqlite-writer", move || thread.run())?;
        Ok(Writer {
            messages,
            connection,
            counts,
            durability,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// How far the writer's commits are durable, for reads on other connections.
    pub(super) fn durability(&self) -> &Arc<Durability> {
        &self.durability
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
    StoreError::Commit(stopped_reason())
}

fn stopped_reason() -> Arc<str> {
    "the writer stopped".into()
}

fn spawn(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> StoreResult<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|error| {
            StoreError::Commit(format!("the {name} thread did not start: {error}").into())
        })
}

/// How far the writer's commits are durable. Batches are numbered as they commit; a read on
/// another connection may see a commit from the moment SQLite wrote it, before its flush.
#[derive(Debug)]
pub(crate) struct Durability {
    /// The number of the last batch whose commit has begun.
    committing: AtomicU64,
    /// The number of the last batch known durable, or why durability is unknown.
    durable: watch::Sender<Result<u64, Arc<str>>>,
}

impl Durability {
    fn new() -> Durability {
        Durability {
            committing: AtomicU64::new(0),
            durable: watch::Sender::new(Ok(0)),
        }
    }

    /// Returns once every commit a read that has already run could have seen is durable (at
    /// once when no flush is under way); an error when a flush failed.
    pub(crate) async fn covers_reads_so_far(&self) -> StoreResult<()> {
        let seen = self.committing.load(Ordering::SeqCst);
        let covers = |durable: &Result<u64, Arc<str>>| match durable {
            Ok(durable) => *durable >= seen,
            Err(_) => true,
        };
        if !covers(&self.durable.borrow()) {
            let mut durable = self.durable.subscribe();
            if durable.wait_for(covers).await.is_err() {
                return Err(stopped());
            }
        }
        match &*self.durable.borrow() {
            Ok(_) => Ok(()),
            Err(reason) => Err(StoreError::Commit(Arc::clone(reason))),
        }
    }

    /// Why durability is unknown, once a flush failed.
    fn failure(&self) -> Option<Arc<str>> {
        self.durable.borrow().as_ref().err().cloned()
    }
}

/// The write-ahead log file, opened by the syncer to flush it.
struct WalFile {
    path: PathBuf,
    /// The open file and its inode (SQLite may delete and create the log again when every
    /// connection to the database has closed; ours stay open, but it costs one `stat`).
    open: Option<(std::fs::File, u64)>,
}

impl WalFile {
    fn new(path: PathBuf) -> WalFile {
        WalFile { path, open: None }
    }

    /// Flushes what was written to the log to disk (`fdatasync`: the data and the length
    /// needed to read it back).
    fn sync(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(&self.path)?.ino();
        match &self.open {
            Some((_, open)) if *open == inode => {}
            _ => {
                let file = std::fs::File::open(&self.path)?;
                let opened = file.metadata()?.ino();
                self.open = Some((file, opened));
            }
        }
        match &self.open {
            Some((file, _)) => file.sync_data(),
            None => Ok(()),
        }
    }
}

/// A batch that ended on the writer, for the syncer to answer once it is durable.
struct Ended {
    /// The number of the last batch that committed, this one or one before.
    covers: u64,
    has_events: bool,
    end: BatchEnd,
    done: Vec<oneshot::Sender<BatchEnd>>,
}

/// The syncer's thread: flushes the log for the batches the writer committed, then answers
/// their writes.
struct Syncer {
    inbox: mpsc::Receiver<Ended>,
    /// `None` when SQLite syncs inside each commit (not in WAL mode).
    wal: Option<WalFile>,
    durability: Arc<Durability>,
    on_commit: Arc<dyn Fn(bool) + Send + Sync>,
}

/// Ends durability when the syncer's thread ends by a panic: writes and reads then fail
/// instead of waiting for a flush that will never come.
struct EndsDurabilityOnPanic(Arc<Durability>);

impl Drop for EndsDurabilityOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.durable.send_replace(Err(
                "the thread flushing SQLite's log stopped; restart verifyd".into(),
            ));
        }
    }
}

impl Syncer {
    fn run(mut self) {
        let _guard = EndsDurabilityOnPanic(Arc::clone(&self.durability));
        let mut durable = 0;
        while let Ok(first) = self.inbox.recv() {
            // Every batch that ended meanwhile: one flush covers them all.
            let mut ended = vec![first];
            while let Ok(next) = self.inbox.try_recv() {
                ended.push(next);
            }
            let covers = ended.iter().map(|batch| batch.covers).max().unwrap_or(0);
            let mut failure = self.durability.failure();
            if failure.is_none() && covers > durable {
                if let Some(wal) = &mut self.wal
                    && let Err(error) = wal.sync()
                {
                    tracing::error!(
                        %error,
                        "flushing SQLite's log failed: whether the last commits are on disk is \
                         unknown; verifyd refuses writes and reads until it is restarted"
                    );
                    let reason: Arc<str> = format!(
                        "the commit could not be made durable (flushing the log failed: \
                         {error}); restart verifyd"
                    )
                    .into();
                    let _ = self
                        .durability
                        .durable
                        .send_replace(Err(Arc::clone(&reason)));
                    failure = Some(reason);
                }
                if failure.is_none() {
                    durable = covers;
                    let _ = self.durability.durable.send_replace(Ok(durable));
                }
            }
            let has_events = ended
                .iter()
                .any(|batch| batch.has_events && batch.end.is_ok());
            if failure.is_none() && has_events {
                (self.on_commit)(true);
            }
            for batch in ended {
                let end = match (&failure, batch.end) {
                    (Some(reason), Ok(())) => Err(Arc::clone(reason)),
                    (_, end) => end,
                };
                for done in batch.done {
                    let _ = done.send(end.clone());
                }
            }
        }
    }
}

/// The writer's thread: its connection and what it receives.
struct WriterThread {
    connection: SharedConnection,
    inbox: mpsc::Receiver<Message>,
    /// Where ended batches go to be answered once durable.
    to_syncer: mpsc::Sender<Ended>,
    /// Joined when the writer stops, so that its last batches are answered first.
    syncer: Option<std::thread::JoinHandle<()>>,
    durability: Arc<Durability>,
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
    fn run(mut self) {
        let _runtime = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
        while let Ok(Message::Write { work, done }) = self.inbox.recv() {
            if done.is_closed() {
                // Its caller has gone: nobody waits for it, and nothing of it is kept.
                continue;
            }
            if let Some(reason) = self.durability.failure() {
                let _ = done.send(Err(reason));
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
        // The syncer answers what is left, then stops.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.to_syncer, closed));
        if let Some(syncer) = self.syncer.take() {
            let _ = syncer.join();
        }
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

    /// Commits the batch (or ends one that kept nothing) and hands it to the syncer, which
    /// tells its writes once the commit, and every one before it, is durable (a batch that
    /// kept nothing may still have read what earlier ones wrote).
    fn commit(&self, batch: Batch) {
        let statement = if batch.kept == 0 {
            "ROLLBACK"
        } else {
            // Counted before SQLite makes it visible: a read that sees it waits for its flush.
            self.durability.committing.fetch_add(1, Ordering::SeqCst);
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
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, writes = batch.kept, "a batch of writes failed to commit");
                // SQLite may leave the transaction open after a failed COMMIT (SQLITE_BUSY).
                let _ = self.execute("ROLLBACK");
                Err(format!("commit failed: {error}").into())
            }
        };
        let ended = Ended {
            covers: self.durability.committing.load(Ordering::SeqCst),
            has_events: batch.kept > 0 && batch.has_events,
            end,
            done: batch.done,
        };
        if let Err(mpsc::SendError(ended)) = self.to_syncer.send(ended) {
            for done in ended.done {
                let _ = done.send(Err(stopped_reason()));
            }
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
