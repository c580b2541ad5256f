//! Durable state: repositories that load and save the domain types (verifications,
//! notifications, the outbox of their messages), the event log clients watch, dispatcher
//! leases and receipts waiting for their message. SQLite and PostgreSQL behind one
//! implementation, [`SqlStore`]; the store decides nothing: the rules are in `crate::domain`.
//!
//! Writes happen in a [`WriteTx`]: load what the use case needs (locked), apply domain
//! transitions, save, record their events, commit. Each repository is a narrow trait the
//! transaction implements, so a use case names what it touches.

mod sql;
#[cfg(test)]
pub(crate) mod test_db;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use verify_carrier::ReceiptStatus;
use verify_policy::abuse::Block;

pub use sql::conversion::ConversionCount;
pub use sql::listing::ListFilter;
pub use sql::services::StoredService;
pub use sql::webhooks::WebhookRetry;
pub use sql::{SqlStore, WriteTx};

use crate::domain::campaign::{Recipient, Rejection};
use crate::domain::{
    Campaign, Event, Notification, OutboxMessage, Subject, Verification, VerificationStatus,
};

/// Storage failures. Every one is ours, not the client's: it reaches clients as an internal
/// error without details.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Stored data could not be read back.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch of writes this one was committed with failed to commit (or the writer
    /// stopped): nothing of it was stored.
    #[error("commit failed: {0}")]
    Commit(std::sync::Arc<str>),
    /// Another process wrote the same unique key first; the caller may retry.
    #[error("concurrent write of the same key: {0}")]
    Contended(String),
    /// The database cannot be reached or opened, said so that a person can act on it.
    #[error("{0}")]
    Unavailable(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A client's idempotency key within its service (keys are per service).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// The service.
    pub service_id: String,
    /// The client's key.
    pub key: String,
}

