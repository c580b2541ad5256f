//! Group commit on SQLite. Write transactions do not each get a database transaction: they run
//! one after another on the *lane* (the one writer connection: SQLite has one writer at a time,
//! and connections racing for its lock would sleep in its busy handler), each inside a savepoint
//! of the transaction the lane has open, and a committer commits all that finished since its
//! last commit at once — one commit and one fsync for every request that arrived together. A
//! write answers only after the commit that holds it succeeded; one that fails rolls back to
//! its savepoint, alone.
//!
//! PostgreSQL needs none of this: concurrent transactions on its own connections already share
//! WAL flushes, and one transaction per write keeps a write from holding the row locks of
//! others (writes sharing transactions across several connections deadlock in cycles).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};
use tokio::task::JoinHandle;

use crate::store::{StoreError, StoreResult};

/// How the batch a write joined ended: `None` while open.
type BatchEnd = Option<Result<(), Arc<str>>>;

/// Writes in one batch at most, so that a batch stays short.
const BATCH_LIMIT: usize = 512;

/// The writer's open transaction and the writes in it.
struct Batch {
    /// Writes released into the batch, waiting for its commit.
    writes: usize,
    /// Whether any of them recorded events (watchers wake after the commit).
    has_events: bool,
    /// Says how the batch ended, to every write in it.
    end: watch::Sender<BatchEnd>,
}

/// The writer's connection and its state; whoever holds the lane's lock may use it.
pub(super) struct LaneState {
    connection: Arc<std::sync::Mutex<rusqlite::Connection>>,
    batch: Option<Batch>,
    /// Told after each commit whether it recorded events, before the writes are answered.
    on_commit: Arc<dyn Fn(bool) + Send + Sync>,
    /// Batches and writes committed so far.
    counts: Arc<CommitCounts>,
    /// A write was dropped inside its savepoint: the next holder rolls it back first.
    savepoint_abandoned: bool,
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

/// One connection whose writes commit together.
struct Lane {
    state: Arc<Mutex<LaneState>>,
    /// Wakes the committer: a write finished (or was abandoned).
    commit_wanted: Notify,
}

/// The lane of a store and its committer.
pub(super) struct Writer {
    lane: Arc<Lane>,
    committer: JoinHandle<()>,
    counts: Arc<CommitCounts>,
}

/// A write's turn on the lane: its savepoint is open until [`Turn::release`] or
/// [`Turn::roll_back`]; dropped before either, the savepoint is rolled back by the lane's next
/// user.
pub(super) struct Turn {
    guard: Option<OwnedMutexGuard<LaneState>>,
    lane: Arc<Lane>,
}

impl Writer {
    /// The lane over `connection`; `on_commit(has_events)` runs after each successful
    /// commit, before its writes are answered.
    pub(super) fn new(
        connection: rusqlite::Connection,
        on_commit: Arc<dyn Fn(bool) + Send + Sync>,
    ) -> Writer {
        let counts = Arc::new(CommitCounts::default());
        let lane = Arc::new(Lane {
            state: Arc::new(Mutex::new(LaneState {
                connection: Arc::new(std::sync::Mutex::new(connection)),
                batch: None,
                on_commit,
                counts: Arc::clone(&counts),
                savepoint_abandoned: false,
            })),
            commit_wanted: Notify::new(),
        });
        let committer = tokio::spawn(commit_loop(Arc::clone(&lane)));
        Writer {
            lane,
            committer,
            counts,
        }
    }

    /// What the lane committed so far.
    pub(super) fn counts(&self) -> &CommitCounts {
        &self.counts
    }

    /// Waits for the lane (in arrival order), joins its open batch (or begins one) and opens
    /// the write's savepoint.
    pub(super) async fn turn(&self) -> StoreResult<Turn> {
        let lane = Arc::clone(&self.lane);
        let mut guard = Arc::clone(&lane.state).lock_owned().await;
        guard.settle_abandoned();
        if guard
            .batch
            .as_ref()
            .is_some_and(|batch| batch.writes >= BATCH_LIMIT)
        {
            guard.end_batch().await;
        }
        if guard.batch.is_none() {
            // The write lock up front: a read-then-write never fails on a lock upgrade.
            guard.begin_immediate().await?;
            guard.batch = Some(Batch {
                writes: 0,
                has_events: false,
                end: watch::channel(None).0,
            });
        }
        if let Err(error) = guard.inline("SAVEPOINT write") {
            // No write of the batch is lost by ending it here: they wait for its end.
            guard.end_batch().await;
            return Err(error);
        }
        Ok(Turn {
            guard: Some(guard),
            lane,
        })
    }

