//! A verification: a one-time code sent to a number, checked a limited number of times before it
//! expires, and the state of its fallback workflow. Every rule of its life is here: how a check
//! ends, when a resend is allowed, when it expires or is canceled, and when its workflow moves on.

use verify_carrier::Channel;

use super::{Event, EventKind, Subject, SubjectStatus, text_enum};

/// State of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationStatus {
    /// Code issued, not yet approved.
    Pending,
    /// Right code checked in time.
    Approved,
    /// Canceled by the client.
    Canceled,
    /// Lifetime ran out.
    Expired,
    /// All checks used on wrong codes.
    MaxAttemptsReached,
}

text_enum!(VerificationStatus {
    Pending => "pending",
    Approved => "approved",
    Canceled => "canceled",
    Expired => "expired",
    MaxAttemptsReached => "max_attempts_reached",
});

/// What a code is stored as: never the code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    /// Random bytes the code is derived from under the server secret.
    pub nonce: Vec<u8>,
    /// A keyed hash of the code, to compare a candidate with.
    pub check: Vec<u8>,
}

/// Compares a candidate code with a stored one (the server's secret lives behind it).
pub trait CodeMatcher {
    /// Whether `candidate` is the code `stored` stands for, in constant time.
    fn matches(&self, stored: &StoredCode, candidate: &str) -> bool;
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// Right code.
    Approved,
    /// Wrong code; checks may remain.
    WrongCode,
    /// Lifetime over.
    Expired,
    /// No checks left.
    TooManyAttempts,
    /// Canceled.
    Canceled,
}

/// A check that is refused as bad input: it uses no check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckRefusal {
    /// The code has another number of digits than the verification's code.
    #[error("code: this verification's code has {expected} digits, got {got}")]
    CodeLength {
        /// Digits of the verification's code.
        expected: u32,
        /// Digits given.
        got: usize,
    },
}

/// Why a verification cannot be sent again or canceled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerificationRefusal {
    /// Every allowed send was used.
    #[error(
        "to: verification {id} has used all {max_sends} sends; check the code already sent, or wait until it expires"
    )]
    TooManySends {
        /// The verification.
        id: String,
        /// Sends allowed.
        max_sends: u32,
    },
    /// The verification already ended otherwise.
    #[error("verification_id: verification {id} is {status} and can no longer be canceled")]
    NotCancelable {
        /// The verification.
        id: String,
        /// Its status.
        status: VerificationStatus,
    },
}

/// Where a verification's fallback workflow is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowState {
    /// The strategy that chose the steps (`ordered`, `adaptive`).
    pub strategy: String,
    /// The workflow as it runs, e.g. `sms(30s) -> voice(1m)`.
    pub workflow: String,
    /// Index of the running step.
    pub step: u32,
    /// When the running step gives way to the next; `None` when no next step is due.
    pub step_deadline_ms: Option<i64>,
    /// Why the running step ended early (its message failed); empty while it runs.
    pub step_failure: String,
}

/// What to do when a workflow step is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMove {
    /// Run step `step` on `channel`; it gives way at `deadline_ms` (`None` at the last step).
    Send {
        /// Index of the new step.
        step: u32,
        /// Its channel.
        channel: Channel,
        /// When it gives way to the next.
        deadline_ms: Option<i64>,
    },
    /// Send nothing more; the code stays valid until checked or expired.
    Stop,
}

/// Everything a new verification is made of.
#[derive(Debug, Clone)]
pub struct VerificationSpec {
    /// Its id (`vf_...`).
    pub id: String,
    /// The service it belongs to.
    pub service_id: String,
    /// Number in E.164.
    pub to_e164: String,
    /// The prefix abuse defense counts the number under (the number without its last
    /// digits, as the rate limits configure it).
    pub number_prefix: String,
    /// Region of the number.
    pub region_code: Option<String>,
    /// Channel of the first message.
    pub channel: Channel,
    /// Locale of the messages.
    pub locale: String,
    /// Digits in the code.
    pub code_length: u32,
    /// The code as stored.
    pub code: StoredCode,
    /// Checks allowed.
    pub max_checks: u32,
    /// Sends allowed.
    pub max_sends: u32,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The classification, as JSON.
    pub classification_json: String,
    /// Lifetime of the code, ms.
    pub ttl_ms: i64,
    /// The workflow as it starts.
    pub workflow: WorkflowState,
    /// Why the first message goes where it goes.
    pub decision: String,
    /// The program the code is sent for; empty for none.
    pub program_id: String,
    /// Autofill: the Android SMS Retriever app hash its SMS carry; empty for none.
    pub app_hash: String,
    /// Autofill: the host of its SMS's domain-bound line; empty for none.
    pub autofill_domain: String,
}

