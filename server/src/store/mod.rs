//! Durable state: verifications, their messages (the outbox the dispatcher drains) and the event
//! log clients watch. One [`Store`] trait; SQLite and PostgreSQL behind it.

mod conversion;
mod sql;

use async_trait::async_trait;
use verify_carrier::{Channel, ReceiptStatus};

pub use conversion::ConversionCount;
pub use sql::SqlStore;

use crate::codes::{CodeBook, StoredCode};

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

/// State of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for the dispatcher.
    Queued,
    /// Claimed by a dispatcher and being handed to the carrier.
    Sending,
    /// Accepted by the carrier.
    Submitted,
    /// Delivered to the handset.
    Delivered,
    /// Refused or undelivered.
    Failed,
    /// Dropped because the verification ended first.
    Canceled,
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A verification was created.
    VerificationCreated,
    /// A message was queued.
    MessageQueued,
    /// A carrier accepted a message.
    MessageSubmitted,
    /// A message was delivered.
    MessageDelivered,
    /// A message failed.
    MessageFailed,
    /// A wrong code was checked.
    CheckFailed,
    /// The verification was approved.
    VerificationApproved,
    /// The verification expired.
    VerificationExpired,
    /// The verification was canceled.
    VerificationCanceled,
    /// The last allowed check failed.
    VerificationMaxAttemptsReached,
    /// A queued message was dropped.
    MessageCanceled,
    /// A message moved to the next carrier of its route.
    MessageRerouted,
    /// The verification's workflow moved to its next step (or stopped), with the reason.
    FallbackStep,
    /// A notification was deferred by a country rule until its send time.
    NotificationScheduled,
}

macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

text_enum!(VerificationStatus {
    Pending => "pending",
    Approved => "approved",
    Canceled => "canceled",
    Expired => "expired",
    MaxAttemptsReached => "max_attempts_reached",
});

text_enum!(DeliveryStatus {
    Queued => "queued",
    Sending => "sending",
    Submitted => "submitted",
    Delivered => "delivered",
    Failed => "failed",
    Canceled => "canceled",
});

text_enum!(EventType {
    VerificationCreated => "verification_created",
    MessageQueued => "message_queued",
    MessageSubmitted => "message_submitted",
    MessageDelivered => "message_delivered",
    MessageFailed => "message_failed",
    CheckFailed => "check_failed",
    VerificationApproved => "verification_approved",
    VerificationExpired => "verification_expired",
    VerificationCanceled => "verification_canceled",
    VerificationMaxAttemptsReached => "verification_max_attempts_reached",
    MessageCanceled => "message_canceled",
    MessageRerouted => "message_rerouted",
    FallbackStep => "fallback_step",
    NotificationScheduled => "notification_scheduled",
});

/// Where a notification's message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Held until its send time by a country rule.
    Scheduled,
    /// Due; waiting for a dispatcher.
    Queued,
    /// Claimed by a dispatcher and being handed to the carrier.
    Sending,
    /// Accepted by the carrier.
    Submitted,
    /// Delivered to the handset.
    Delivered,
    /// Refused, undelivered, or refused by a rule at send time.
    Failed,
}

text_enum!(NotificationStatus {
    Scheduled => "scheduled",
    Queued => "queued",
    Sending => "sending",
    Submitted => "submitted",
    Delivered => "delivered",
    Failed => "failed",
});

/// Prefix of notification ids; events whose subject starts with it are a notification's.
pub const NOTIFICATION_ID_PREFIX: &str = "nt_";

/// A stored notification: a message that is not a code, and its own outbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// Id (`nt_...`).
    pub id: String,
    /// Recipient in E.164.
    pub to_e164: String,
    /// Recipient's region.
    pub region_code: String,
    /// Recipient's time zones (for the rules' local time).
    pub time_zones: Vec<String>,
    /// Category (`OTP`, `TRANSACTIONAL`, `ALERT`, `MARKETING`).
    pub category: String,
    /// Sending program; empty for none.
    pub program_id: String,
    /// Registered template name; empty for none.
    pub template: String,
    /// The text.
    pub body: String,
    /// Sender to show; empty for the carrier's own.
    pub sender: String,
    /// Channel.
    pub channel: Channel,
    /// Carrier name.
    pub carrier: String,
    /// Carriers to fail over to, in order.
    pub fallback_carriers: Vec<String>,
    /// State.
    pub status: NotificationStatus,
    /// When it is due, unix ms.
    pub due_at_ms: i64,
    /// Carrier's id once submitted.
    pub carrier_message_id: Option<String>,
    /// Last detail.
    pub detail: String,
    /// The decision at Notify.
    pub decision: String,
    /// Client's idempotency key.
    pub idempotency_key: Option<String>,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
}