    /// Stops the committer (an open batch is rolled back with the connection).
    pub(super) fn stop(&self) {
        self.committer.abort();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Turn {
    /// The lane's connection, inside this write's savepoint.
    pub(super) fn connection(&self) -> &std::sync::Mutex<rusqlite::Connection> {
        &self.guard.as_ref().expect("turn in use").connection
    }

    /// Releases the savepoint into the batch and waits until the batch is committed.
    pub(super) async fn release(mut self, has_events: bool) -> StoreResult<()> {
        let mut guard = self.guard.take().expect("turn in use");
        if let Err(error) = guard.inline("RELEASE SAVEPOINT write") {
            guard.savepoint_abandoned = true;
            drop(guard);
            self.lane.commit_wanted.notify_one();
            return Err(error);
        }
        let batch = guard.batch.as_mut().expect("a turn has a batch");
        batch.writes += 1;
        batch.has_events |= has_events;
        let mut end = batch.end.subscribe();
        drop(guard);
        self.lane.commit_wanted.notify_one();
        let ended = end
            .wait_for(Option::is_some)
            .await
            .map_err(|_| StoreError::Commit("the writer stopped".into()))?;
        match ended.as_ref() {
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => Err(StoreError::Commit(Arc::clone(reason))),
            None => unreachable!("waited for an end"),
        }
    }

    /// Rolls the write back; the rest of the batch is untouched.
    pub(super) async fn roll_back(mut self) -> StoreResult<()> {
        let mut guard = self.guard.take().expect("turn in use");
        let undone = guard.undo_savepoint();
        drop(guard);
        self.lane.commit_wanted.notify_one();
        undone
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.savepoint_abandoned = true;
            drop(guard);
            self.lane.commit_wanted.notify_one();
        }
    }
}

impl LaneState {
    /// Runs a statement that takes microseconds (no I/O wait) in place, prepared once.
    fn inline(&self, sql: &str) -> StoreResult<()> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connection.prepare_cached(sql)?.raw_execute()?;
        Ok(())
    }

    /// Takes the write lock: at once when no other process holds it (the usual case, without
    /// leaving this thread), else waiting in SQLite's busy handler on a thread that may block.
    async fn begin_immediate(&self) -> StoreResult<()> {
        let free = {
            let connection = self
                .connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            connection.busy_timeout(std::time::Duration::ZERO)?;
            let begun = connection.execute_batch("BEGIN IMMEDIATE");
            connection.busy_timeout(super::SQLITE_BUSY_TIMEOUT)?;
            match begun {
                Ok(()) => true,
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if failure.code == rusqlite::ErrorCode::DatabaseBusy =>
                {
                    false
                }
                Err(error) => return Err(error.into()),
            }
        };
        if free {
            return Ok(());
        }
        self.blocking("BEGIN IMMEDIATE").await
    }

    /// Runs a statement that may wait (for the disk, or for another process's lock) on a
    /// thread that may block.
    async fn blocking(&self, sql: &'static str) -> StoreResult<()> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let connection = connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            connection.execute_batch(sql)
        })
        .await
        .map_err(|error| StoreError::Commit(format!("{sql} did not finish: {error}").into()))??;
        Ok(())
    }

    /// Rolls back the savepoint of a write dropped before it finished.
    fn settle_abandoned(&mut self) {
        if std::mem::take(&mut self.savepoint_abandoned)
            && let Err(error) = self.undo_savepoint()
        {
            tracing::warn!(%error, "rolling back an abandoned write failed");
        }
    }

    /// Rolls back to the open savepoint and drops it; if that fails the transaction is no
    /// longer usable, and the batch ends (rolled back, its writes told so).
    fn undo_savepoint(&mut self) -> StoreResult<()> {
        let undone = self
            .inline("ROLLBACK TO SAVEPOINT write")
            .and_then(|()| self.inline("RELEASE SAVEPOINT write"));
        if let Err(error) = undone {
            let reason: Arc<str> = format!("rolling back one write failed: {error}").into();
            self.abort_batch(reason);
            return Err(error);
        }
        Ok(())
    }

    /// Commits the open batch (or ends an empty one) and tells its writes.
    async fn end_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let statement = if batch.writes == 0 {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        match self.blocking(statement).await {
            Ok(_) => {
                if batch.writes > 0 {
                    self.counts.batches.fetch_add(1, Ordering::Relaxed);
                    self.counts
                        .writes
                        .fetch_add(batch.writes as u64, Ordering::Relaxed);
                }
                (self.on_commit)(batch.writes > 0 && batch.has_events);
                batch.end.send_replace(Some(Ok(())));
            }
            Err(error) => {
                tracing::error!(%error, writes = batch.writes, "a batch of writes failed to commit");
                // SQLite may leave the transaction open after a failed COMMIT (SQLITE_BUSY).
                let _ = self.inline("ROLLBACK");
                batch
                    .end
                    .send_replace(Some(Err(format!("commit failed: {error}").into())));
            }
        }
    }

    /// Rolls the whole batch back, telling its writes why.
    fn abort_batch(&mut self, reason: Arc<str>) {
        if let Some(batch) = self.batch.take() {
            let _ = self.inline("ROLLBACK");
            batch.end.send_replace(Some(Err(reason)));
        }
    }
}

/// Commits the lane's batch whenever a write finished: it waits for the lane in line with the
/// writes, so those that were queued before it join the batch it commits.
async fn commit_loop(lane: Arc<Lane>) {
    loop {
        lane.commit_wanted.notified().await;
        let mut guard = Arc::clone(&lane.state).lock_owned().await;
        guard.settle_abandoned();
        guard.end_batch().await;
    }
}