#[cfg(test)]
impl VerificationSpec {
    /// A GB SMS verification of `number` for tests: a 6-digit code stored as its digits
    /// `123456` (see the tests' plain matcher), 5 checks, 3 sends, 10 minutes, and a
    /// `sms(30s) -> voice(1m)` workflow whose first step ends 30 s after `now_ms`.
    pub(crate) fn example(id: &str, number: &str, now_ms: i64) -> VerificationSpec {
        VerificationSpec {
            id: id.into(),
            service_id: super::DEFAULT_SERVICE.into(),
            to_e164: number.into(),
            number_prefix: number[..number.len().saturating_sub(3)].into(),
            region_code: Some("GB".into()),
            channel: Channel::Sms,
            locale: "en".into(),
            code_length: 6,
            code: StoredCode {
                nonce: vec![1; 32],
                check: b"123456".to_vec(),
            },
            max_checks: 5,
            max_sends: 3,
            idempotency_key: None,
            classification_json: "{}".into(),
            ttl_ms: 600_000,
            workflow: WorkflowState {
                strategy: "ordered".into(),
                workflow: "sms(30s) -> voice(1m)".into(),
                step: 0,
                step_deadline_ms: Some(now_ms + 30_000),
                step_failure: String::new(),
            },
            decision: "sms chosen".into(),
            program_id: String::new(),
            app_hash: String::new(),
            autofill_domain: String::new(),
        }
    }
}

/// A verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Id (`vf_...`).
    pub id: String,
    /// The service it belongs to.
    pub service_id: String,
    /// Number in E.164.
    pub to_e164: String,
    /// The prefix abuse defense counts the number under (empty for verifications stored
    /// before it was kept).
    pub number_prefix: String,
    /// Region of the number.
    pub region_code: Option<String>,
    /// State.
    pub status: VerificationStatus,
    /// Channel of the latest message.
    pub channel: Channel,
    /// Locale of the messages.
    pub locale: String,
    /// Digits in the code.
    pub code_length: u32,
    /// The code as stored.
    pub code: StoredCode,
    /// Checks done.
    pub checks_used: u32,
    /// Checks allowed.
    pub max_checks: u32,
    /// Sends done.
    pub sends_used: u32,
    /// Sends allowed.
    pub max_sends: u32,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The classification, as JSON.
    pub classification_json: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Expires, unix ms.
    pub expires_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
    /// The fallback workflow.
    pub workflow: WorkflowState,
    /// Why the first message went where it went.
    pub decision: String,
    /// The program the code is sent for; empty for none.
    pub program_id: String,
    /// Autofill: the Android SMS Retriever app hash its SMS carry; empty for none.
    pub app_hash: String,
    /// Autofill: the host of its SMS's domain-bound line; empty for none.
    pub autofill_domain: String,
}

/// What a check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The outcome for the client.
    pub result: CheckResult,
    /// Events to record; empty when nothing changed (nothing to save).
    pub events: Vec<Event>,
}

impl Verification {
    /// A new pending verification, one send used by its first message.
    pub fn start(spec: VerificationSpec, now_ms: i64) -> (Verification, Event) {
        let verification = Verification {
            id: spec.id,
            service_id: spec.service_id,
            to_e164: spec.to_e164,
            number_prefix: spec.number_prefix,
            region_code: spec.region_code,
            status: VerificationStatus::Pending,
            channel: spec.channel,
            locale: spec.locale,
            code_length: spec.code_length,
            code: spec.code,
            checks_used: 0,
            max_checks: spec.max_checks,
            sends_used: 1,
            max_sends: spec.max_sends,
            idempotency_key: spec.idempotency_key,
            classification_json: spec.classification_json,
            created_at_ms: now_ms,
            expires_at_ms: now_ms + spec.ttl_ms,
            updated_at_ms: now_ms,
            workflow: spec.workflow,
            decision: spec.decision,
            program_id: spec.program_id,
            app_hash: spec.app_hash,
            autofill_domain: spec.autofill_domain,
        };
        let created = verification.event(EventKind::VerificationCreated, "", now_ms);
        (verification, created)
    }