/// How a dispatcher's attempt at a notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// The carrier took it.
    Submitted {
        /// The carrier's id.
        carrier_message_id: String,
    },
    /// Refused for good, by the carrier or by a rule at send time.
    Failed {
        /// Why.
        detail: String,
    },
    /// Refused for now; the next carrier gets it.
    Rerouted {
        /// The next carrier.
        carrier: String,
        /// The carriers after it.
        rest: Vec<String>,
        /// Why.
        detail: String,
    },
    /// A rule holds it again until `until_ms`.
    Deferred {
        /// New send time, unix ms.
        until_ms: i64,
        /// Why.
        detail: String,
    },
}

/// A stored verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    /// Id (`vf_...`).
    pub id: String,
    /// Number in E.164.
    pub to_e164: String,
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
    /// Nonce the code is derived from.
    pub code_nonce: Vec<u8>,
    /// HMAC of the code.
    pub code_check: Vec<u8>,
    /// Checks done.
    pub checks_used: u32,
    /// Checks allowed.
    pub max_checks: u32,
    /// Sends done.
    pub sends_used: u32,
    /// Sends allowed.
    pub max_sends: u32,
    /// Client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The classification, as JSON.
    pub classification_json: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Expires, unix ms.
    pub expires_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
    /// The fallback strategy that chose the steps (`ordered`, `adaptive`).
    pub strategy: String,
    /// The workflow as it runs, e.g. `sms(30s) -> voice(1m)`.
    pub workflow: String,
    /// Index of the running step in `workflow`.
    pub step: u32,
    /// When the running step gives way to the next; `None` when no next step is due.
    pub step_deadline_ms: Option<i64>,
    /// Why the running step ended early (its message failed); empty while it runs.
    pub step_failure: String,
    /// Why the first message went where it went: the decision Verify answered with.
    pub decision: String,
    /// The program the code is sent for; empty for none.
    pub program_id: String,
}

impl VerificationRecord {
    /// Checks still allowed.
    pub fn checks_left(&self) -> u32 {
        self.max_checks.saturating_sub(self.checks_used)
    }

