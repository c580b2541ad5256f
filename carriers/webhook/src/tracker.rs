//! Messages accepted by the gateway whose final receipt has not arrived yet: what lets a receipt
//! be reported once per message and shutdown wait for receipts (one part per message here).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a message is remembered after its submission; receipts later than this are
/// reported as receipts of an unknown message.
const REMEMBER_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the id of a receipt reported before its submission's answer was read (a vendor
/// faster than our HTTP client) is remembered, so the message is not awaited again.
const EARLY_FOR: Duration = Duration::from_secs(10 * 60);
/// Early receipts remembered at most.
const MAX_EARLY: usize = 10_000;

/// What to do with a receipt for one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Report it, under the message's carrier id (the first part's id).
    Report {
        /// The id `submit` returned.
        carrier_message_id: String,
        /// verifyd's id of the message.
        message_id: String,
    },
    /// A part was delivered and others are still outstanding: nothing to report yet.
    Wait,
    /// The message's receipt was already reported: ignore.
    Duplicate,
    /// Not a message this process submitted (or it was forgotten): report it as it is.
    Unknown,
}

#[derive(Debug)]
struct Entry {
    message_id: String,
    parts_left: HashSet<String>,
    all_parts: Vec<String>,
    finished: bool,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    submitting: usize,
    unfinished: usize,
    parts: HashMap<String, String>,
    messages: HashMap<String, Entry>,
    order: VecDeque<(Instant, String)>,
    early: HashMap<String, Instant>,
}

impl State {
    fn forget_old(&mut self, now: Instant) {
        if !self.early.is_empty() {
            self.early
                .retain(|_, at| now.duration_since(*at) < EARLY_FOR);
        }
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < REMEMBER_FOR {
                break;
            }
            let Some((_, key)) = self.order.pop_front() else {
                break;
            };
            if let Some(entry) = self.messages.remove(&key) {
                if !entry.finished {
                    self.unfinished -= 1;
                }
                for part in entry.all_parts {
                    self.parts.remove(&part);
                }
            }
        }
    }
}

/// The carrier's in-flight bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    state: Mutex<State>,
    changed: Notify,
}

/// A submission in progress; shutdown waits for it to end.
pub(crate) struct Submitting<'a> {
    tracker: &'a Tracker,
}

impl Drop for Submitting<'_> {
    fn drop(&mut self) {
        self.tracker.lock().submitting -= 1;
        self.tracker.changed.notify_waiters();
    }
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a submission, or `None` once shutdown has begun.
    pub(crate) fn begin_submit(&self) -> Option<Submitting<'_>> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.submitting += 1;
        Some(Submitting { tracker: self })
    }

    /// Records an accepted message made of `parts` (the first names the message).
    pub(crate) fn accepted(&self, parts: &[String], message_id: &str) {
        self.remember(parts, message_id, false);
    }

    fn remember(&self, parts: &[String], message_id: &str, finished: bool) {
        let Some(key) = parts.first() else {
            return;
        };
        let now = Instant::now();
        let mut state = self.lock();
        state.forget_old(now);
        if state.messages.contains_key(key) {
            return;
        }
        // A receipt for one of the parts was already reported as unknown: its answer came
        // after the receipt. The message counts as receipted.
        let finished = finished || parts.iter().any(|part| state.early.remove(part).is_some());
        for part in parts {
            state.parts.insert(part.clone(), key.clone());
        }
        state.messages.insert(
            key.clone(),
            Entry {
                message_id: message_id.to_string(),
                parts_left: parts.iter().cloned().collect(),
                all_parts: parts.to_vec(),
                finished,
            },
        );
        if !finished {
            state.unfinished += 1;
        }
        state.order.push_back((now, key.clone()));
    }

    /// A final receipt for `part`: delivered or not. A failed part fails the message at once;
    /// the message is delivered when every part is.
    pub(crate) fn final_receipt(&self, part: &str, delivered: bool) -> Outcome {
        let mut state = self.lock();
        let Some(key) = state.parts.get(part).cloned() else {
            if state.early.len() < MAX_EARLY {
                state.early.insert(part.to_string(), Instant::now());
            }
            return Outcome::Unknown;
        };
        let Some(entry) = state.messages.get_mut(&key) else {
            return Outcome::Unknown;
        };
        if entry.finished {
            return Outcome::Duplicate;
        }
        entry.parts_left.remove(part);
        if delivered && !entry.parts_left.is_empty() {
            return Outcome::Wait;
        }
        entry.finished = true;
        let message_id = entry.message_id.clone();
        state.unfinished -= 1;
        drop(state);
        self.changed.notify_waiters();
        Outcome::Report {
            carrier_message_id: key,
            message_id,
        }
    }

    /// Refuses new submissions, then waits up to `wait` for running submissions to end and
    /// for the receipts of accepted messages. Returns how many receipts never came.
    pub(crate) async fn drain(&self, wait: Duration) -> usize {
        self.lock().closed = true;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if state.submitting == 0 && state.unfinished == 0 {
                    return 0;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lock().unfinished;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn multipart_is_delivered_once_when_every_part_is() {
        let tracker = Tracker::default();
        tracker.accepted(&ids(&["A", "B"]), "msg_1");
        assert_eq!(tracker.final_receipt("B", true), Outcome::Wait);
        let report = Outcome::Report {
            carrier_message_id: "A".into(),
            message_id: "msg_1".into(),
        };
        assert_eq!(tracker.final_receipt("A", true), report);
        assert_eq!(tracker.final_receipt("A", true), Outcome::Duplicate);
        assert_eq!(tracker.final_receipt("Z", true), Outcome::Unknown);
    }

    #[test]
    fn a_failed_part_fails_the_message_once() {
        let tracker = Tracker::default();
        tracker.accepted(&ids(&["A", "B", "C"]), "msg_1");
        assert!(matches!(
            tracker.final_receipt("B", false),
            Outcome::Report { .. }
        ));
        assert_eq!(tracker.final_receipt("A", true), Outcome::Duplicate);
        assert_eq!(tracker.final_receipt("C", false), Outcome::Duplicate);
    }

    #[tokio::test]
    async fn a_receipt_before_the_answer_is_not_awaited_again() {
        let tracker = Tracker::default();
        assert_eq!(tracker.final_receipt("A", true), Outcome::Unknown);
        tracker.accepted(&ids(&["A"]), "msg_1");
        assert_eq!(tracker.final_receipt("A", true), Outcome::Duplicate);
        assert_eq!(tracker.drain(Duration::from_millis(20)).await, 0);
    }

    #[tokio::test]
    async fn drain_refuses_new_submissions_and_times_out() {
        let tracker = Tracker::default();
        tracker.accepted(&ids(&["A"]), "msg_1");
        assert_eq!(tracker.drain(Duration::from_millis(20)).await, 1);
        assert!(tracker.begin_submit().is_none());
    }
}
