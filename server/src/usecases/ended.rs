//! Views of ended verifications, kept in memory so that a repeated Check (or a Get) of one is
//! answered without the database.
//!
//! A verification that has ended never changes again, but its messages may: a receipt can
//! still say a message was delivered. Every such change records an event (but a dispatcher's
//! claim and hand-off of a message, which clients see only as its `updated_at`: both show it
//! queued; its next event follows within moments), so a task follows
//! the event log (woken by the same signal as watchers: at once for this process's commits,
//! by `LISTEN` or a poll for other processes') and forgets the views of the subjects the new
//! events name. A view read from the database is kept only if no event was taken into account
//! between the start of its read and its keeping (a generation counter), so a view older than
//! an event already followed is never kept. A watch stream forgets the view of each event's
//! verification before it sends the event, so a client told of a change never reads a view
//! older than it. Every view read from the database is offered to the cache, and replaces the
//! kept one (or, read before an event was followed, removes it), so no answer is older than
//! one given before it by this process. Another replica's changes show once the follower reads
//! their events: at once through `LISTEN`, within a second when it is down.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::VerificationView;
use crate::domain::Subject;
use crate::store::SqlStore;

/// Views kept at most, in all.
const CAPACITY: usize = 65_536;
/// Shards of the map (each behind its own lock).
const SHARDS: usize = 16;
/// Events read per round of following the log.
const FOLLOW_BATCH: u32 = 5_000;
/// How often the log is read without a wake-up (events of other processes when `LISTEN` is
/// down, or on SQLite).
const FOLLOW_POLL: Duration = Duration::from_millis(1000);
/// The wait before reading the log again after a failed read.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// One shard of the views, by verification id.
type Shard = Mutex<HashMap<String, Arc<VerificationView>>>;

/// The views of ended verifications, by id.
pub(super) struct EndedViews {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// Bumped before views are forgotten: a view read before a bump is not kept.
    generation: AtomicU64,
    /// Whether the log is being followed (views are kept only then).
    following: AtomicBool,
}

impl EndedViews {
    /// An empty cache that keeps nothing until [`follow`](EndedViews::follow) runs.
    pub(super) fn new() -> Arc<EndedViews> {
        Arc::new(EndedViews {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            generation: AtomicU64::new(0),
            following: AtomicBool::new(false),
        })
    }

    fn shard(&self, id: &str) -> &Shard {
        let index = self.hasher.hash_one(id) as usize % SHARDS;
        &self.shards[index]
    }

    /// The kept view of verification `id`.
    pub(super) fn get(&self, id: &str) -> Option<Arc<VerificationView>> {
        self.shard(id)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .cloned()
    }

    /// What to pass to [`keep`](EndedViews::keep) for a view whose read starts now.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keeps `view` if its verification has ended and no event was followed since
    /// `read_from` (the [`generation`](EndedViews::generation) before the view was read).
    pub(super) fn keep(&self, view: &VerificationView, read_from: u64) {
        if !view.verification.has_ended() || !self.following.load(Ordering::SeqCst) {
            return;
        }
        let id = &view.verification.id;
        let mut shard = self
            .shard(id)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Compared under the shard's lock: a view forgotten after a bump is removed under it
        // too, so either this sees the bump or the removal comes after this insert. A view
        // read before a bump is not kept, and the one kept before it goes too: it may be
        // older than the one just read and answered.
        if self.generation.load(Ordering::SeqCst) != read_from {
            shard.remove(id);
            return;
        }
        if shard.len() >= CAPACITY / SHARDS
            && let Some(evicted) = shard.keys().next().cloned()
        {
            shard.remove(&evicted);
        }
        shard.insert(id.clone(), Arc::new(view.clone()));
    }