    /// Sends still allowed.
    pub fn sends_left(&self) -> u32 {
        self.max_sends.saturating_sub(self.sends_used)
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Id (`msg_...`).
    pub id: String,
    /// Its verification.
    pub verification_id: String,
    /// Channel.
    pub channel: Channel,
    /// Carrier name.
    pub carrier: String,
    /// State.
    pub status: DeliveryStatus,
    /// Carriers still to try, in order, if this one refuses the message for now.
    pub fallback_carriers: Vec<String>,
    /// The workflow step the message belongs to.
    pub step: u32,
    /// Carrier's id once submitted.
    pub carrier_message_id: Option<String>,
    /// Last detail (carrier reason).
    pub detail: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Position in the log.
    pub cursor: i64,
    /// What happened.
    pub event_type: EventType,
    /// Verification concerned.
    pub verification_id: String,
    /// Message concerned.
    pub message_id: Option<String>,
    /// Message channel.
    pub channel: Option<Channel>,
    /// Carrier name.
    pub carrier: Option<String>,
    /// Message state after the event.
    pub delivery_status: Option<DeliveryStatus>,
    /// Verification state after the event.
    pub verification_status: VerificationStatus,
    /// Words for people.
    pub detail: String,
    /// Recorded, unix ms.
    pub created_at_ms: i64,
}

/// Everything needed to start (or resend) a verification.
#[derive(Debug, Clone)]
pub struct NewVerification {
    /// Id for a new verification.
    pub id: String,
    /// Id for its message.
    pub message_id: String,
    /// Number in E.164.
    pub to_e164: String,
    /// Region.
    pub region_code: Option<String>,
    /// Channel of the message.
    pub channel: Channel,
    /// Carrier for the message.
    pub carrier: String,
    /// Carriers to fail over to, in order.
    pub fallback_carriers: Vec<String>,
    /// Locale.
    pub locale: String,
    /// Code digits.
    pub code_length: u32,
    /// The code as stored.
    pub code: StoredCode,
    /// Checks allowed.
    pub max_checks: u32,
    /// Sends allowed.
    pub max_sends: u32,
    /// Client's idempotency key.
    pub idempotency_key: Option<String>,
    /// Classification as JSON.
    pub classification_json: String,
    /// Why this channel and carrier, for the queued event.
    pub decision: String,
    /// The fallback strategy that chose the first step.
    pub strategy: String,
    /// The workflow as it will run.
    pub workflow: String,
    /// Index of the first step in `workflow` (0 unless steps were skipped).
    pub step: u32,
    /// When the first step gives way to the next; `None` for a one-step workflow.
    pub step_deadline_ms: Option<i64>,
    /// The program the code is sent for; empty for none.
    pub program_id: String,
    /// Now, unix ms.
    pub now_ms: i64,
    /// Lifetime of the code, ms.
    pub ttl_ms: i64,
}

/// A pending verification whose running step is over (its deadline passed, or its message
/// failed), with its messages, for the dispatcher to ask the fallback strategy what is next.
#[derive(Debug, Clone)]
pub struct DueStep {
    /// The verification.
    pub verification: VerificationRecord,
    /// Its messages, oldest first.
    pub messages: Vec<MessageRecord>,
}

/// What the dispatcher decided for a [`DueStep`].
#[derive(Debug, Clone)]
pub enum StepAction {
    /// Queue the next step's message (the same code) and run that step.
    Send {
        /// Id of the new message.
        message_id: String,
        /// Index of the new step.
        step: u32,
        /// Its channel.
        channel: Channel,
        /// Its carrier.
        carrier: String,
        /// Its failover carriers.
        fallback_carriers: Vec<String>,
        /// When it gives way to the next; `None` at the last step.
        deadline_ms: Option<i64>,
    },
    /// Send nothing more; the code stays valid until it is checked or expires.
    Stop,
}

/// One move of a verification's workflow, applied only if the verification is still where
/// the decision saw it (another replica may have moved it first).
#[derive(Debug, Clone)]
pub struct StepAdvance {
    /// The verification.
    pub verification_id: String,
    /// The step the decision was made at.
    pub expected_step: u32,
    /// That step's deadline as read.
    pub expected_deadline_ms: i64,
    /// What to do.
    pub action: StepAction,
    /// The reason, for the `fallback_step` event.
    pub detail: String,
    /// Now, unix ms.
    pub now_ms: i64,
}

/// What `start_verification` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// A new verification was stored with its first message.
    Created(VerificationRecord),
    /// The pending verification for the number got another message with the same code.
    Resent(VerificationRecord),
    /// The idempotency key matched an earlier verification; nothing was queued.
    Replayed(VerificationRecord),
}

/// Which verification a check is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// By id.
    Id(String),
    /// The most recent verification of a number (E.164).
    Number(String),
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

/// What a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The message's state changed.
    Applied,
    /// The message is known but its submission is not recorded yet; try again shortly.
    NotYetSubmitted,
    /// The message already has a final state; nothing changed.
    Duplicate,
    /// No such message.
    Unknown,
}

/// A message claimed by a dispatcher, with its verification.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// The message.
    pub message: MessageRecord,
    /// Its verification.
    pub verification: VerificationRecord,
}

