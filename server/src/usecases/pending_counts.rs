//! Rate-limit counts this server decided but has not written to the store yet.
//!
//! A request allowed by the limits counts in its buckets. Writing that count in the request's
//! own transaction cost a savepoint and an upsert in every Verify group and check, as much as
//! the rest of the rules together on PostgreSQL. The counts are instead held here once the
//! write has decided them (a check's and a Notify's at once, a Verify group's at the end of
//! its write), so that the requests this server decides next count them; kept when the
//! request's transaction commits (dropped when it does not), and written to the store by one
//! background write every [`WRITE_EVERY`], merged per bucket and slot (and once more when the
//! server stops). Other replicas see them after that write; a crash loses at most one
//! interval of counts, which lets a few more requests through.
//!
//! Each write also adds one to this server's mark in the store (its count of writes), in the
//! same transaction. A reader reads the mark with the counts, so it knows which of the writes
//! under way its read already shows, and adds the others from memory: a count is never
//! counted twice, nor missed, while it is written.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch as signal;

use crate::store::{RateCounts, SqlStore, StoreError};

/// How often the counts kept are written to the store.
pub(super) const WRITE_EVERY: Duration = Duration::from_millis(200);

/// `(bucket's key in the store, slot start, count)`, as the store keeps counts.
pub(super) type Count = (String, i64, i64);

/// The slot of a server's mark: after every other, so no window leaves it behind.
const MARK_SLOT: i64 = i64::MAX;

/// How long a write's counts stay here after its commit, for the readers whose read of the
/// store began before it (a reader reads memory right after its statement returns).
const WRITTEN_KEPT: Duration = Duration::from_secs(10);

/// A bucket's count in one slot, by where it stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Unwritten {
    /// Decided by a transaction that has not committed yet.
    held: i64,
    /// Committed, waiting for the next write.
    kept: i64,
}

impl Unwritten {
    fn total(&self) -> i64 {
        self.held + self.kept
    }
}

/// One background write's counts: the mark it sets, and when it committed.
#[derive(Debug)]
struct Write {
    mark: i64,
    counts: Vec<Count>,
    committed: Option<Instant>,
}

/// The writes under way or lately committed, and how many committed (the mark in the store).
#[derive(Debug, Default)]
struct Writes {
    committed: i64,
    recent: Vec<Write>,
}

/// The counts of this server not in the store yet, by bucket and slot.
#[derive(Debug)]
pub(super) struct PendingCounts {
    buckets: Mutex<HashMap<String, BTreeMap<i64, Unwritten>>>,
    writes: Mutex<Writes>,
    /// One write at a time, so that marks follow each other.
    write_turn: tokio::sync::Mutex<()>,
    /// The bucket of this server's mark (one per process).
    mark_bucket: String,
}

impl Default for PendingCounts {
    fn default() -> Self {
        PendingCounts {
            buckets: Mutex::default(),
            writes: Mutex::default(),
            write_turn: tokio::sync::Mutex::new(()),
            mark_bucket: super::new_id("counts-written|srv"),
        }
    }
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

    /// The bucket of this server's mark, to read with the counts (see [`Self::mark_in`]).
    pub(super) fn mark_bucket(&self) -> &str {
        &self.mark_bucket
    }

    /// This server's mark among `(bucket, slot, count)` rows read from the store: how many of
    /// its writes the read shows (0 if none).
    pub(super) fn mark_in(&self, rows: &[Count]) -> i64 {
        rows.iter()
            .find(|(bucket, slot, _)| *bucket == self.mark_bucket && *slot == MARK_SLOT)
            .map_or(0, |(.., count)| *count)
    }

    /// `(slot, count)` of `bucket` that a read of the store showing `seen` of this server's
    /// writes (its mark) does not show, in slots from `since_slot` on.
    pub(super) fn of(&self, bucket: &str, since_slot: i64, seen: i64) -> Vec<(i64, i64)> {
        // Both at once, in the order a write takes them: a count moved from the kept ones to a
        // write is found in exactly one of the two.
        let writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
        let kept = buckets
            .get(bucket)
            .into_iter()
            .flat_map(|slots| slots.range(since_slot..))
            .map(|(&slot, unwritten)| (slot, unwritten.total()));
        let being_written = writes
            .recent
            .iter()
            .filter(|write| write.mark > seen)
            .flat_map(|write| &write.counts)
            .filter(|(written, slot, _)| written == bucket && *slot >= since_slot)
            .map(|(_, slot, count)| (*slot, *count));
        for (slot, count) in kept.chain(being_written) {
            *counts.entry(slot).or_default() += count;
        }
        counts.into_iter().filter(|&(_, count)| count > 0).collect()
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

    /// The counts kept, taken out to be written.
    fn take_kept(&self) -> Vec<Count> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = Vec::new();
        for (bucket, slots) in buckets.iter_mut() {
            for (&slot, unwritten) in slots.iter_mut() {
                if unwritten.kept != 0 {
                    taken.push((bucket.clone(), slot, unwritten.kept));
                    unwritten.kept = 0;
                }
            }
            slots.retain(|_, unwritten| *unwritten != Unwritten::default());
        }
        buckets.retain(|_, slots| !slots.is_empty());
        // In one order, so that two replicas' writes never wait for each other in a circle.
        taken.sort_unstable();
        taken
    }