    /// Forgets the views of `ids`.
    pub(super) fn forget<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for id in ids {
            self.shard(id)
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(id);
        }
    }

    /// Forgets every view and keeps none until following starts again.
    fn forget_all(&self) {
        self.following.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clear();
        }
    }

    /// Starts following the event log from its end, until `shutdown` turns true.
    pub(super) fn follow(self: &Arc<Self>, store: Arc<SqlStore>, shutdown: watch::Receiver<bool>) {
        let views = Arc::clone(self);
        tokio::spawn(async move { views.follow_log(store, shutdown).await });
    }

    async fn follow_log(&self, store: Arc<SqlStore>, mut shutdown: watch::Receiver<bool>) {
        // However following ends (shutdown, a panic), no view is kept or served unfollowed.
        let _stop_keeping = StopKeeping(self);
        let mut signal = store.event_signal();
        let mut cursor = None;
        loop {
            signal.borrow_and_update();
            let full = match self.follow_round(&store, &mut cursor).await {
                Ok(full) => full,
                Err(error) => {
                    tracing::warn!(%error, "reading the event log for ended verifications failed; they are read from the database until it works again");
                    self.forget_all();
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER) => continue,
                        _ = shutdown.wait_for(|stopping| *stopping) => return,
                    }
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                _ = signal.changed() => {}
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    }

    /// Reads the events after `cursor` (from the end of the log when `None`), forgets the
    /// views they name, and starts keeping views; `true` when more events may be waiting.
    async fn follow_round(
        &self,
        store: &SqlStore,
        cursor: &mut Option<i64>,
    ) -> Result<bool, crate::store::StoreError> {
        let changed = match *cursor {
            Some(after) => store.subjects_changed_after(after, FOLLOW_BATCH).await?,
            None => {
                *cursor = Some(store.latest_event_cursor().await?);
                Vec::new()
            }
        };
        let full = changed.len() as u32 == FOLLOW_BATCH;
        if let Some((last, _)) = changed.last() {
            *cursor = Some(*last);
            self.forget(changed.iter().filter_map(|(_, subject)| match subject {
                Subject::Verification(id) => Some(id.as_str()),
                Subject::Notification(_) | Subject::Block(_) | Subject::Campaign(_) => None,
            }));
        }
        if !self.following.load(Ordering::SeqCst) {
            // Views read before this bump may miss events at or below the cursor.
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.following.store(true, Ordering::SeqCst);
        }
        Ok(full)
    }
}

/// Forgets every view, and keeps none, when dropped: when following the log ends.
struct StopKeeping<'a>(&'a EndedViews);

impl Drop for StopKeeping<'_> {
    fn drop(&mut self) {
        self.0.forget_all();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::domain::{Event, EventKind, SubjectStatus, Verification, VerificationSpec};
    use crate::on_both_databases;
    use crate::store::test_db::TestDb;
    use crate::store::{EventLog, VerificationRepository};

    on_both_databases!(views_of_ended_verifications_are_kept_until_an_event_names_them);

    const NOW: i64 = 1_700_000_000_000;

    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn views_of_ended_verifications_are_kept_until_an_event_names_them(db: &TestDb) {
        // The follower reads through a store of its own, as another process would: it learns
        // of the test's writes by polling.
        let follower_store = Arc::new(SqlStore::connect(&db.url).await.unwrap());
        let (_stop, shutdown) = watch::channel(false);
        let views = EndedViews::new();
        let pending = Verification::start(
            VerificationSpec::example("vf_e1", "+447400000001", NOW),
            NOW,
        )
        .0;
        let mut canceled = pending.clone();
        let cancel_event = canceled.cancel(NOW).unwrap().unwrap();
        let view = |verification: &Verification| VerificationView {
            verification: verification.clone(),
            messages: Vec::new(),
        };

        // Nothing is kept before the log is followed.
        views.keep(&view(&canceled), views.generation());
        assert!(views.get("vf_e1").is_none());
        views.follow(Arc::clone(&follower_store), shutdown);
        wait_until("following", || views.following.load(Ordering::SeqCst)).await;

        // A pending verification is not kept; an ended one is.
        views.keep(&view(&pending), views.generation());
        assert!(views.get("vf_e1").is_none());
        let mut tx = db.store.begin().await.unwrap();
        tx.insert_verification(&canceled).await.unwrap();
        tx.record([cancel_event]);
        tx.commit().await.unwrap();
        // Events recorded before the view was read (the cancel above) may still be followed
        // after it is kept: that forgets it, and the next read keeps it again.
        let read_from = views.generation();
        views.keep(&view(&canceled), read_from);
        wait_until("the cancel event is followed", || {
            views.generation() != read_from
        })
        .await;
        let read_from = views.generation();
        views.keep(&view(&canceled), read_from);
        assert_eq!(
            views.get("vf_e1").unwrap().verification.status,
            canceled.status
        );

        // A view read before an event was followed is not kept.
        let stale = views.generation();
        views.forget(std::iter::once("vf_other"));
        views.forget(std::iter::once("vf_e1"));
        views.keep(&view(&canceled), stale);
        assert!(views.get("vf_e1").is_none());
        views.keep(&view(&canceled), views.generation());
        assert!(views.get("vf_e1").is_some());

        // An event naming it (a receipt's, say) makes the follower forget it.
        let mut tx = db.store.begin().await.unwrap();
        tx.record([Event {
            service_id: crate::domain::DEFAULT_SERVICE.into(),
            kind: EventKind::MessageDelivered,
            subject: canceled.subject(),
            message: None,
            subject_status: SubjectStatus::Verification(canceled.status),
            detail: "delivered".into(),
            at_ms: NOW,
        }]);
        tx.commit().await.unwrap();
        wait_until("the view is forgotten", || views.get("vf_e1").is_none()).await;
        follower_store.close().await;
    }
}