/// Verifications and the idempotency keys that name them.
#[async_trait]
pub trait VerificationRepository {
    /// A verification by id, locked for the rest of the transaction.
    async fn lock_verification(&mut self, id: &str) -> StoreResult<Option<Verification>>;
    /// A verification's status, read without locking it.
    async fn verification_status(&mut self, id: &str) -> StoreResult<Option<VerificationStatus>>;
    /// A verification's status, the verification locked (as [`lock_verification`] does, with
    /// only the one column read).
    ///
    /// [`lock_verification`]: VerificationRepository::lock_verification
    async fn lock_verification_status(
        &mut self,
        id: &str,
    ) -> StoreResult<Option<VerificationStatus>>;
    /// The statuses of the verifications of `ids` (those that exist), locked in the order of
    /// their ids, the order every batch locks them in.
    async fn lock_verification_statuses(
        &mut self,
        ids: &[String],
    ) -> StoreResult<Vec<(String, VerificationStatus)>>;
    /// The pending verification of a number in a service, locked.
    async fn lock_pending_verification_of(
        &mut self,
        service_id: &str,
        e164: &str,
    ) -> StoreResult<Option<Verification>>;
    /// The most recent verification of a number in a service, locked.
    async fn lock_latest_verification_of(
        &mut self,
        service_id: &str,
        e164: &str,
    ) -> StoreResult<Option<Verification>>;
    /// Pending verifications past their lifetime at `now_ms`, at most `limit`, locked in the
    /// order of their ids (the order every batch locks verifications in).
    async fn lock_expired_verifications(
        &mut self,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Verification>>;
    /// Stores a new verification.
    async fn insert_verification(&mut self, verification: &Verification) -> StoreResult<()>;
    /// Stores new verifications, in one statement (`Contended` when one of their numbers
    /// already has a pending verification).
    async fn insert_verifications(&mut self, verifications: &[Verification]) -> StoreResult<()>;
    /// The verifications a Verify group's rules read, in one statement, without locking:
    /// every pending one to `numbers`, those to `numbers` started from `numbers_since_ms` on,
    /// and those whose number counts under one of `prefixes` (their `number_prefix`) started
    /// from `prefixes_since_ms` on. Each once.
    async fn recent_codes(
        &mut self,
        numbers: &[String],
        numbers_since_ms: i64,
        prefixes: &[String],
        prefixes_since_ms: i64,
    ) -> StoreResult<Vec<RecordedCode>>;
    /// Which of `keys` (each a service and its idempotency key) already name a verification.
    async fn verification_keys_in_use(
        &mut self,
        keys: &[ServiceKey],
    ) -> StoreResult<Vec<ServiceKey>>;
    /// Saves a changed verification.
    async fn save_verification(&mut self, verification: &Verification) -> StoreResult<()>;
    /// The verification id and number an idempotency key of a service was first used for.
    async fn verification_for_key(
        &mut self,
        key: &ServiceKey,
    ) -> StoreResult<Option<(String, String)>>;
    /// Remembers that `key` names verification `id` of number `e164`.
    async fn remember_verification_key(
        &mut self,
        key: &ServiceKey,
        id: &str,
        e164: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
}

/// Notifications.
#[async_trait]
pub trait NotificationRepository {
    /// Stores a new notification.
    async fn insert_notification(&mut self, notification: &Notification) -> StoreResult<()>;
    /// The notification an idempotency key of a service was first used for.
    async fn notification_for_key(&mut self, key: &ServiceKey)
    -> StoreResult<Option<Notification>>;
}

/// Campaigns, their recipients and the lines they rejected.
#[async_trait]
pub trait CampaignRepository {
    /// Stores a new campaign (`Contended` when its idempotency key was just used).
    async fn insert_campaign(&mut self, campaign: &Campaign) -> StoreResult<()>;
    /// Saves a campaign's status and counts of lines.
    async fn save_campaign(&mut self, campaign: &Campaign) -> StoreResult<()>;
    /// Frees a campaign's idempotency key (its recipients' stream broke: a retry starts over).
    async fn release_campaign_key(&mut self, id: &str) -> StoreResult<()>;
    /// A campaign by id, locked.
    async fn lock_campaign(&mut self, id: &str) -> StoreResult<Option<Campaign>>;
    /// The campaign an idempotency key of a service was first used for.
    async fn campaign_for_key(&mut self, key: &ServiceKey) -> StoreResult<Option<Campaign>>;
    /// Stores recipients, leaving out those whose number the campaign has already; returns
    /// the lines stored.
    async fn insert_recipients(&mut self, recipients: &[Recipient]) -> StoreResult<Vec<u64>>;
    /// Stores rejected lines.
    async fn insert_rejections(
        &mut self,
        campaign_id: &str,
        rejections: &[Rejection],
    ) -> StoreResult<()>;
    /// Up to `limit` pending recipients of a campaign planned for `route` and due at
    /// `now_ms`, earliest first, locked (on PostgreSQL, those another process holds are
    /// skipped).
    async fn lock_due_recipients(
        &mut self,
        campaign_id: &str,
        route: &str,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Recipient>>;
    /// Saves changed recipients: their state, due time, detail and message.
    async fn save_recipients(&mut self, recipients: &[Recipient]) -> StoreResult<()>;
    /// Whether a campaign has recipients still pending.
    async fn has_pending_recipients(&mut self, campaign_id: &str) -> StoreResult<bool>;
    /// Records a recipient's confirmation, found by number or line: `Some(true)` when new,
    /// `Some(false)` when confirmed before, `None` when no such recipient.
    async fn confirm_recipient(
        &mut self,
        campaign_id: &str,
        to_e164: Option<&str>,
        line: Option<u64>,
        now_ms: i64,
    ) -> StoreResult<Option<bool>>;
}

/// The outbox: every message of every subject.
#[async_trait]
pub trait Outbox {
    /// Stores a new message.
    async fn insert_message(&mut self, message: &OutboxMessage) -> StoreResult<()>;
    /// Stores new messages, in one statement.
    async fn insert_messages(&mut self, messages: &[OutboxMessage]) -> StoreResult<()>;
    /// Saves a changed message.
    async fn save_message(&mut self, message: &OutboxMessage) -> StoreResult<()>;
    /// A message by id, read without locking it (to learn its subject, which is locked first).
    async fn read_message(&mut self, id: &str) -> StoreResult<Option<OutboxMessage>>;
    /// The id of the message `carrier` knows as `carrier_message_id`, read without locking.
    async fn message_id_by_carrier_id(
        &mut self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<String>>;
    /// The messages of `ids` (those that exist), locked in the order of their ids, the order
    /// every batch locks them in.
    async fn lock_messages_by_ids(&mut self, ids: &[String]) -> StoreResult<Vec<OutboxMessage>>;
    /// The messages of `ids` (those that exist), read without locking them.
    async fn read_messages(&mut self, ids: &[String]) -> StoreResult<Vec<OutboxMessage>>;
    /// A message by id, locked.
    async fn lock_message(&mut self, id: &str) -> StoreResult<Option<OutboxMessage>>;
    /// A subject's messages that no carrier has yet (scheduled or queued), locked.
    async fn lock_unsent_messages_of(
        &mut self,
        subject: &Subject,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Claims up to `limit` due messages for dispatcher `worker`: they become `claimed` by it,
    /// and no other dispatcher gets them. Oldest due first.
    async fn claim_due_messages(
        &mut self,
        worker: &str,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Marks the messages of `ids` that `worker` still holds as being handed to their carrier
    /// (`sending`, one more attempt); returns those it holds so, with their attempt (also
    /// those a retry after a lost commit answer finds already handed over). A message it no
    /// longer holds (taken over by another dispatcher meanwhile) must not be handed over.
    async fn hand_off(
        &mut self,
        worker: &str,
        ids: &[String],
        now_ms: i64,
    ) -> StoreResult<Vec<(String, u32)>>;
    /// The messages `worker` holds (claimed or sending), read without locking them.
    async fn messages_held_by(&mut self, worker: &str) -> StoreResult<Vec<OutboxMessage>>;
    /// The messages `worker` holds (claimed or sending), locked.
    async fn lock_messages_held_by(&mut self, worker: &str) -> StoreResult<Vec<OutboxMessage>>;
    /// Messages held (claimed or sending) by a dispatcher that is not registered (any more),
    /// at most `limit`, locked.
    async fn lock_messages_of_unregistered_holders(
        &mut self,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;
}

/// The event log.
pub trait EventLog {
    /// Records events; they get their cursors, in order, when the transaction commits.
    fn record(&mut self, events: impl IntoIterator<Item = Event>);
}

/// Requests counted for rate limits, per bucket (`limit|value`) and time slot.
#[async_trait]
pub trait RateCounts {
    /// `(bucket, slot start, requests)` of `buckets` in slots from `since_slot_ms` on.
    async fn rate_counts(
        &mut self,
        buckets: &[String],
        since_slot_ms: i64,
    ) -> StoreResult<Vec<(String, i64, i64)>>;

    /// Adds `(bucket, slot start, requests)` to what is counted (each bucket and slot once).
    async fn add_rate_counts(&mut self, counts: &[(String, i64, i64)]) -> StoreResult<()>;

    /// Forgets the counts of slots before `slot_ms` (older than every window); returns how
    /// many rows went.
    async fn forget_rate_counts_before(&mut self, slot_ms: i64) -> StoreResult<u64>;
}

/// Abuse defense's blocks, and the recent codes of number prefixes the pumping guard judges.
#[async_trait]
pub trait Blocks {
    /// Stores new blocks.
    async fn insert_blocks(&mut self, blocks: &[Block]) -> StoreResult<()>;

    /// Lifts block `id` (if not lifted already) and returns it as it is now; `None` if there
    /// is no such block.
    async fn lift_block(&mut self, id: &str, now_ms: i64, by: &str) -> StoreResult<Option<Block>>;

    /// Forgets blocks that ended before `ended_before_ms`; returns how many went.
    async fn forget_blocks_before(&mut self, ended_before_ms: i64) -> StoreResult<u64>;
}

/// A verification as the rules against abuse count it: the codes sent to a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCode {
    /// The verification's id.
    pub id: String,
    /// Its service.
    pub service_id: String,
    /// The number (E.164).
    pub e164: String,
    /// The prefix abuse defense counts the number under (empty if not kept).
    pub number_prefix: String,
    /// Whether it is pending.
    pub pending: bool,
    /// Whether it was approved.
    pub approved: bool,
    /// Codes sent for it (the first, resends and fallback steps).
    pub sends: u32,
    /// When it started (unix ms).
    pub created_at_ms: i64,
    /// A time its last code was sent by (unix ms): it last changed then or later, and sends
    /// nothing after it expires.
    pub sent_by_ms: i64,
}

/// A delivery receipt that came before its message was known as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptReceipt {
    /// The carrier that sent it.
    pub carrier: String,
    /// The ids it may name the message by (the carrier's id and its other spellings).
    pub carrier_message_ids: Vec<String>,
    /// verifyd's message id, when the carrier echoed it.
    pub message_id: Option<String>,
    /// What it says.
    pub status: ReceiptStatus,
    /// The carrier's words.
    pub detail: String,
    /// When it came, unix ms.
    pub received_at_ms: i64,
}

/// Receipts waiting for their message.
#[async_trait]
pub trait EarlyReceipts {
    /// Keeps a receipt until its message's submission is recorded.
    async fn keep_receipt(&mut self, receipt: &KeptReceipt) -> StoreResult<()>;
    /// Takes (removes and returns) the kept receipts of a message: those of `carrier` under
    /// `carrier_message_id`, or naming `message_id`. Oldest first.
    async fn take_receipts_for(
        &mut self,
        carrier: &str,
        carrier_message_id: Option<&str>,
        message_id: &str,
    ) -> StoreResult<Vec<KeptReceipt>>;
    /// Whether any receipt is kept at all (when none is, no message needs to look for its own).
    async fn has_kept_receipts(&mut self) -> StoreResult<bool>;
    /// Forgets receipts kept since before `before_ms`; returns how many receipts.
    async fn forget_receipts_before(&mut self, before_ms: i64) -> StoreResult<u64>;
    /// Messages the carrier has accepted (submitted or maybe sent) for which receipts are
    /// still kept, at most `limit`: receipts whose match was missed while the acceptance was
    /// being recorded.
    async fn messages_with_kept_receipts(&mut self, limit: u32) -> StoreResult<Vec<String>>;
}

/// A dispatcher's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Its id.
    pub id: String,
    /// The host it runs on (empty when unknown).
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// When it registered, unix ms.
    pub started_at_ms: i64,
    /// Its last heartbeat, unix ms by the database's clock.
    pub heartbeat_at_ms: i64,
}

/// Dispatcher registrations and their heartbeats. Heartbeats are stamped, and compared, with
/// the database's clock, so that servers whose clocks disagree never take each other for dead.
#[async_trait]
pub trait Workers {
    /// The database's clock, unix ms.
    async fn database_now_ms(&mut self) -> StoreResult<i64>;
    /// Registers (or re-registers) a dispatcher, with a heartbeat now (its `heartbeat_at_ms`
    /// is not used).
    async fn register_worker(&mut self, worker: &WorkerRecord) -> StoreResult<()>;
    /// Renews a dispatcher's heartbeat; `false` when it is no longer registered (another
    /// dispatcher took it for dead and took its messages over).
    async fn heartbeat(&mut self, id: &str) -> StoreResult<bool>;
    /// Every registered dispatcher.
    async fn workers(&mut self) -> StoreResult<Vec<WorkerRecord>>;
    /// Removes a registration if its heartbeat is still `heartbeat_at_ms` (no other dispatcher
    /// removed it, and it did not come back); `true` when this call removed it.
    async fn remove_worker(&mut self, id: &str, heartbeat_at_ms: i64) -> StoreResult<bool>;
    /// Removes a dispatcher's own registration when it stops.
    async fn unregister_worker(&mut self, id: &str) -> StoreResult<()>;
}
