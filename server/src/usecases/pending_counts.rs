//! Rate-limit counts this server decided but has not written to the store yet.
//!
//! A request allowed by the limits counts in its buckets. Writing that count in the request's
//! own transaction cost a savepoint and an upsert in every Verify group and check, as much as
//! the rest of the rules together on PostgreSQL. The counts are instead held here once the
//! write has decided them (a check's and a Notify's at once, a Verify group's at the end of
//! its write), so that the requests this server decides next count them; kept when
//! the request's transaction commits (dropped when it does not), and written to the store by
//! one background write every [`WRITE_EVERY`], merged per bucket and slot (and once more when
//! the server stops). Other replicas see them after that write; a crash loses at most one
//! interval of counts, which lets a few more requests through. Counts being written stay
//! counted here until the store shows them to the requests that read next: on SQLite at once
//! (later writes share the writer's transaction), on PostgreSQL at its commit (between the
//! commit and the moment they leave memory, a fraction of a millisecond, they count twice).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch as signal;

use crate::store::{RateCounts, SqlStore, StoreError};

/// How often the counts kept are written to the store.
pub(super) const WRITE_EVERY: Duration = Duration::from_millis(200);

/// `(bucket's key in the store, slot start, count)`, as the store keeps counts.
pub(super) type Count = (String, i64, i64);

/// A bucket's count in one slot, by where it stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Unwritten {
    /// Decided by a transaction that has not committed yet.
    held: i64,
    /// Committed, waiting for the next write.
    kept: i64,
    /// Being written, not shown by the store yet.
    writing: i64,
}

impl Unwritten {
    fn total(&self) -> i64 {
        self.held + self.kept + self.writing
    }
}

/// The counts of this server not in the store yet, by bucket and slot.
#[derive(Debug, Default)]
pub(super) struct PendingCounts {
    buckets: Mutex<HashMap<String, BTreeMap<i64, Unwritten>>>,
}

impl PendingCounts {
    /// Holds `counts` for a transaction that has not committed: counted from now on, kept by
    /// [`HeldCounts::keep`] once it commits, forgotten if the holder is dropped instead.
    pub(super) fn hold(self: &Arc<Self>, counts: Vec<Count>) -> HeldCounts {
        if !counts.is_empty() {
            self.change(&counts, |unwritten, count| unwritten.held += count);
        }
        HeldCounts {
            pending: Some(Arc::clone(self)),
            counts,
        }
    }

    /// `(slot, count)` of `bucket` not written yet, in slots from `since_slot` on.
    pub(super) fn of(&self, bucket: &str, since_slot: i64) -> Vec<(i64, i64)> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets
            .get(bucket)
            .map(|slots| {
                slots
                    .range(since_slot..)
                    .map(|(&slot, unwritten)| (slot, unwritten.total()))
                    .filter(|&(_, count)| count > 0)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Applies `change` to the entry of each count, dropping entries left empty.
    fn change(&self, counts: &[Count], change: impl Fn(&mut Unwritten, i64)) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        for (bucket, slot, count) in counts {
            let slots = buckets.entry(bucket.clone()).or_default();
            let unwritten = slots.entry(*slot).or_default();
            change(unwritten, *count);
            if *unwritten == Unwritten::default() {
                slots.remove(slot);
                if slots.is_empty() {
                    buckets.remove(bucket);
                }
            }
        }
    }

    /// The counts kept, now marked as being written.
    fn take_kept(&self) -> Vec<Count> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = Vec::new();
        for (bucket, slots) in buckets.iter_mut() {
            for (&slot, unwritten) in slots.iter_mut() {
                if unwritten.kept != 0 {
                    taken.push((bucket.clone(), slot, unwritten.kept));
                    unwritten.writing += unwritten.kept;
                    unwritten.kept = 0;
                }
            }
        }
        // In one order, so that two replicas' writes never wait for each other in a circle.
        taken.sort_unstable();
        taken
    }

