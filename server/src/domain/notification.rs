//! A notification: a message that is not a code (a receipt, an alert, a promotion), sent under
//! the recipient country's rules. What it says and for whom lives here; its delivery is its
//! message in the outbox, whose state is the notification's state.

use verify_policy::rules::Category;

use super::{DeliveryStatus, Subject, text_enum};

/// Where a notification is, as its message's state shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Held until its send time by a country rule.
    Scheduled,
    /// Due; waiting for (or being handled by) a dispatcher.
    Queued,
    /// Accepted by the carrier.
    Submitted,
    /// Went out to the carrier and no answer came: it may have been sent.
    MaybeSent,
    /// Delivered to the handset.
    Delivered,
    /// Refused, undelivered, or refused by a rule at send time.
    Failed,
}

text_enum!(NotificationStatus {
    Scheduled => "scheduled",
    Queued => "queued",
    Submitted => "submitted",
    MaybeSent => "maybe_sent",
    Delivered => "delivered",
    Failed => "failed",
});

impl NotificationStatus {
    /// The notification's state when its message is in `status`.
    pub fn of(status: DeliveryStatus) -> NotificationStatus {
        use DeliveryStatus as D;
        match status {
            D::Scheduled => NotificationStatus::Scheduled,
            D::Queued | D::Claimed | D::Sending => NotificationStatus::Queued,
            D::Submitted => NotificationStatus::Submitted,
            D::MaybeSent => NotificationStatus::MaybeSent,
            D::Delivered => NotificationStatus::Delivered,
            D::Failed | D::Canceled => NotificationStatus::Failed,
        }
    }
}

/// A notification: what to send, to whom, and under which program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Id (`nt_...`).
    pub id: String,
    /// The service that sent it.
    pub service_id: String,
    /// Recipient in E.164.
    pub to_e164: String,
    /// Recipient's region.
    pub region_code: String,
    /// Recipient's time zones, for the rules' local time.
    pub time_zones: Vec<String>,
    /// What it is for; country rules differ by category.
    pub category: Category,
    /// The sending program; empty for none.
    pub program_id: String,
    /// The registered template the body follows; empty for none.
    pub template: String,
    /// The text.
    pub body: String,
    /// The sender to show; empty for the carrier's own.
    pub sender: String,
    /// The decision at Notify, in one sentence.
    pub decision: String,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// Created, unix ms.
    pub created_at_ms: i64,
}

impl Notification {
    /// The subject its message and events name.
    pub fn subject(&self) -> Subject {
        Subject::Notification(self.id.clone())
    }
}

/// A category's stored name (`MARKETING`) back to the category.
pub fn category_named(name: &str) -> Option<Category> {
    Category::ALL.into_iter().find(|c| c.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_shows_its_messages_state() {
        use DeliveryStatus as D;
        assert_eq!(
            NotificationStatus::of(D::Claimed),
            NotificationStatus::Queued
        );
        assert_eq!(
            NotificationStatus::of(D::Sending),
            NotificationStatus::Queued
        );
        assert_eq!(
            NotificationStatus::of(D::Canceled),
            NotificationStatus::Failed
        );
        assert_eq!(
            NotificationStatus::of(D::MaybeSent),
            NotificationStatus::MaybeSent
        );
        assert_eq!(
            NotificationStatus::of(D::Scheduled),
            NotificationStatus::Scheduled
        );
    }

    #[test]
    fn categories_round_trip_through_their_names() {
        for category in Category::ALL {
            assert_eq!(category_named(category.as_str()), Some(category));
        }
        assert_eq!(category_named("SPAM"), None);
    }
}
