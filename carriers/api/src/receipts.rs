//! Messages accepted by an HTTP vendor whose final receipt has not arrived yet: what lets a
//! receipt be reported once per message (multi-part messages included) and shutdown wait for
//! receipts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::shutdown::{InFlightGate, wait_for};
use crate::{DeliveryReceipt, ReceiptPermit, ReceiptStatus};

/// How long a message is remembered after its submission; receipts later than this are
/// reported as receipts of an unknown message.
const REMEMBER_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the id of a receipt reported before its submission's answer was read (a vendor
/// faster than our HTTP client) is remembered, so the message is not awaited again.
const EARLY_FOR: Duration = Duration::from_secs(10 * 60);
/// Early receipts remembered at most.
const MAX_EARLY: usize = 10_000;

/// What to do with a final receipt for one part, as [`PendingReceipts::final_receipt`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Report it, under the message's carrier id (the first part's id).
    Report {
        /// The id `submit` returned.
        carrier_message_id: String,
        /// verifyd's id of the message.
        message_id: String,
    },
    /// A part was delivered and others are still outstanding: nothing to report yet.
    Wait,
    /// The message's receipt was already reported (or its submission failed): ignore.
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

/// The accepted messages of one carrier that still await their final receipt: each message is
/// reported once (failed as soon as a part fails, delivered when every part is), receipts that
/// overtake their submission's answer are matched, and shutdown can wait for the rest.
#[derive(Debug, Default)]
pub struct PendingReceipts {
    state: Mutex<State>,
    changed: Notify,
}

impl PendingReceipts {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an accepted message made of `parts` (the first names the message).
    pub fn accepted(&self, parts: &[String], message_id: &str) {
        self.remember(parts, message_id, false);
    }

