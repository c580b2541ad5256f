//! The domain core: verifications, notifications and the messages that carry them, as plain
//! types with every rule and transition and no I/O. Each transition returns the events to
//! record; use cases load the types from the store, call a transition and save the result.

pub mod campaign;
pub mod conversion;
pub mod message;
pub mod notification;
pub mod service;
pub mod verification;
pub mod webhook;

use std::fmt;

use verify_carrier::Channel;

pub use campaign::{Campaign, CampaignStatus};
pub use message::{
    Attempt, DeliveryStatus, MessageSpec, OutboxMessage, ReceiptEffect, SendOutcome, SubjectState,
};
pub use notification::{Notification, NotificationStatus};
pub use service::{
    DEFAULT_SERVICE, MessageTemplate, Service, ServiceDefaults, ServiceError, ServiceSettings,
};
pub use verification::{
    CheckRefusal, CheckResult, Checked, CodeMatcher, StepMove, StoredCode, Verification,
    VerificationRefusal, VerificationSpec, VerificationStatus, WorkflowState,
};

/// Defines `as_str`/`parse` for an enum stored as text.
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
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

/// What a message, an event or a watch is about: a verification or a notification.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A verification (`vf_...`).
    Verification(String),
    /// A notification sent with Notify (`nt_...`).
    Notification(String),
    /// A block abuse defense started (`blk_...`): its events say it started or was lifted.
    Block(String),
    /// A campaign (`cmp_...`): its own events, and those of its recipients' messages.
    Campaign(String),
}

/// The kind of a [`Subject`], as stored beside its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// A verification.
    Verification,
    /// A notification.
    Notification,
    /// A block.
    Block,
    /// A campaign.
    Campaign,
}

text_enum!(SubjectKind {
    Verification => "verification",
    Notification => "notification",
    Block => "block",
    Campaign => "campaign",
});

impl Subject {
    /// A subject from its stored kind and id.
    pub fn new(kind: SubjectKind, id: impl Into<String>) -> Subject {
        match kind {
            SubjectKind::Verification => Subject::Verification(id.into()),
            SubjectKind::Notification => Subject::Notification(id.into()),
            SubjectKind::Block => Subject::Block(id.into()),
            SubjectKind::Campaign => Subject::Campaign(id.into()),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> SubjectKind {
        match self {
            Subject::Verification(_) => SubjectKind::Verification,
            Subject::Notification(_) => SubjectKind::Notification,
            Subject::Block(_) => SubjectKind::Block,
            Subject::Campaign(_) => SubjectKind::Campaign,
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        match self {
            Subject::Verification(id)
            | Subject::Notification(id)
            | Subject::Block(id)
            | Subject::Campaign(id) => id,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

/// The state of an event's subject after the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectStatus {
    /// A verification's status.
    Verification(VerificationStatus),
    /// A notification's status.
    Notification(NotificationStatus),
    /// A block's state.
    Block(BlockState),
    /// A campaign's status after one of its own events; `None` for the events of its
    /// recipients' messages (their delivery status tells where the recipient is).
    Campaign(Option<CampaignStatus>),
}

/// The state of a block after one of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// In force: requests to its target are refused.
    Active,
    /// Recorded by a pumping guard that only monitors: nothing is refused.
    Monitored,
    /// Lifted by an operator.
    Lifted,
}

text_enum!(BlockState {
    Active => "active",
    Monitored => "monitored",
    Lifted => "lifted",
});

/// The event of a block that started (`DestinationBlocked`) or was lifted (`BlockLifted`),
/// its detail the block's explanation.
pub fn block_event(block: &verify_policy::abuse::Block, kind: EventKind, now_ms: i64) -> Event {
    let state = if block.lifted_ms.is_some() {
        BlockState::Lifted
    } else if block.enforced {
        BlockState::Active
    } else {
        BlockState::Monitored
    };
    let detail = match kind {
        EventKind::BlockLifted => format!(
            "{} lifted by {}: {}",
            block.id,
            block.lifted_by.as_deref().unwrap_or("an operator"),
            block.explain(now_ms)
        ),
        _ => block.explain(now_ms),
    };
    Event {
        kind,
        service_id: String::new(),
        subject: Subject::Block(block.id.clone()),
        message: None,
        subject_status: SubjectStatus::Block(state),
        detail,
        at_ms: now_ms,
    }
}

impl SubjectStatus {
    /// The name stored in the database (the kind is stored with the subject).
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectStatus::Verification(status) => status.as_str(),
            SubjectStatus::Notification(status) => status.as_str(),
            SubjectStatus::Block(state) => state.as_str(),
            SubjectStatus::Campaign(status) => status.map_or("", CampaignStatus::as_str),
        }
    }

    /// Parses a stored name for a subject of `kind`.
    pub fn parse(kind: SubjectKind, text: &str) -> Option<SubjectStatus> {
        match kind {
            SubjectKind::Verification => {
                VerificationStatus::parse(text).map(SubjectStatus::Verification)
            }
            SubjectKind::Notification => {
                NotificationStatus::parse(text).map(SubjectStatus::Notification)
            }
            SubjectKind::Block => BlockState::parse(text).map(SubjectStatus::Block),
            SubjectKind::Campaign if text.is_empty() => Some(SubjectStatus::Campaign(None)),
            SubjectKind::Campaign => {
                CampaignStatus::parse(text).map(|status| SubjectStatus::Campaign(Some(status)))
            }
        }
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
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
    /// A message went out and no answer came: it may have been sent, and is not sent again.
    MessageMaybeSent,
    /// A message whose dispatcher stopped before handing it to a carrier is queued again.
    MessageRequeued,
    /// Abuse defense blocked a number, a number prefix or a country (or, monitoring, would
    /// have).
    DestinationBlocked,
    /// An operator lifted a block.
    BlockLifted,
    /// A campaign's recipients are stored; it runs or waits for its start.
    CampaignStarted,
    /// A campaign was paused.
    CampaignPaused,
    /// A campaign was resumed (or its start time came).
    CampaignResumed,
    /// A campaign was canceled.
    CampaignCanceled,
    /// A campaign ended: completed or expired.
    CampaignFinished,
}

text_enum!(EventKind {
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
    MessageMaybeSent => "message_maybe_sent",
    MessageRequeued => "message_requeued",
    DestinationBlocked => "destination_blocked",
    BlockLifted => "block_lifted",
    CampaignStarted => "campaign_started",
    CampaignPaused => "campaign_paused",
    CampaignResumed => "campaign_resumed",
    CampaignCanceled => "campaign_canceled",
    CampaignFinished => "campaign_finished",
});

/// The message an event is about, as it is after the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    /// Message id.
    pub id: String,
    /// Its channel.
    pub channel: Channel,
    /// Its carrier, by configured name.
    pub carrier: String,
    /// Its status after the event.
    pub status: DeliveryStatus,
    /// Its status before the event; `None` for the event that created it, and for events
    /// recorded before the log kept it. Conversion statistics read it to count a message
    /// handed to a carrier once, however many events it then has.
    pub previous_status: Option<DeliveryStatus>,
}

/// One change to record in the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The service of the verification or notification; empty for a block's event (blocks
    /// are the whole server's).
    pub service_id: String,
    /// Whom it happened to.
    pub subject: Subject,
    /// The message concerned, for message events.
    pub message: Option<MessageFacts>,
    /// The subject's state after the event.
    pub subject_status: SubjectStatus,
    /// Words for people.
    pub detail: String,
    /// When, unix ms.
    pub at_ms: i64,
}

/// An event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Position in the log; later events have larger cursors.
    pub cursor: i64,
    /// The event.
    pub event: Event,
}
