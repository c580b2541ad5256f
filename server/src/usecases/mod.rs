//! Use cases: one function per thing a client (or the dispatcher) asks of verifyd. Transports
//! (the gRPC service today, an HTTP gateway tomorrow) parse and authenticate, then call these;
//! these validate the input, load domain types from the store, apply their transitions, save,
//! and answer. No rule lives here: it is in `crate::domain` or in `verify-policy`.

mod abuse;
mod caller;
pub mod campaign;
mod check;
pub mod delivery;
mod ended;
mod input;
mod listing;
mod notify;
mod pending_counts;
mod service_admin;
mod stats;
mod verify;
mod watch;
pub mod workflow;

use std::sync::Arc;

use tokio::sync::watch as signal;

pub use caller::{Caller, Scope};
pub use check::CheckTarget;
pub use listing::{ListInput, Page};
pub use notify::{NotifyInput, NotifyOutcome};
pub use service_admin::{UPDATABLE_FIELDS, WebhookState};
pub use stats::{StatsAnswer, StatsInput};
pub use verify::{VerifyInput, VerifyOutcome};
pub use watch::{EventStream, WatchedIds};

use crate::codes::CodeBook;
use crate::decide::Decider;
use crate::domain::{
    Notification, OutboxMessage, Service, SubjectState, Verification, VerificationRefusal,
};
use crate::notify::NotifyPolicy;
use crate::services::ServiceDirectory;
use crate::store::{EventLog, Outbox, SqlStore, StoreError, WriteTx};
use verify_policy::abuse::AbuseDefense;

/// Why a use case did not do what was asked, for the transport to map (see `crate::errors`).
#[derive(Debug, thiserror::Error)]
pub enum UseCaseError {
    /// The input is malformed: `field` names what to fix.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The input is well formed but cannot be served as asked (a landline for SMS, a rule).
    #[error("{field}: {reason}")]
    FailedPrecondition {
        /// The request field.
        field: &'static str,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The named verification or notification does not exist.
    #[error("{field}: no {resource} {value}")]
    NotFound {
        /// `verification` or `notification`.
        resource: &'static str,
        /// The request field that named it.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A limit was reached (every send of a verification used).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The thing to create exists already (a service id taken).
    #[error("{0} exists already")]
    AlreadyExists(String),
    /// The caller's key may not do this (a service's key asking for what needs an admin).
    #[error("{0}")]
    PermissionDenied(String),
    /// A rate limit refused the request (abuse defense).
    #[error("{explanation}")]
    RateLimited {
        /// The rule, the counts and window, and when it ends, in one sentence.
        explanation: String,
        /// What is limited, as `limit: key value` (a number masked).
        subject: String,
        /// How long until a request fits again.
        retry_after: std::time::Duration,
    },
    /// Another request wrote the same key at the same moment; trying again succeeds.
    #[error("concurrent write of {0}; try again")]
    Contended(String),
    /// A failure of ours (storage, the random generator): logged, reported briefly.
    #[error("{context}: {detail}")]
    Internal {
        /// What was being done.
        context: &'static str,
        /// The error, for the log.
        detail: String,
    },
}

impl UseCaseError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        UseCaseError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    fn precondition(field: &'static str, reason: impl Into<String>) -> Self {
        UseCaseError::FailedPrecondition {
            field,
            reason: reason.into(),
        }
    }

    fn internal(context: &'static str, detail: impl std::fmt::Display) -> Self {
        UseCaseError::Internal {
            context,
            detail: detail.to_string(),
        }
    }
}

impl From<StoreError> for UseCaseError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Contended(what) => UseCaseError::Contended(what),
            error => UseCaseError::internal("storage", error),
        }
    }
}

impl From<VerificationRefusal> for UseCaseError {
    fn from(refusal: VerificationRefusal) -> Self {
        match refusal {
            VerificationRefusal::TooManySends { .. } => {
                UseCaseError::ResourceExhausted(refusal.to_string())
            }
            VerificationRefusal::NotCancelable { id, status } => UseCaseError::precondition(
                "verification_id",
                format!("verification {id} is {status} and can no longer be canceled"),
            ),
        }
    }
}

/// A verification with its messages, oldest first: what clients are shown.
#[derive(Debug, Clone)]
pub struct VerificationView {
    /// The verification.
    pub verification: Verification,
    /// Its messages.
    pub messages: Vec<OutboxMessage>,
}

/// A notification with its message: what clients are shown.
#[derive(Debug, Clone)]
pub struct NotificationView {
    /// The notification.
    pub notification: Notification,
    /// Its message (the latest, should there be several).
    pub message: OutboxMessage,
}

/// Everything the use cases work with; shared by every request.
pub struct UseCases {
    store: Arc<SqlStore>,
    codes: CodeBook,
    /// The services requests belong to.
    services: Arc<ServiceDirectory>,
    decider: Arc<Decider>,
    rules: Arc<NotifyPolicy>,
    shutdown: signal::Receiver<bool>,
    /// Verify calls that arrive together, stored by one write.
    verify_queue: Arc<verify::VerifyQueue>,
    /// Views of ended verifications, answered from memory.
    ended: Arc<ended::EndedViews>,
    /// Abuse defense: rate limits, blocks, the pumping guard, geo permissions, guessing.
    defense: Arc<AbuseDefense>,
    /// The blocks and country counts abuse defense judges by, kept up to date in memory.
    guard_view: Arc<abuse::GuardView>,
}

