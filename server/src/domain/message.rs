//! A message in the outbox: one text or call for a subject (a verification's code, a
//! notification), from queued to its last known state. The rules of its life are here: what a
//! carrier's answer does to it (accepted, refused for now or for good, maybe sent), what a
//! receipt does, and what happens when the dispatcher holding it stops.
//!
//! ```text
//! scheduled ─┐
//! queued ────┴─> claimed ──> sending ──> submitted ──> delivered | failed
//!   ^  (rerouted)   │           │  └──> maybe sent ──> delivered | failed (late receipt)
//!   └───────────────┴───────────┴─(refused for now, next carrier; or its dispatcher stopped)
//! ```
//! `claimed` means a dispatcher holds it and has not handed it to a carrier yet; `sending`
//! means it is being handed over. A message is never handed to a carrier twice, except to one
//! that recognises repeats by message id.

use verify_carrier::{Channel, ReceiptStatus};

use super::{
    Event, EventKind, MessageFacts, NotificationStatus, Subject, SubjectStatus, VerificationStatus,
    text_enum,
};

/// The due time of a message held until its campaign resumes: never due by itself.
pub const HELD_UNTIL_RESUMED: i64 = i64::MAX;

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Held until its due time by a country rule.
    Scheduled,
    /// Waiting for a dispatcher.
    Queued,
    /// Held by a dispatcher, not yet handed to a carrier.
    Claimed,
    /// Being handed to the carrier.
    Sending,
    /// Accepted by the carrier.
    Submitted,
    /// Went out to the carrier and no answer came: it may have been sent.
    MaybeSent,
    /// Delivered to the handset.
    Delivered,
    /// Refused or undelivered.
    Failed,
    /// Dropped before sending because its subject no longer wanted it.
    Canceled,
}

text_enum!(DeliveryStatus {
    Scheduled => "scheduled",
    Queued => "queued",
    Claimed => "claimed",
    Sending => "sending",
    Submitted => "submitted",
    MaybeSent => "maybe_sent",
    Delivered => "delivered",
    Failed => "failed",
    Canceled => "canceled",
});

impl DeliveryStatus {
    /// The states a dispatcher claims from, once the message is due.
    pub const CLAIMABLE: [DeliveryStatus; 2] = [DeliveryStatus::Scheduled, DeliveryStatus::Queued];

    /// Whether no carrier has it yet and none is being handed it: dropped when its subject
    /// ends.
    pub fn is_unsent(self) -> bool {
        Self::CLAIMABLE.contains(&self)
    }

    /// Whether nothing more can happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Canceled
        )
    }
}

/// How the subject's state is shown in a message's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectState {
    /// A verification, with its status.
    Verification(VerificationStatus),
    /// A notification: its status follows its message's.
    Notification,
    /// A campaign's recipient: its message's status tells where it is.
    Campaign,
}

/// What a new message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpec {
    /// Its id (`msg_...`).
    pub id: String,
    /// The service of its verification or notification.
    pub service_id: String,
    /// Whom it is for.
    pub subject: Subject,
    /// Its channel.
    pub channel: Channel,
    /// The carrier that gets it first.
    pub carrier: String,
    /// The carriers to fail over to, in order.
    pub fallback_carriers: Vec<String>,
    /// The workflow step it belongs to (0 for notifications).
    pub step: u32,
    /// The W3C `traceparent` of the request that queued it, when traces are exported: its
    /// send, carrier call and receipt continue that trace.
    pub trace_parent: Option<String>,
}

/// Whose attempt an outcome belongs to: the dispatcher that held the message and the number of
/// the hand-off (the message's `attempt` when it was handed over, or as claimed when it was not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The dispatcher.
    pub worker: String,
    /// The hand-off's number.
    pub number: u32,
}