    /// Records parts the vendor accepted of a submission that failed as a whole, so their
    /// receipts are ignored.
    pub fn suppress(&self, parts: &[String], message_id: &str) {
        self.remember(parts, message_id, true);
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
    pub fn final_receipt(&self, part: &str, delivered: bool) -> ReceiptOutcome {
        let outcome = Self::resolve(&mut self.lock(), part, delivered);
        if matches!(outcome, ReceiptOutcome::Report { .. }) {
            self.changed.notify_waiters();
        }
        outcome
    }

    fn resolve(state: &mut State, part: &str, delivered: bool) -> ReceiptOutcome {
        let Some(key) = state.parts.get(part).cloned() else {
            if state.early.len() < MAX_EARLY {
                state.early.insert(part.to_string(), Instant::now());
            }
            return ReceiptOutcome::Unknown;
        };
        let Some(entry) = state.messages.get_mut(&key) else {
            return ReceiptOutcome::Unknown;
        };
        if entry.finished {
            return ReceiptOutcome::Duplicate;
        }
        entry.parts_left.remove(part);
        if delivered && !entry.parts_left.is_empty() {
            return ReceiptOutcome::Wait;
        }
        entry.finished = true;
        let message_id = entry.message_id.clone();
        state.unfinished -= 1;
        ReceiptOutcome::Report {
            carrier_message_id: key,
            message_id,
        }
    }

    /// The receipt carrier `carrier` reports for a final status of `part` (see
    /// [`final_receipt`](Self::final_receipt)), or `None` when there is nothing to report now: a
    /// part of a message whose other parts are outstanding, or a message already reported.
    /// `message_id` is verifyd's id as the vendor's receipt names it, for a message this process
    /// does not know.
    pub fn receipt(
        &self,
        carrier: &str,
        part: &str,
        delivered: bool,
        message_id: Option<String>,
        detail: String,
    ) -> Option<DeliveryReceipt> {
        let outcome = self.final_receipt(part, delivered);
        Self::receipt_for(outcome, carrier, part, delivered, message_id, detail)
    }

    /// Like [`receipt`](Self::receipt), and hands the receipt to `permit` (room the caller took
    /// in its [`ReceiptSink`](crate::ReceiptSink) beforehand) before the message stops counting
    /// as unfinished, so [`wait_until_settled`](Self::wait_until_settled) never returns between
    /// the two. Returns whether a receipt was reported; the permit is released otherwise.
    pub fn report(
        &self,
        permit: ReceiptPermit,
        carrier: &str,
        part: &str,
        delivered: bool,
        message_id: Option<String>,
        detail: String,
    ) -> bool {
        let mut state = self.lock();
        let outcome = Self::resolve(&mut state, part, delivered);
        let settled = matches!(outcome, ReceiptOutcome::Report { .. });
        let Some(receipt) =
            Self::receipt_for(outcome, carrier, part, delivered, message_id, detail)
        else {
            return false;
        };
        permit.deliver(receipt);
        drop(state);
        if settled {
            self.changed.notify_waiters();
        }
        true
    }

    fn receipt_for(
        outcome: ReceiptOutcome,
        carrier: &str,
        part: &str,
        delivered: bool,
        message_id: Option<String>,
        detail: String,
    ) -> Option<DeliveryReceipt> {
        let (carrier_message_id, message_id) = match outcome {
            ReceiptOutcome::Report {
                carrier_message_id,
                message_id,
            } => (carrier_message_id, Some(message_id)),
            ReceiptOutcome::Unknown => (part.to_string(), message_id),
            ReceiptOutcome::Wait | ReceiptOutcome::Duplicate => return None,
        };
        Some(DeliveryReceipt {
            carrier: carrier.to_string(),
            carrier_message_id,
            message_id,
            status: if delivered {
                ReceiptStatus::Delivered
            } else {
                ReceiptStatus::Failed
            },
            detail,
            alternative_ids: Vec::new(),
        })
    }

    /// How many accepted messages still await their final receipt.
    pub fn unfinished(&self) -> usize {
        self.lock().unfinished
    }

    /// Waits until every accepted message has its final receipt or `deadline` passes. Returns
    /// how many receipts never came (0 when settled). Call it once no submission is in flight
    /// (see [`InFlightGate::wait_idle`](crate::shutdown::InFlightGate::wait_idle)), so no
    /// message is accepted meanwhile.
    pub async fn wait_until_settled(&self, deadline: tokio::time::Instant) -> usize {
        wait_for(&self.changed, || self.unfinished() == 0, Some(deadline)).await;
        self.unfinished()
    }
}

/// A carrier's shutdown: closes `gate`, then waits up to `wait` in all for the submissions in
/// flight and for the receipts of accepted messages. Returns how many receipts never came.
pub async fn drain(gate: &InFlightGate, pending: &PendingReceipts, wait: Duration) -> usize {
    gate.close();
    let deadline = tokio::time::Instant::now() + wait;
    gate.wait_idle(Some(deadline)).await;
    pending.wait_until_settled(deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(20)
    }

    #[test]
    fn multipart_is_delivered_once_when_every_part_is() {
        let tracker = PendingReceipts::default();
        tracker.accepted(&ids(&["A", "B"]), "msg_1");
        assert_eq!(tracker.final_receipt("B", true), ReceiptOutcome::Wait);
        let report = ReceiptOutcome::Report {
            carrier_message_id: "A".into(),
            message_id: "msg_1".into(),
        };
        assert_eq!(tracker.final_receipt("A", true), report);
        assert_eq!(tracker.final_receipt("A", true), ReceiptOutcome::Duplicate);
        assert_eq!(tracker.final_receipt("Z", true), ReceiptOutcome::Unknown);
    }

    #[test]
    fn a_failed_part_fails_the_message_once() {
        let tracker = PendingReceipts::default();
        tracker.accepted(&ids(&["A", "B", "C"]), "msg_1");
        assert!(matches!(
            tracker.final_receipt("B", false),
            ReceiptOutcome::Report { .. }
        ));
        assert_eq!(tracker.final_receipt("A", true), ReceiptOutcome::Duplicate);
        assert_eq!(tracker.final_receipt("C", false), ReceiptOutcome::Duplicate);
        tracker.suppress(&ids(&["S"]), "msg_2");
        assert_eq!(tracker.final_receipt("S", true), ReceiptOutcome::Duplicate);
    }

    #[tokio::test]
    async fn a_receipt_before_the_answer_is_not_awaited_again() {
        let tracker = PendingReceipts::default();
        assert_eq!(tracker.final_receipt("A", true), ReceiptOutcome::Unknown);
        tracker.accepted(&ids(&["A"]), "msg_1");
        assert_eq!(tracker.final_receipt("A", true), ReceiptOutcome::Duplicate);
        assert_eq!(tracker.wait_until_settled(soon()).await, 0);
    }

    #[tokio::test]
    async fn drain_refuses_new_submissions_and_times_out() {
        let gate = InFlightGate::new();
        let tracker = PendingReceipts::default();
        tracker.accepted(&ids(&["A"]), "msg_1");
        assert_eq!(drain(&gate, &tracker, Duration::from_millis(20)).await, 1);
        assert!(gate.try_enter().is_none());
    }

    #[test]
    fn receipts_name_the_message_or_what_the_vendor_said() {
        let tracker = PendingReceipts::default();
        tracker.accepted(&ids(&["A", "B"]), "msg_1");
        let receipt = |part| tracker.receipt("c", part, true, Some("msg_x".into()), "ok".into());
        assert!(receipt("B").is_none());
        let reported = receipt("A").unwrap();
        assert_eq!(reported.carrier, "c");
        assert_eq!(reported.carrier_message_id, "A");
        assert_eq!(reported.message_id.as_deref(), Some("msg_1"));
        assert_eq!(reported.status, ReceiptStatus::Delivered);
        assert_eq!(reported.detail, "ok");
        assert!(receipt("A").is_none());
        let unknown = tracker
            .receipt("c", "Z", false, Some("msg_x".into()), "gone".into())
            .unwrap();
        assert_eq!(unknown.carrier_message_id, "Z");
        assert_eq!(unknown.message_id.as_deref(), Some("msg_x"));
        assert_eq!(unknown.status, ReceiptStatus::Failed);
    }

    #[tokio::test]
    async fn report_hands_the_receipt_over_before_the_message_settles() {
        let tracker = PendingReceipts::default();
        tracker.accepted(&ids(&["A", "B"]), "msg_1");
        let (sink, mut receiver) = crate::ReceiptSink::channel(4);
        let (sink, tracker) = (&sink, &tracker);
        let report = |part: &'static str| async move {
            let permit = sink.reserve().await.expect("room");
            tracker.report(permit, "c", part, true, None, "ok".into())
        };
        assert!(!report("B").await, "a part of an unfinished message");
        assert!(report("A").await);
        assert_eq!(tracker.wait_until_settled(soon()).await, 0);
        let receipt = receiver.try_recv().expect("handed over before it settled");
        assert_eq!(receipt.carrier_message_id, "A");
        assert_eq!(receipt.message_id.as_deref(), Some("msg_1"));
        assert!(receiver.try_recv().is_err(), "one receipt per message");
    }

    #[tokio::test]
    async fn settles_when_the_last_receipt_comes() {
        let tracker = std::sync::Arc::new(PendingReceipts::default());
        tracker.accepted(&ids(&["A"]), "msg_1");
        let waiter = tokio::spawn({
            let tracker = std::sync::Arc::clone(&tracker);
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                tracker.wait_until_settled(deadline).await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(matches!(
            tracker.final_receipt("A", true),
            ReceiptOutcome::Report { .. }
        ));
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
