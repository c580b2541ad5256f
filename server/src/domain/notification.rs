//! A notification: a message that is not a code (a receipt, an alert, a promotion), sent under
//! the recipient country's rules. What it says and for whom lives here; its delivery is its
//! message in the outbox, whose state is the notification's state.

use verify_policy::rules::Category;

use super::{DeliveryStatus, Event, OutboxMessage, Subject, SubjectState, text_enum};

/// Why a notification cannot be canceled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "notification_id: notification {id} is {status}: its message went to a carrier and can no longer be canceled"
)]
pub struct NotCancelable {
    /// The notification.
    pub id: String,
    /// Where its message is.
    pub status: NotificationStatus,
}

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
    /// Canceled by the client before it went to a carrier.
    Canceled,
}

text_enum!(NotificationStatus {
    Scheduled => "scheduled",
    Queued => "queued",
    Submitted => "submitted",
    MaybeSent => "maybe_sent",
    Delivered => "delivered",
    Failed => "failed",
    Canceled => "canceled",
});

impl NotificationStatus {
    /// The states of a message that show as this status (the inverse of [`Self::of`]).
    pub fn message_statuses(self) -> &'static [DeliveryStatus] {
        use DeliveryStatus as D;
        match self {
            NotificationStatus::Scheduled => &[D::Scheduled],
            NotificationStatus::Queued => &[D::Queued, D::Claimed, D::Sending],
            NotificationStatus::Submitted => &[D::Submitted],
            NotificationStatus::MaybeSent => &[D::MaybeSent],
            NotificationStatus::Delivered => &[D::Delivered],
            NotificationStatus::Failed => &[D::Failed],
            NotificationStatus::Canceled => &[D::Canceled],
        }
    }

    /// The notification's state when its message is in `status`.
    pub fn of(status: DeliveryStatus) -> NotificationStatus {
        use DeliveryStatus as D;
        match status {
            D::Scheduled => NotificationStatus::Scheduled,
            D::Queued | D::Claimed | D::Sending => NotificationStatus::Queued,
            D::Submitted => NotificationStatus::Submitted,
            D::MaybeSent => NotificationStatus::MaybeSent,
            D::Delivered => NotificationStatus::Delivered,
            D::Failed => NotificationStatus::Failed,
            D::Canceled => NotificationStatus::Canceled,
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

    /// Cancels it while its `message` has not gone to a carrier (scheduled or queued): the
    /// message is dropped, and the event says so. Canceling a canceled one changes nothing
    /// (`None`); one handed over cannot be canceled.
    pub fn cancel(
        &self,
        message: &mut OutboxMessage,
        now_ms: i64,
    ) -> Result<Option<Event>, NotCancelable> {
        if message.status == DeliveryStatus::Canceled {
            return Ok(None);
        }
        message
            .drop_unsent("canceled by the client", SubjectState::Notification, now_ms)
            .map(Some)
            .ok_or_else(|| NotCancelable {
                id: self.id.clone(),
                status: NotificationStatus::of(message.status),
            })
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
            NotificationStatus::Canceled
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
    fn each_message_state_is_listed_under_its_notification_status() {
        use DeliveryStatus as D;
        for status in [
            D::Scheduled,
            D::Queued,
            D::Claimed,
            D::Sending,
            D::Submitted,
            D::MaybeSent,
            D::Delivered,
            D::Failed,
            D::Canceled,
        ] {
            let shown = NotificationStatus::of(status);
            assert!(shown.message_statuses().contains(&status), "{status}");
        }
    }

    #[test]
    fn only_a_message_not_yet_handed_over_is_canceled() {
        let notification = Notification {
            id: "nt_1".into(),
            service_id: crate::domain::DEFAULT_SERVICE.into(),
            to_e164: "+919812345678".into(),
            region_code: "IN".into(),
            time_zones: vec!["Asia/Kolkata".into()],
            category: Category::Marketing,
            program_id: String::new(),
            template: String::new(),
            body: "Sale".into(),
            sender: String::new(),
            decision: String::new(),
            idempotency_key: None,
            created_at_ms: 0,
        };
        let spec = crate::domain::MessageSpec {
            id: "msg_1".into(),
            service_id: notification.service_id.clone(),
            subject: notification.subject(),
            channel: verify_carrier::Channel::Sms,
            carrier: "sim".into(),
            fallback_carriers: Vec::new(),
            step: 0,
            trace_parent: None,
        };
        let (mut message, _) =
            OutboxMessage::schedule(spec, 9_000, "quiet hours", SubjectState::Notification, 0);
        let event = notification.cancel(&mut message, 10).unwrap().unwrap();
        assert_eq!(event.kind, crate::domain::EventKind::MessageCanceled);
        assert_eq!(
            NotificationStatus::of(message.status),
            NotificationStatus::Canceled
        );
        assert_eq!(notification.cancel(&mut message, 11), Ok(None));
        message.status = DeliveryStatus::Submitted;
        let refused = notification.cancel(&mut message, 12).unwrap_err();
        assert_eq!(refused.status, NotificationStatus::Submitted);
    }

    #[test]
    fn categories_round_trip_through_their_names() {
        for category in Category::ALL {
            assert_eq!(category_named(category.as_str()), Some(category));
        }
        assert_eq!(category_named("SPAM"), None);
    }
}