/// How the attempt to send a claimed message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The carrier took it and named it.
    Accepted {
        /// The carrier's id, which its receipts refer to.
        carrier_message_id: String,
    },
    /// The carrier (or the route in front of it) refused it without sending.
    Refused {
        /// Why, with the carrier's name.
        reason: String,
        /// Whether another route may take it now.
        temporary: bool,
    },
    /// The request went out and no answer came: never failed over, never resent.
    MaybeSent {
        /// Why, with the carrier's name.
        reason: String,
    },
    /// Not handed over: its subject no longer wants it (a verification that ended).
    NotSent {
        /// Why.
        reason: String,
    },
    /// Not handed over: a country rule holds it until `until_ms`.
    Deferred {
        /// When it is due again, unix ms.
        until_ms: i64,
        /// The rule and why.
        reason: String,
    },
    /// Not handed over: a country rule refuses it at send time.
    Rejected {
        /// The rule and why.
        reason: String,
    },
    /// The carrier refused it for now because it is sending too fast: a campaign's message
    /// waits and goes to the same carrier again; any other message moves on as for a
    /// temporary refusal.
    Throttled {
        /// Why, with the carrier's name.
        reason: String,
        /// How long to wait before trying again, in ms.
        retry_after_ms: i64,
    },
}

/// What a delivery receipt did to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptEffect {
    /// The message took the receipt's state; record the event.
    Applied(Event),
    /// The receipt overtook the record of the submission: keep it until that lands.
    Early,
    /// The message already has a final state: nothing changes.
    Duplicate,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Id (`msg_...`).
    pub id: String,
    /// The service of its verification or notification.
    pub service_id: String,
    /// Whom it is for.
    pub subject: Subject,
    /// Channel.
    pub channel: Channel,
    /// Carrier that has it or gets it next.
    pub carrier: String,
    /// Carriers still to try, in order, if this one refuses it for now.
    pub fallback_carriers: Vec<String>,
    /// The workflow step it belongs to.
    pub step: u32,
    /// Where it is.
    pub status: DeliveryStatus,
    /// When it is due, unix ms.
    pub due_at_ms: i64,
    /// The dispatcher holding it (claimed or sending).
    pub claimed_by: Option<String>,
    /// How many times it was handed to a carrier: each hand-off is an attempt, and an outcome
    /// settles only the attempt it belongs to.
    pub attempt: u32,
    /// The carrier's id once accepted.
    pub carrier_message_id: Option<String>,
    /// The last detail (decision, carrier reason, receipt text).
    pub detail: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
    /// The W3C `traceparent` of the request that queued it (see [`MessageSpec`]).
    pub trace_parent: Option<String>,
}