    /// Writes the counts kept to `store`: one write for all of them, with this server's mark.
    /// A write that fails leaves them kept, for the next one.
    pub(super) async fn write_kept(self: &Arc<Self>, store: &SqlStore) {
        let _turn = self.write_turn.lock().await;
        // Taken from the kept counts and listed as a write at once, so a reader finds them in
        // one of the two.
        let (mark, counts) = {
            let mut writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
            let counts = self.take_kept();
            if counts.is_empty() {
                return;
            }
            let mark = writes.committed + 1;
            writes.recent.retain(|write| {
                write
                    .committed
                    .is_none_or(|committed| committed.elapsed() < WRITTEN_KEPT)
            });
            writes.recent.push(Write {
                mark,
                counts: counts.clone(),
                committed: None,
            });
            (mark, counts)
        };
        let mut rows = counts.clone();
        rows.push((self.mark_bucket.clone(), MARK_SLOT, 1));
        let stored: Result<(), StoreError> = store
            .write_background(move |tx| Box::pin(async move { tx.add_rate_counts(&rows).await }))
            .await;
        let mut writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        match stored {
            Ok(()) => {
                writes.committed = mark;
                if let Some(write) = writes.recent.iter_mut().find(|write| write.mark == mark) {
                    write.committed = Some(Instant::now());
                }
            }
            Err(error) => {
                tracing::warn!(%error, "writing rate-limit counts failed; trying again shortly");
                writes.recent.retain(|write| write.mark != mark);
                self.change(&counts, |unwritten, count| unwritten.kept += count);
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
        assert_eq!(pending.of("number|+1", 0, 0), vec![(10, 1), (20, 2)]);
        assert_eq!(pending.of("number|+1", 15, 0), vec![(20, 2)]);
        assert_eq!(pending.of("number|+2", 0, 0), vec![]);
        drop(held);
        assert_eq!(pending.of("number|+1", 0, 0), vec![]);
        assert!(pending.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn kept_counts_are_taken_for_writing_once() {
        let pending = Arc::new(PendingCounts::default());
        let mut held = pending.hold(vec![count("b", 10, 1)]);
        held.join(pending.hold(vec![count("b", 10, 2), count("a", 10, 1)]));
        held.keep();
        assert_eq!(pending.of("b", 0, 0), vec![(10, 3)]);
        let taken = pending.take_kept();
        assert_eq!(taken, vec![count("a", 10, 1), count("b", 10, 3)]);
        assert!(pending.take_kept().is_empty());
        assert!(pending.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn counts_being_written_count_unless_the_read_shows_their_mark() {
        let pending = Arc::new(PendingCounts::default());
        pending.hold(vec![count("b", 10, 2)]).keep();
        // As a write takes them: out of the kept counts, into a write that sets mark 1.
        let counts = pending.take_kept();
        pending.writes.lock().unwrap().recent.push(Write {
            mark: 1,
            counts,
            committed: None,
        });
        pending.hold(vec![count("b", 10, 1)]).keep();
        // A read of the store before the write's commit shows mark 0: both count from here.
        assert_eq!(pending.of("b", 0, 0), vec![(10, 3)]);
        // A read that shows the write (mark 1) has its counts already.
        assert_eq!(pending.of("b", 0, 1), vec![(10, 1)]);
        assert_eq!(pending.of("b", 11, 0), vec![]);
        let mark = pending.mark_bucket().to_string();
        let rows = vec![count("b", 10, 2), (mark, MARK_SLOT, 1)];
        assert_eq!(pending.mark_in(&rows), 1);
        assert_eq!(pending.mark_in(&rows[..1]), 0);
    }

    #[test]
    fn empty_holders_do_nothing() {
        let mut none = HeldCounts::none();
        none.join(HeldCounts::none());
        none.keep();
    }
}