impl UseCases {
    /// The use cases over their parts; `shutdown` turning true ends open event streams.
    pub fn new(
        store: Arc<SqlStore>,
        codes: CodeBook,
        services: Arc<ServiceDirectory>,
        decider: Arc<Decider>,
        rules: Arc<NotifyPolicy>,
        defense: Arc<AbuseDefense>,
        shutdown: signal::Receiver<bool>,
    ) -> Self {
        let ended = ended::EndedViews::new();
        ended.follow(Arc::clone(&store), shutdown.clone());
        abuse::forget_old_counts(Arc::clone(&store), Arc::clone(&defense), shutdown.clone());
        let guard_view = Arc::new(abuse::GuardView::default());
        guard_view.follow(Arc::clone(&store), Arc::clone(&defense), shutdown.clone());
        UseCases {
            ended,
            verify_queue: verify::VerifyQueue::new(
                Arc::clone(&store),
                Arc::clone(&services),
                Arc::clone(&defense),
                Arc::clone(&guard_view),
            ),
            defense,
            guard_view,
            store,
            codes,
            services,
            decider,
            rules,
            shutdown,
        }
    }

    /// Writes the rate-limit counts not written yet; the server calls it once its requests
    /// have finished, before it closes the store.
    pub async fn write_pending_counts(&self) {
        self.guard_view.pending.write_kept(&self.store).await;
    }

    /// What kind of number `number` is; it sends and stores nothing. An invalid number is a
    /// classification saying why, not an error.
    pub fn classify(
        &self,
        number: &str,
        region_hint: &str,
    ) -> Result<verify_policy::Classification, UseCaseError> {
        if number.len() > input::MAX_NUMBER_INPUT_LENGTH {
            return Err(UseCaseError::invalid(
                "number",
                format!("longer than {} characters", input::MAX_NUMBER_INPUT_LENGTH),
            ));
        }
        let hint = input::region_hint(region_hint)?;
        Ok(verify_policy::classify(number, hint))
    }

    /// The service a request acts on (the one it names, else the caller's own), which must
    /// exist and be the caller's to use.
    async fn service_for(
        &self,
        caller: &Caller,
        requested: &str,
    ) -> Result<Arc<Service>, UseCaseError> {
        let id = caller.service_for(requested)?;
        self.services
            .find(&id)
            .await?
            .ok_or_else(|| caller::not_found_service(&id))
    }

    /// A verification with its messages (an ended one from memory when it was read before);
    /// one of another service than the caller's is NOT_FOUND.
    pub async fn get_verification(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<VerificationView, UseCaseError> {
        input::validate_id("verification_id", id)?;
        let not_found = || not_found_verification("verification_id", id);
        if let Some(view) = self.ended.get(id) {
            if !caller.sees(&view.verification.service_id) {
                return Err(not_found());
            }
            return Ok(VerificationView::clone(&view));
        }
        let verification = self
            .store
            .verification(id)
            .await?
            .filter(|v| caller.sees(&v.service_id))
            .ok_or_else(not_found)?;
        self.view_of(verification).await
    }

    /// A notification with its message; one of another service than the caller's is
    /// NOT_FOUND.
    pub async fn get_notification(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<NotificationView, UseCaseError> {
        input::validate_id("notification_id", id)?;
        let notification = self
            .store
            .notification(id)
            .await?
            .filter(|n| caller.sees(&n.service_id))
            .ok_or_else(|| UseCaseError::NotFound {
                resource: "notification",
                field: "notification_id",
                value: id.to_string(),
            })?;
        self.notification_view(notification).await
    }

    /// The view of a verification, its messages read now; offered to the views of ended
    /// verifications (an ended one never changes again, so reading its messages after it
    /// makes a whole view).
    async fn view_of(&self, verification: Verification) -> Result<VerificationView, UseCaseError> {
        let read_from = self.ended.generation();
        let messages = self.store.messages_of(&verification.subject()).await?;
        let view = VerificationView {
            verification,
            messages,
        };
        self.ended.keep(&view, read_from);
        Ok(view)
    }

    async fn notification_view(
        &self,
        notification: Notification,
    ) -> Result<NotificationView, UseCaseError> {
        let message = self
            .store
            .messages_of(&notification.subject())
            .await?
            .pop()
            .ok_or_else(|| {
                UseCaseError::internal(
                    "storage",
                    format!("notification {} has no message", notification.id),
                )
            })?;
        Ok(NotificationView {
            notification,
            message,
        })
    }
}

fn not_found_verification(field: &'static str, value: &str) -> UseCaseError {
    UseCaseError::NotFound {
        resource: "verification",
        field,
        value: value.to_string(),
    }
}

/// A new id with `prefix`: time-ordered, unique.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Drops the messages of an ended verification that no carrier has yet.
pub(crate) async fn drop_unsent_messages(
    tx: &mut WriteTx,
    verification: &Verification,
    now_ms: i64,
) -> Result<(), StoreError> {
    if !verification.has_ended() {
        return Ok(());
    }
    let reason = format!("not sent: verification {}", verification.status);
    let state = SubjectState::Verification(verification.status);
    for mut message in tx.lock_unsent_messages_of(&verification.subject()).await? {
        if let Some(event) = message.drop_unsent(&reason, state, now_ms) {
            tx.save_message(&message).await?;
            tx.record([event]);
        }
    }
    Ok(())
}