impl OutboxMessage {
    fn new(
        spec: MessageSpec,
        status: DeliveryStatus,
        due_at_ms: i64,
        detail: &str,
        now_ms: i64,
    ) -> Self {
        OutboxMessage {
            id: spec.id,
            service_id: spec.service_id,
            subject: spec.subject,
            channel: spec.channel,
            carrier: spec.carrier,
            fallback_carriers: spec.fallback_carriers,
            step: spec.step,
            status,
            due_at_ms,
            claimed_by: None,
            attempt: 0,
            carrier_message_id: None,
            detail: detail.to_string(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            trace_parent: spec.trace_parent,
        }
    }

    /// A message due now; `detail` says why it goes where it goes.
    pub fn queue(
        spec: MessageSpec,
        detail: &str,
        subject: SubjectState,
        now_ms: i64,
    ) -> (OutboxMessage, Event) {
        let message = Self::new(spec, DeliveryStatus::Queued, now_ms, detail, now_ms);
        let event = message.event(EventKind::MessageQueued, detail, subject, now_ms);
        (message, event)
    }

    /// A message held until `until_ms` by a country rule; `detail` names the rule.
    pub fn schedule(
        spec: MessageSpec,
        until_ms: i64,
        detail: &str,
        subject: SubjectState,
        now_ms: i64,
    ) -> (OutboxMessage, Event) {
        let message = Self::new(spec, DeliveryStatus::Scheduled, until_ms, detail, now_ms);
        let event = message.event(EventKind::NotificationScheduled, detail, subject, now_ms);
        (message, event)
    }

    /// An event about this message, in its current state.
    pub fn event(
        &self,
        kind: EventKind,
        detail: impl Into<String>,
        subject: SubjectState,
        now_ms: i64,
    ) -> Event {
        let subject_status = match subject {
            SubjectState::Verification(status) => SubjectStatus::Verification(status),
            SubjectState::Notification => {
                SubjectStatus::Notification(NotificationStatus::of(self.status))
            }
            SubjectState::Campaign => SubjectStatus::Campaign(None),
        };
        Event {
            kind,
            service_id: self.service_id.clone(),
            subject: self.subject.clone(),
            message: Some(MessageFacts {
                id: self.id.clone(),
                channel: self.channel,
                carrier: self.carrier.clone(),
                status: self.status,
                previous_status: None,
            }),
            subject_status,
            detail: detail.into(),
            at_ms: now_ms,
        }
    }

    fn change(
        &mut self,
        status: DeliveryStatus,
        kind: EventKind,
        detail: String,
        subject: SubjectState,
        now_ms: i64,
    ) -> Event {
        let previous = self.status;
        self.status = status;
        self.detail = detail;
        self.updated_at_ms = now_ms;
        if !matches!(status, DeliveryStatus::Claimed | DeliveryStatus::Sending) {
            self.claimed_by = None;
        }
        let mut event = self.event(kind, self.detail.clone(), subject, now_ms);
        if let Some(facts) = event.message.as_mut() {
            facts.previous_status = Some(previous);
        }
        event
    }

    /// Drops it if no carrier has it yet (its subject ended); `None` otherwise.
    pub fn drop_unsent(
        &mut self,
        reason: &str,
        subject: SubjectState,
        now_ms: i64,
    ) -> Option<Event> {
        self.status.is_unsent().then(|| {
            self.change(
                DeliveryStatus::Canceled,
                EventKind::MessageCanceled,
                reason.to_string(),
                subject,
                now_ms,
            )
        })
    }

    /// Settles a claimed message with how `attempt` ended. `None` when that attempt is over
    /// (another process settled the message, or took it over and handed it over again): an
    /// outcome never touches another attempt.
    pub fn settle(
        &mut self,
        outcome: SendOutcome,
        attempt: &Attempt,
        subject: SubjectState,
        now_ms: i64,
    ) -> Option<Event> {
        use DeliveryStatus as S;
        let ours = self.claimed_by.as_deref() == Some(attempt.worker.as_str())
            && self.attempt == attempt.number;
        let handing = ours && self.status == S::Sending;
        let held = ours && self.status == S::Claimed;
        match outcome {
            // A carrier's answer is the best knowledge there is: it also settles a message
            // recorded maybe sent (the sweep took its slow dispatcher for dead, or the answer
            // came after the timeout).
            SendOutcome::Accepted { carrier_message_id }
                if handing || self.status == S::MaybeSent =>
            {
                let detail = format!("accepted by the carrier as {carrier_message_id}");
                self.carrier_message_id = Some(carrier_message_id);
                Some(self.change(
                    S::Submitted,
                    EventKind::MessageSubmitted,
                    detail,
                    subject,
                    now_ms,
                ))
            }
            SendOutcome::Throttled {
                reason,
                retry_after_ms,
            } if (handing || held) && subject == SubjectState::Campaign => {
                self.due_at_ms = now_ms + retry_after_ms.max(1);
                let detail = format!("{reason}; sent again in {} ms", retry_after_ms.max(1));
                Some(self.change(
                    S::Queued,
                    EventKind::MessageRequeued,
                    detail,
                    subject,
                    now_ms,
                ))
            }
            SendOutcome::Throttled { reason, .. } if handing || held => self.settle(
                SendOutcome::Refused {
                    reason,
                    temporary: true,
                },
                attempt,
                subject,
                now_ms,
            ),
            SendOutcome::Refused { reason, temporary } if handing || held => {
                match self.fallback_carriers.split_first() {
                    Some((next, rest)) if temporary => {
                        let detail = format!("{reason}; trying {next}");
                        self.carrier = next.clone();
                        self.fallback_carriers = rest.to_vec();
                        self.due_at_ms = now_ms;
                        Some(self.change(
                            S::Queued,
                            EventKind::MessageRerouted,
                            detail,
                            subject,
                            now_ms,
                        ))
                    }
                    None if temporary => {
                        let detail = format!("{reason}; no other route left");
                        Some(self.change(
                            S::Failed,
                            EventKind::MessageFailed,
                            detail,
                            subject,
                            now_ms,
                        ))
                    }
                    _ => Some(self.change(
                        S::Failed,
                        EventKind::MessageFailed,
                        reason,
                        subject,
                        now_ms,
                    )),
                }
            }
            SendOutcome::MaybeSent { reason } if handing => {
                let detail = format!("{reason}; not sent again: the carrier may have it");
                Some(self.change(
                    S::MaybeSent,
                    EventKind::MessageMaybeSent,
                    detail,
                    subject,
                    now_ms,
                ))
            }
            SendOutcome::NotSent { reason } if held => Some(self.change(
                S::Canceled,
                EventKind::MessageCanceled,
                reason,
                subject,
                now_ms,
            )),
            SendOutcome::Deferred { until_ms, reason } if held => {
                self.due_at_ms = until_ms;
                Some(self.change(
                    S::Scheduled,
                    EventKind::NotificationScheduled,
                    reason,
                    subject,
                    now_ms,
                ))
            }
            SendOutcome::Rejected { reason } if held => {
                Some(self.change(S::Failed, EventKind::MessageFailed, reason, subject, now_ms))
            }
            _ => None,
        }
    }

    /// Applies a delivery receipt.
    pub fn receipt(
        &mut self,
        status: ReceiptStatus,
        detail: &str,
        subject: SubjectState,
        now_ms: i64,
    ) -> ReceiptEffect {
        use DeliveryStatus as S;
        match self.status {
            S::Submitted | S::MaybeSent => {
                let (status, kind) = match status {
                    ReceiptStatus::Delivered => (S::Delivered, EventKind::MessageDelivered),
                    ReceiptStatus::Failed => (S::Failed, EventKind::MessageFailed),
                };
                ReceiptEffect::Applied(self.change(
                    status,
                    kind,
                    detail.to_string(),
                    subject,
                    now_ms,
                ))
            }
            S::Scheduled | S::Queued | S::Claimed | S::Sending => ReceiptEffect::Early,
            S::Delivered | S::Failed | S::Canceled => ReceiptEffect::Duplicate,
        }
    }

    /// Every priority a message may have, the most urgent first (the order dispatchers claim in).
    pub const PRIORITIES: [i64; 2] = [0, 1];

    /// Where it stands among due messages: codes and notifications (0) go before campaigns
    /// (1), so a campaign never holds a code up.
    pub fn priority(&self) -> i64 {
        match self.subject {
            Subject::Campaign(_) => Self::PRIORITIES[1],
            _ => Self::PRIORITIES[0],
        }
    }

    /// Holds a message no carrier has yet until [`unhold`](Self::unhold) (its campaign was
    /// paused). `false` when a carrier has it or is being handed it.
    pub fn hold(&mut self, now_ms: i64) -> bool {
        if !self.status.is_unsent() || self.due_at_ms == HELD_UNTIL_RESUMED {
            return false;
        }
        self.status = DeliveryStatus::Scheduled;
        self.due_at_ms = HELD_UNTIL_RESUMED;
        self.updated_at_ms = now_ms;
        true
    }

    /// Lets a held message go again now. `false` when it was not held.
    pub fn unhold(&mut self, now_ms: i64) -> bool {
        if self.status != DeliveryStatus::Scheduled || self.due_at_ms != HELD_UNTIL_RESUMED {
            return false;
        }
        self.status = DeliveryStatus::Queued;
        self.due_at_ms = now_ms;
        self.updated_at_ms = now_ms;
        true
    }

    /// Gives a claimed message back to the queue when its dispatcher stops before handing it
    /// over (a graceful stop). Nothing a client sees changes, so there is no event. `false`
    /// when it was not claimed.
    pub fn release(&mut self, now_ms: i64) -> bool {
        if self.status != DeliveryStatus::Claimed {
            return false;
        }
        self.status = DeliveryStatus::Queued;
        self.claimed_by = None;
        self.updated_at_ms = now_ms;
        true
    }

    /// The dispatcher holding it stopped (it crashed, or was taken for dead). A message it had
    /// not handed over is queued again; one it was handing over may have reached the carrier,
    /// so it is handed again only to a carrier that recognises repeats by message id, and is
    /// otherwise maybe sent. `None` when it was not held.
    pub fn abandoned(
        &mut self,
        carrier_deduplicates: bool,
        subject: SubjectState,
        now_ms: i64,
    ) -> Option<Event> {
        use DeliveryStatus as S;
        let (status, kind, detail) = match self.status {
            S::Claimed => (
                S::Queued,
                EventKind::MessageRequeued,
                "queued again: the dispatcher that claimed it stopped before handing it to a carrier".to_string(),
            ),
            S::Sending if carrier_deduplicates => (
                S::Queued,
                EventKind::MessageRequeued,
                format!(
                    "queued again: verifyd stopped while handing it to {}, which recognises a repeat by its message id",
                    self.carrier
                ),
            ),
            S::Sending => (
                S::MaybeSent,
                EventKind::MessageMaybeSent,
                format!(
                    "verifyd stopped while handing it to {}; not sent again: the carrier may have it",
                    self.carrier
                ),
            ),
            _ => return None,
        };
        if status == S::Queued {
            self.due_at_ms = now_ms;
        }
        Some(self.change(status, kind, detail, subject, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 5_000;

    /// The attempt of the dispatcher that holds the test messages.
    fn ours() -> Attempt {
        Attempt {
            worker: "worker-1".into(),
            number: 0,
        }
    }
    const PENDING: SubjectState = SubjectState::Verification(VerificationStatus::Pending);

    fn queued(fallbacks: &[&str]) -> OutboxMessage {
        let spec = MessageSpec {
            id: "msg_1".into(),
            service_id: crate::domain::DEFAULT_SERVICE.into(),
            subject: Subject::Verification("vf_1".into()),
            channel: Channel::Sms,
            carrier: "smsc".into(),
            fallback_carriers: fallbacks.iter().map(|s| s.to_string()).collect(),
            step: 0,
            trace_parent: None,
        };
        let (message, event) = OutboxMessage::queue(spec, "route smsc", PENDING, NOW);
        assert_eq!(event.kind, EventKind::MessageQueued);
        assert_eq!(
            event.message.as_ref().unwrap().status,
            DeliveryStatus::Queued
        );
        message
    }

    fn sending(fallbacks: &[&str]) -> OutboxMessage {
        let mut message = queued(fallbacks);
        message.status = DeliveryStatus::Sending;
        message.claimed_by = Some("worker-1".into());
        message
    }

    #[test]
    fn accepted_records_the_carrier_id() {
        let mut m = sending(&[]);
        let event = m
            .settle(
                SendOutcome::Accepted {
                    carrier_message_id: "abc".into(),
                },
                &ours(),
                PENDING,
                NOW + 1,
            )
            .unwrap();
        assert_eq!(event.kind, EventKind::MessageSubmitted);
        assert_eq!(event.detail, "accepted by the carrier as abc");
        assert_eq!(m.status, DeliveryStatus::Submitted);
        assert_eq!(m.carrier_message_id.as_deref(), Some("abc"));
        assert_eq!(m.claimed_by, None);
        // A second answer (another process) changes nothing.
        assert!(
            m.settle(
                SendOutcome::Accepted {
                    carrier_message_id: "other".into()
                },
                &ours(),
                PENDING,
                NOW + 2
            )
            .is_none()
        );
    }

    #[test]
    fn a_temporary_refusal_moves_to_the_next_carrier_and_fails_with_none_left() {
        let mut m = sending(&["backup", "last"]);
        let refused = |m: &mut OutboxMessage| {
            m.settle(
                SendOutcome::Refused {
                    reason: "smsc: throttled".into(),
                    temporary: true,
                },
                &ours(),
                PENDING,
                NOW + 1,
            )
            .unwrap()
        };
        let event = refused(&mut m);
        assert_eq!(event.kind, EventKind::MessageRerouted);
        assert_eq!(event.detail, "smsc: throttled; trying backup");
        assert_eq!(m.status, DeliveryStatus::Queued);
        assert_eq!(m.carrier, "backup");
        assert_eq!(m.fallback_carriers, vec!["last".to_string()]);
        assert_eq!(m.claimed_by, None, "back in the queue, held by nobody");
        let hand_over_again = |m: &mut OutboxMessage| {
            m.status = DeliveryStatus::Sending;
            m.claimed_by = Some("worker-1".into());
        };
        hand_over_again(&mut m);
        refused(&mut m);
        hand_over_again(&mut m);
        let failed = refused(&mut m);
        assert_eq!(failed.kind, EventKind::MessageFailed);
        assert_eq!(failed.detail, "smsc: throttled; no other route left");
        assert_eq!(m.status, DeliveryStatus::Failed);
    }

    #[test]
    fn a_permanent_refusal_fails_even_with_routes_left() {
        let mut m = sending(&["backup"]);
        let event = m
            .settle(
                SendOutcome::Refused {
                    reason: "smsc: unknown subscriber".into(),
                    temporary: false,
                },
                &ours(),
                PENDING,
                NOW,
            )
            .unwrap();
        assert_eq!(event.kind, EventKind::MessageFailed);
        assert_eq!(m.carrier, "smsc");
    }

    #[test]
    fn maybe_sent_is_never_failed_over_and_a_late_receipt_settles_it() {
        let mut m = sending(&["backup"]);
        let event = m
            .settle(
                SendOutcome::MaybeSent {
                    reason: "smsc: no submit_sm_resp within 5000 ms".into(),
                },
                &ours(),
                PENDING,
                NOW,
            )
            .unwrap();
        assert_eq!(event.kind, EventKind::MessageMaybeSent);
        assert_eq!(m.status, DeliveryStatus::MaybeSent);
        assert_eq!(m.carrier, "smsc");
        assert!(
            event
                .detail
                .ends_with("not sent again: the carrier may have it")
        );
        let effect = m.receipt(ReceiptStatus::Delivered, "stat:DELIVRD", PENDING, NOW + 9);
        assert!(
            matches!(effect, ReceiptEffect::Applied(ref e) if e.kind == EventKind::MessageDelivered)
        );
        assert_eq!(m.status, DeliveryStatus::Delivered);
        assert_eq!(
            m.receipt(ReceiptStatus::Failed, "late", PENDING, NOW + 10),
            ReceiptEffect::Duplicate
        );
    }

    #[test]
    fn receipts_before_the_submission_is_recorded_are_kept() {
        let mut m = sending(&[]);
        assert_eq!(
            m.receipt(ReceiptStatus::Delivered, "ok", PENDING, NOW),
            ReceiptEffect::Early
        );
        assert_eq!(m.status, DeliveryStatus::Sending);
    }

    #[test]
    fn only_unsent_messages_are_dropped_when_the_subject_ends() {
        let mut m = queued(&[]);
        let event = m
            .drop_unsent(
                "not sent: verification approved",
                SubjectState::Verification(VerificationStatus::Approved),
                NOW,
            )
            .unwrap();
        assert_eq!(event.kind, EventKind::MessageCanceled);
        assert_eq!(m.status, DeliveryStatus::Canceled);
        let mut handing = sending(&[]);
        assert!(handing.drop_unsent("x", PENDING, NOW).is_none());
    }

    #[test]
    fn a_dead_dispatchers_messages_are_requeued_unless_they_may_have_gone_out() {
        let mut claimed = queued(&[]);
        claimed.status = DeliveryStatus::Claimed;
        claimed.claimed_by = Some("dead".into());
        let event = claimed.abandoned(false, PENDING, NOW).unwrap();
        assert_eq!(event.kind, EventKind::MessageRequeued);
        assert_eq!(claimed.status, DeliveryStatus::Queued);
        assert_eq!(claimed.claimed_by, None);

        let mut handing = sending(&[]);
        let event = handing.abandoned(false, PENDING, NOW).unwrap();
        assert_eq!(event.kind, EventKind::MessageMaybeSent);
        assert_eq!(handing.status, DeliveryStatus::MaybeSent);

        let mut to_dedup = sending(&[]);
        let event = to_dedup.abandoned(true, PENDING, NOW).unwrap();
        assert_eq!(event.kind, EventKind::MessageRequeued);
        assert_eq!(to_dedup.status, DeliveryStatus::Queued);

        let mut done = sending(&[]);
        done.status = DeliveryStatus::Submitted;
        assert!(done.abandoned(false, PENDING, NOW).is_none());
    }

    #[test]
    fn an_outcome_settles_only_its_own_attempt() {
        let mut m = sending(&["backup"]);
        m.attempt = 2;
        let stale = Attempt {
            worker: "worker-1".into(),
            number: 1,
        };
        let refused = SendOutcome::Refused {
            reason: "smsc: throttled".into(),
            temporary: true,
        };
        assert!(m.settle(refused.clone(), &stale, PENDING, NOW).is_none());
        let other = Attempt {
            worker: "worker-2".into(),
            number: 2,
        };
        assert!(m.settle(refused.clone(), &other, PENDING, NOW).is_none());
        assert_eq!(
            (m.status, m.carrier.as_str()),
            (DeliveryStatus::Sending, "smsc")
        );
        // A refusal of an attempt that may have gone out elsewhere never fails it over.
        m.status = DeliveryStatus::MaybeSent;
        let current = Attempt {
            worker: "worker-1".into(),
            number: 2,
        };
        assert!(m.settle(refused, &current, PENDING, NOW).is_none());
    }

    #[test]
    fn an_answer_after_the_sweep_took_it_for_maybe_sent_still_counts() {
        let mut m = sending(&[]);
        m.abandoned(false, PENDING, NOW).unwrap();
        let event = m
            .settle(
                SendOutcome::Accepted {
                    carrier_message_id: "late".into(),
                },
                &ours(),
                PENDING,
                NOW + 1,
            )
            .unwrap();
        assert_eq!(event.kind, EventKind::MessageSubmitted);
    }

    #[test]
    fn rules_at_send_time_hold_or_refuse_a_claimed_message() {
        let mut m = queued(&[]);
        m.status = DeliveryStatus::Claimed;
        m.claimed_by = Some("worker-1".into());
        let event = m
            .settle(
                SendOutcome::Deferred {
                    until_ms: NOW + 60_000,
                    reason: "IN.trai.marketing_hours".into(),
                },
                &ours(),
                SubjectState::Notification,
                NOW,
            )
            .unwrap();
        assert_eq!(event.kind, EventKind::NotificationScheduled);
        assert_eq!(
            event.subject_status,
            SubjectStatus::Notification(NotificationStatus::Scheduled)
        );
        assert_eq!(m.due_at_ms, NOW + 60_000);
        assert_eq!(m.status, DeliveryStatus::Scheduled);
        // Not claimed any more: a refusal by rule no longer applies.
        assert!(
            m.settle(
                SendOutcome::Rejected { reason: "x".into() },
                &ours(),
                SubjectState::Notification,
                NOW
            )
            .is_none()
        );
    }

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        use DeliveryStatus as S;
        for status in [
            S::Scheduled,
            S::Queued,
            S::Claimed,
            S::Sending,
            S::Submitted,
            S::MaybeSent,
            S::Delivered,
            S::Failed,
            S::Canceled,
        ] {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
        assert_eq!(S::parse("lost"), None);
    }
}