/// Storage failures, mapped to gRPC statuses in one place (`crate::errors`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such verification.
    #[error("{field}: no verification {value}")]
    NotFound {
        /// The request field that named it.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// The pending verification has used all its sends.
    #[error(
        "to: verification {id} has used all {max_sends} sends; check the code already sent, or wait until it expires"
    )]
    TooManySends {
        /// The verification.
        id: String,
        /// Sends allowed.
        max_sends: u32,
    },
    /// The checked code has another number of digits than the verification's code.
    #[error("code: this verification's code has {expected} digits, got {got}")]
    CodeLength {
        /// Digits of the verification's code.
        expected: u32,
        /// Digits given.
        got: usize,
    },
    /// The operation does not fit the verification's state.
    #[error("{0}")]
    Conflict(String),
    /// Stored data could not be read back.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Durable state of verifyd.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a verification with its first message and events in one transaction, or resends
    /// the pending one for the same number, or replays an idempotent retry.
    async fn start_verification(&self, new: NewVerification) -> Result<VerifyOutcome, StoreError>;

    /// A verification by id.
    async fn verification(&self, id: &str) -> Result<Option<VerificationRecord>, StoreError>;

    /// The messages of a verification, oldest first.
    async fn messages(&self, verification_id: &str) -> Result<Vec<MessageRecord>, StoreError>;

    /// Checks `code` against the target verification and records the outcome.
    async fn check(
        &self,
        target: CheckTarget,
        code: &str,
        codes: &CodeBook,
        now_ms: i64,
    ) -> Result<(CheckResult, VerificationRecord), StoreError>;

    /// Cancels a pending verification and drops its queued messages.
    async fn cancel(&self, id: &str, now_ms: i64) -> Result<VerificationRecord, StoreError>;

    /// Claims up to `limit` due messages for `claim_token`; no other claimer gets them.
    async fn claim_due_messages(
        &self,
        claim_token: &str,
        now_ms: i64,
        claim_expires_at_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;

    /// Records the carrier's acceptance of a claimed message.
    async fn record_submitted(
        &self,
        message_id: &str,
        carrier_message_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Records that a claimed message failed (refused by the carrier, or abandoned).
    async fn record_failed(
        &self,
        message_id: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Moves a claimed message to `next_carrier` (queued again at once), keeping `remaining` as
    /// its fallbacks, after its carrier refused it for now.
    async fn record_rerouted(
        &self,
        message_id: &str,
        next_carrier: &str,
        remaining: &[String],
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Records that a claimed message was dropped because its verification ended.
    async fn record_canceled(
        &self,
        message_id: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Applies a delivery receipt.
    async fn record_receipt(
        &self,
        carrier: &str,
        carrier_message_id: &str,
        message_id: Option<&str>,
        status: ReceiptStatus,
        detail: &str,
        now_ms: i64,
    ) -> Result<ReceiptOutcome, StoreError>;

    /// Marks pending verifications past their lifetime expired; returns how many.
    async fn expire_due(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Pending verifications whose running step is over by `now_ms`, at most `limit`.
    async fn due_steps(&self, now_ms: i64, limit: u32) -> Result<Vec<DueStep>, StoreError>;

    /// Applies a workflow move; `false` when the verification moved on meanwhile (approved,
    /// expired, out of sends, or advanced by another replica) and nothing changed.
    async fn advance_step(&self, advance: StepAdvance) -> Result<bool, StoreError>;

    /// Stores a notification with its queued or scheduled event, or, when its idempotency key
    /// was used before, returns the earlier one and `true`.
    async fn create_notification(
        &self,
        notification: NotificationRecord,
    ) -> Result<(NotificationRecord, bool), StoreError>;

    /// A notification by id.
    async fn notification(&self, id: &str) -> Result<Option<NotificationRecord>, StoreError>;

    /// Claims due notifications (queued, or scheduled whose time came), at most `limit`.
    async fn claim_due_notifications(
        &self,
        claim_token: &str,
        now_ms: i64,
        claim_expires_at_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError>;

    /// Records how a claimed notification's attempt ended, with its event.
    async fn settle_notification(
        &self,
        id: &str,
        outcome: NotificationOutcome,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Fails messages whose claim ran out (their dispatcher died mid-submission). They are not
    /// resent: the carrier may have them, and sending twice is worse than a resend request.
    async fn fail_abandoned_claims(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Events after `cursor`, optionally of one verification, oldest first.
    async fn events_after(
        &self,
        cursor: i64,
        verification_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Records the code secret's fingerprint on first use and refuses a different one later, so
    /// replicas with different secrets cannot share a database.
    async fn ensure_secret_fingerprint(&self, fingerprint: &str) -> Result<(), StoreError>;

    /// Conversion counts per region, channel and carrier over the messages queued from
    /// `since_ms` on, for the `adaptive` fallback strategy (see [`ConversionCount`]).
    async fn conversion_counts(&self, since_ms: i64) -> Result<Vec<ConversionCount>, StoreError>;

    /// A signal that changes whenever this process records events, so watchers wake at once
    /// (they also poll, for events recorded by other processes).
    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Closes connections.
    async fn close(&self);
}