    /// Writes the counts kept to `store`: one write for all of them. A write that fails
    /// leaves them kept, for the next one.
    pub(super) async fn write_kept(self: &Arc<Self>, store: &SqlStore) {
        let counts = self.take_kept();
        if counts.is_empty() {
            return;
        }
        let written = counts.clone();
        let pending = Arc::clone(self);
        // Whether the counts left memory inside the write (SQLite: the writes after it in its
        // batch read its rows on the writer's connection).
        let left_in_write = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let left = Arc::clone(&left_in_write);
        let stored: Result<(), StoreError> = store
            .write_background(move |tx| {
                Box::pin(async move {
                    tx.add_rate_counts(&written).await?;
                    if tx.reads_are_locked() {
                        pending.change(&written, |unwritten, count| unwritten.writing -= count);
                        left.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(())
                })
            })
            .await;
        let left = left_in_write.load(std::sync::atomic::Ordering::SeqCst);
        match stored {
            Ok(()) if left => {}
            Ok(()) => self.change(&counts, |unwritten, count| unwritten.writing -= count),
            Err(error) => {
                tracing::warn!(%error, "writing rate-limit counts failed; trying again shortly");
                self.change(&counts, |unwritten, count| {
                    if !left {
                        unwritten.writing -= count;
                    }
                    unwritten.kept += count;
                });
            }
        }
    }

    /// Writes the counts kept every [`WRITE_EVERY`] until `shutdown`, and once more then (the
    /// server writes the last ones after its requests have finished: see
    /// `UseCases::write_pending_counts`).
    pub(super) fn write_in_background(
        self: &Arc<Self>,
        store: Arc<SqlStore>,
        mut shutdown: signal::Receiver<bool>,
    ) {
        let pending = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = shutdown.wait_for(|stopping| *stopping) => true,
                    _ = tokio::time::sleep(WRITE_EVERY) => false,
                };
                pending.write_kept(&store).await;
                if stopping {
                    return;
                }
            }
        });
    }
}

/// Counts held for a transaction (see [`PendingCounts::hold`]): kept with [`keep`] after it
/// commits; forgotten when dropped without.
///
/// [`keep`]: HeldCounts::keep
#[derive(Debug, Default)]
#[must_use = "held counts are forgotten unless kept after the commit"]
pub(super) struct HeldCounts {
    pending: Option<Arc<PendingCounts>>,
    counts: Vec<Count>,
}

impl HeldCounts {
    /// No counts.
    pub(super) fn none() -> Self {
        HeldCounts::default()
    }

    /// Adds `other`'s counts to these (both held by the same server).
    pub(super) fn join(&mut self, mut other: HeldCounts) {
        if self.pending.is_none() {
            self.pending = other.pending.take();
        }
        self.counts.append(&mut other.counts);
    }

    /// The transaction committed: the counts are written with the next background write.
    pub(super) fn keep(mut self) {
        if let Some(pending) = self.pending.take() {
            pending.change(&self.counts, |unwritten, count| {
                unwritten.held -= count;
                unwritten.kept += count;
            });
        }
    }
}

impl Drop for HeldCounts {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.change(&self.counts, |unwritten, count| unwritten.held -= count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(bucket: &str, slot: i64, count: i64) -> Count {
        (bucket.to_string(), slot, count)
    }

    #[test]
    fn held_counts_count_at_once_and_are_forgotten_unless_kept() {
        let pending = Arc::new(PendingCounts::default());
        let held = pending.hold(vec![count("number|+1", 10, 1), count("number|+1", 20, 2)]);
        assert_eq!(pending.of("number|+1", 0), vec![(10, 1), (20, 2)]);
        assert_eq!(pending.of("number|+1", 15), vec![(20, 2)]);
        assert_eq!(pending.of("number|+2", 0), vec![]);
        drop(held);
        assert_eq!(pending.of("number|+1", 0), vec![]);
        assert!(pending.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn kept_counts_are_taken_for_writing_once() {
        let pending = Arc::new(PendingCounts::default());
        let mut held = pending.hold(vec![count("b", 10, 1)]);
        held.join(pending.hold(vec![count("b", 10, 2), count("a", 10, 1)]));
        held.keep();
        assert_eq!(pending.of("b", 0), vec![(10, 3)]);
        let taken = pending.take_kept();
        assert_eq!(taken, vec![count("a", 10, 1), count("b", 10, 3)]);
        // Still counted while written; nothing more to take.
        assert_eq!(pending.of("b", 0), vec![(10, 3)]);
        assert!(pending.take_kept().is_empty());
        pending.change(&taken, |unwritten, count| unwritten.writing -= count);
        assert_eq!(pending.of("b", 0), vec![]);
        assert!(pending.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn empty_holders_do_nothing() {
        let mut none = HeldCounts::none();
        none.join(HeldCounts::none());
        none.keep();
    }
}