    /// The subject its events and messages name.
    pub fn subject(&self) -> Subject {
        Subject::Verification(self.id.clone())
    }

    /// Checks still allowed.
    pub fn checks_left(&self) -> u32 {
        self.max_checks.saturating_sub(self.checks_used)
    }

    /// Sends still allowed.
    pub fn sends_left(&self) -> u32 {
        self.max_sends.saturating_sub(self.sends_used)
    }

    /// Whether its code can still be approved: pending and not past its lifetime.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.status == VerificationStatus::Pending && self.expires_at_ms > now_ms
    }

    /// Whether it has ended (approved, canceled, expired, out of checks): its messages not yet
    /// handed to a carrier are then dropped.
    pub fn has_ended(&self) -> bool {
        self.status != VerificationStatus::Pending
    }

    /// An event about this verification in its current state.
    fn event(&self, kind: EventKind, detail: impl Into<String>, now_ms: i64) -> Event {
        Event {
            kind,
            service_id: self.service_id.clone(),
            subject: self.subject(),
            message: None,
            subject_status: SubjectStatus::Verification(self.status),
            detail: detail.into(),
            at_ms: now_ms,
        }
    }

    fn end(
        &mut self,
        status: VerificationStatus,
        kind: EventKind,
        detail: &str,
        now_ms: i64,
    ) -> Event {
        self.status = status;
        self.updated_at_ms = now_ms;
        self.event(kind, detail, now_ms)
    }

    /// Expires it if it is pending and its lifetime ran out.
    pub fn expire_if_due(&mut self, now_ms: i64) -> Option<Event> {
        (self.status == VerificationStatus::Pending && self.expires_at_ms <= now_ms).then(|| {
            self.end(
                VerificationStatus::Expired,
                EventKind::VerificationExpired,
                "code lifetime ran out",
                now_ms,
            )
        })
    }

    /// Checks `candidate`. A wrong code uses a check; the right one approves, and checking it
    /// again stays approved without using one. A code of the wrong length is refused as bad
    /// input and uses nothing.
    pub fn check(
        &mut self,
        candidate: &str,
        codes: &dyn CodeMatcher,
        now_ms: i64,
    ) -> Result<Checked, CheckRefusal> {
        let unchanged = |result| Checked {
            result,
            events: Vec::new(),
        };
        match self.status {
            VerificationStatus::Approved => {
                return Ok(unchanged(if codes.matches(&self.code, candidate) {
                    CheckResult::Approved
                } else {
                    CheckResult::WrongCode
                }));
            }
            VerificationStatus::Canceled => return Ok(unchanged(CheckResult::Canceled)),
            VerificationStatus::Expired => return Ok(unchanged(CheckResult::Expired)),
            VerificationStatus::MaxAttemptsReached => {
                return Ok(unchanged(CheckResult::TooManyAttempts));
            }
            VerificationStatus::Pending => {}
        }
        if let Some(expired) = self.expire_if_due(now_ms) {
            return Ok(Checked {
                result: CheckResult::Expired,
                events: vec![expired],
            });
        }
        if self.checks_left() == 0 {
            return Ok(unchanged(CheckResult::TooManyAttempts));
        }
        if candidate.len() != self.code_length as usize {
            return Err(CheckRefusal::CodeLength {
                expected: self.code_length,
                got: candidate.len(),
            });
        }
        self.checks_used += 1;
        self.updated_at_ms = now_ms;
        if codes.matches(&self.code, candidate) {
            let approved = self.end(
                VerificationStatus::Approved,
                EventKind::VerificationApproved,
                "right code checked",
                now_ms,
            );
            return Ok(Checked {
                result: CheckResult::Approved,
                events: vec![approved],
            });
        }
        let event = match self.checks_left() {
            0 => self.end(
                VerificationStatus::MaxAttemptsReached,
                EventKind::VerificationMaxAttemptsReached,
                "wrong code; no checks left",
                now_ms,
            ),
            left => self.event(
                EventKind::CheckFailed,
                format!("wrong code; {left} checks left"),
                now_ms,
            ),
        };
        Ok(Checked {
            result: CheckResult::WrongCode,
            events: vec![event],
        })
    }

    /// Uses one more send for another message with the same code on `channel`. The caller
    /// checks that the verification is live first.
    pub fn resend(&mut self, channel: Channel, now_ms: i64) -> Result<(), VerificationRefusal> {
        if self.sends_used >= self.max_sends {
            return Err(VerificationRefusal::TooManySends {
                id: self.id.clone(),
                max_sends: self.max_sends,
            });
        }
        self.sends_used += 1;
        self.channel = channel;
        self.updated_at_ms = now_ms;
        Ok(())
    }

    /// Cancels it: `Ok(None)` when it already was (a no-op), refused once it ended otherwise.
    pub fn cancel(&mut self, now_ms: i64) -> Result<Option<Event>, VerificationRefusal> {
        match self.status {
            VerificationStatus::Canceled => Ok(None),
            VerificationStatus::Pending => Ok(Some(self.end(
                VerificationStatus::Canceled,
                EventKind::VerificationCanceled,
                "canceled by the client",
                now_ms,
            ))),
            status => Err(VerificationRefusal::NotCancelable {
                id: self.id.clone(),
                status,
            }),
        }
    }

    /// Whether a message of this verification may be handed to a carrier now; the reason it
    /// may not otherwise.
    pub fn may_send(&self, now_ms: i64) -> Result<(), String> {
        match self.status {
            VerificationStatus::Pending if self.expires_at_ms <= now_ms => {
                Err("not sent: the code expired before it could be sent".to_string())
            }
            VerificationStatus::Pending => Ok(()),
            status => Err(format!("not sent: verification {status}")),
        }
    }

    /// The message of step `step` failed: if that step is still running and a next one may
    /// follow, the next one is due now instead of at the step's deadline.
    pub fn step_message_failed(&mut self, step: u32, reason: &str, now_ms: i64) -> bool {
        let running = self.status == VerificationStatus::Pending
            && self.workflow.step == step
            && self.workflow.step_deadline_ms.is_some();
        if running {
            self.workflow.step_deadline_ms = Some(now_ms);
            self.workflow.step_failure = reason.to_string();
        }
        running
    }

    /// Whether its running step is over (deadline passed, or its message failed).
    pub fn step_is_due(&self, now_ms: i64) -> bool {
        self.status == VerificationStatus::Pending
            && self
                .workflow
                .step_deadline_ms
                .is_some_and(|deadline| deadline <= now_ms)
    }

    /// Applies a workflow move decided for the step at `(step, deadline)` as it was read.
    /// `None` when the verification moved on meanwhile (approved, expired, out of sends, or
    /// advanced by another replica): nothing changes, so a step never runs twice.
    pub fn advance(
        &mut self,
        decided_at: (u32, i64),
        step_move: &StepMove,
        detail: &str,
        now_ms: i64,
    ) -> Option<Event> {
        let (step, deadline) = decided_at;
        let unchanged = self.workflow.step == step
            && self.workflow.step_deadline_ms == Some(deadline)
            && self.is_live(now_ms);
        if !unchanged {
            return None;
        }
        match step_move {
            StepMove::Send {
                step,
                channel,
                deadline_ms,
            } => {
                if self.sends_used >= self.max_sends {
                    return None;
                }
                self.sends_used += 1;
                self.channel = *channel;
                self.workflow.step = *step;
                self.workflow.step_deadline_ms = *deadline_ms;
            }
            StepMove::Stop => self.workflow.step_deadline_ms = None,
        }
        self.workflow.step_failure.clear();
        self.updated_at_ms = now_ms;
        Some(self.event(EventKind::FallbackStep, detail, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Matches the candidate against the check bytes as plain text (tests only).
    struct PlainCodes;

    impl CodeMatcher for PlainCodes {
        fn matches(&self, stored: &StoredCode, candidate: &str) -> bool {
            stored.check == candidate.as_bytes()
        }
    }

    const NOW: i64 = 1_000_000;

    fn pending() -> Verification {
        let spec = VerificationSpec {
            max_checks: 3,
            max_sends: 2,
            ..VerificationSpec::example("vf_1", "+447400123456", NOW)
        };
        let (verification, created) = Verification::start(spec, NOW);
        assert_eq!(created.kind, EventKind::VerificationCreated);
        assert_eq!(verification.sends_used, 1);
        assert_eq!(verification.expires_at_ms, NOW + 600_000);
        verification
    }

    #[test]
    fn the_right_code_approves_and_stays_approved_without_using_checks() {
        let mut v = pending();
        let checked = v.check("123456", &PlainCodes, NOW + 1).unwrap();
        assert_eq!(checked.result, CheckResult::Approved);
        assert_eq!(checked.events[0].kind, EventKind::VerificationApproved);
        assert_eq!(v.status, VerificationStatus::Approved);
        assert_eq!(v.checks_left(), 2);
        assert!(v.has_ended());
        let again = v.check("123456", &PlainCodes, NOW + 2).unwrap();
        assert_eq!(again.result, CheckResult::Approved);
        assert!(again.events.is_empty());
        assert_eq!(v.checks_left(), 2);
        let wrong = v.check("654321", &PlainCodes, NOW + 3).unwrap();
        assert_eq!(wrong.result, CheckResult::WrongCode);
        assert!(wrong.events.is_empty());
    }

    #[test]
    fn wrong_codes_use_checks_until_none_is_left() {
        let mut v = pending();
        let first = v.check("000000", &PlainCodes, NOW).unwrap();
        assert_eq!(first.result, CheckResult::WrongCode);
        assert_eq!(first.events[0].kind, EventKind::CheckFailed);
        assert_eq!(first.events[0].detail, "wrong code; 2 checks left");
        v.check("000000", &PlainCodes, NOW).unwrap();
        let last = v.check("000000", &PlainCodes, NOW).unwrap();
        assert_eq!(last.result, CheckResult::WrongCode);
        assert_eq!(
            last.events[0].kind,
            EventKind::VerificationMaxAttemptsReached
        );
        assert_eq!(v.status, VerificationStatus::MaxAttemptsReached);
        // Even the right code is refused now.
        let after = v.check("123456", &PlainCodes, NOW).unwrap();
        assert_eq!(after.result, CheckResult::TooManyAttempts);
        assert!(after.events.is_empty());
    }

    #[test]
    fn a_code_of_the_wrong_length_uses_no_check() {
        let mut v = pending();
        let refused = v.check("12345", &PlainCodes, NOW).unwrap_err();
        assert_eq!(
            refused,
            CheckRefusal::CodeLength {
                expected: 6,
                got: 5
            }
        );
        assert_eq!(v.checks_left(), 3);
    }

    #[test]
    fn a_check_after_the_lifetime_expires_it() {
        let mut v = pending();
        let checked = v.check("123456", &PlainCodes, v.expires_at_ms).unwrap();
        assert_eq!(checked.result, CheckResult::Expired);
        assert_eq!(checked.events[0].kind, EventKind::VerificationExpired);
        assert_eq!(v.status, VerificationStatus::Expired);
        assert_eq!(v.checks_left(), 3);
        let again = v.check("123456", &PlainCodes, v.expires_at_ms + 1).unwrap();
        assert_eq!(again.result, CheckResult::Expired);
        assert!(again.events.is_empty());
    }

    #[test]
    fn expiry_happens_once_and_only_when_due() {
        let mut v = pending();
        assert!(v.expire_if_due(v.expires_at_ms - 1).is_none());
        assert!(v.is_live(v.expires_at_ms - 1));
        let expired = v.expire_if_due(v.expires_at_ms).unwrap();
        assert_eq!(
            expired.subject_status,
            SubjectStatus::Verification(VerificationStatus::Expired)
        );
        assert!(v.expire_if_due(v.expires_at_ms + 1).is_none());
        assert!(!v.is_live(v.expires_at_ms - 1));
    }

    #[test]
    fn resends_stop_at_max_sends() {
        let mut v = pending();
        v.resend(Channel::Voice, NOW + 5).unwrap();
        assert_eq!(v.channel, Channel::Voice);
        assert_eq!(v.sends_left(), 0);
        let refused = v.resend(Channel::Sms, NOW + 6).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("to: verification vf_1 has used all 2 sends")
        );
        assert_eq!(v.channel, Channel::Voice);
    }

    /// Check answers an ended verification from a plain read, without the write lock: no
    /// check of one may change it.
    #[test]
    fn no_check_changes_a_verification_that_has_ended() {
        for status in [
            VerificationStatus::Approved,
            VerificationStatus::Canceled,
            VerificationStatus::Expired,
            VerificationStatus::MaxAttemptsReached,
        ] {
            let mut v = pending();
            v.status = status;
            assert!(v.has_ended());
            let before = v.clone();
            for (code, at) in [
                ("123456", NOW + 1),
                ("654321", NOW + 2),
                ("123456", NOW + 900_000),
            ] {
                let checked = v.check(code, &PlainCodes, at).unwrap();
                assert!(checked.events.is_empty(), "{status:?}: {checked:?}");
                assert_eq!(v, before, "{status:?}");
            }
        }
    }

    #[test]
    fn cancel_is_idempotent_and_refused_once_ended_otherwise() {
        let mut v = pending();
        let canceled = v.cancel(NOW).unwrap().unwrap();
        assert_eq!(canceled.kind, EventKind::VerificationCanceled);
        assert!(v.cancel(NOW + 1).unwrap().is_none());
        assert_eq!(
            v.check("123456", &PlainCodes, NOW + 2).unwrap().result,
            CheckResult::Canceled
        );
        let mut approved = pending();
        approved.check("123456", &PlainCodes, NOW).unwrap();
        let refused = approved.cancel(NOW).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "verification_id: verification vf_1 is approved and can no longer be canceled"
        );
    }

    #[test]
    fn messages_may_be_sent_only_while_live() {
        let mut v = pending();
        assert!(v.may_send(NOW).is_ok());
        assert_eq!(
            v.may_send(v.expires_at_ms).unwrap_err(),
            "not sent: the code expired before it could be sent"
        );
        v.cancel(NOW).unwrap();
        assert_eq!(
            v.may_send(NOW).unwrap_err(),
            "not sent: verification canceled"
        );
    }

    #[test]
    fn a_failed_message_makes_its_step_due_now() {
        let mut v = pending();
        assert!(!v.step_is_due(NOW + 1));
        // Another step's message failing changes nothing.
        assert!(!v.step_message_failed(1, "sim: UNDELIV", NOW + 1));
        assert!(v.step_message_failed(0, "sim: UNDELIV", NOW + 1));
        assert!(v.step_is_due(NOW + 1));
        assert_eq!(v.workflow.step_failure, "sim: UNDELIV");
    }

    #[test]
    fn a_step_advances_once_from_where_it_was_read() {
        let mut v = pending();
        let deadline = v.workflow.step_deadline_ms.unwrap();
        let to_voice = StepMove::Send {
            step: 1,
            channel: Channel::Voice,
            deadline_ms: None,
        };
        let event = v
            .advance((0, deadline), &to_voice, "deadline passed; voice", deadline)
            .unwrap();
        assert_eq!(event.kind, EventKind::FallbackStep);
        assert_eq!(v.workflow.step, 1);
        assert_eq!(v.workflow.step_deadline_ms, None);
        assert_eq!(v.channel, Channel::Voice);
        assert_eq!(v.sends_used, 2);
        // A second replica that read the same step changes nothing.
        assert!(
            v.advance((0, deadline), &to_voice, "again", deadline)
                .is_none()
        );
        assert_eq!(v.sends_used, 2);
    }

    #[test]
    fn a_step_needs_a_send_left_and_a_live_code() {
        let mut v = pending();
        let deadline = v.workflow.step_deadline_ms.unwrap();
        v.resend(Channel::Sms, NOW).unwrap();
        let to_voice = StepMove::Send {
            step: 1,
            channel: Channel::Voice,
            deadline_ms: None,
        };
        assert!(v.advance((0, deadline), &to_voice, "x", deadline).is_none());
        let stop = v.advance((0, deadline), &StepMove::Stop, "stopped", deadline);
        assert!(stop.is_some());
        assert_eq!(v.workflow.step_deadline_ms, None);
        let mut expired = pending();
        let at = expired.expires_at_ms;
        assert!(
            expired
                .advance((0, deadline), &StepMove::Stop, "x", at)
                .is_none()
        );
    }
}
