//! Conversions between stored records, policy types and the generated `verify.v1` messages.

use serde::{Deserialize, Serialize};
use verify_carrier::Channel;
use verify_policy::{Classification, InvalidReason, LineType};
use verify_proto::Timestamp;

use verify_policy::rules::Category;

use crate::domain::conversion::{Dimension, GroupKey, Tally};
use crate::domain::{
    CampaignStatus, CheckResult, DeliveryStatus, EventKind, NotificationStatus, OutboxMessage,
    RecordedEvent, Subject, SubjectStatus, VerificationStatus,
};
use crate::proto;
use crate::usecases::{NotificationView, StatsAnswer, VerificationView};

/// Unix milliseconds to a protobuf timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A protobuf timestamp to unix milliseconds (saturating far outside any real time).
pub fn unix_ms(time: &Timestamp) -> i64 {
    time.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(time.nanos) / 1_000_000)
}

/// A proto verification status as asked for in a filter; `None` for an unknown or unset one.
pub fn verification_status_from_proto(value: i32) -> Option<VerificationStatus> {
    use proto::VerificationStatus as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Pending => VerificationStatus::Pending,
        P::Approved => VerificationStatus::Approved,
        P::Canceled => VerificationStatus::Canceled,
        P::Expired => VerificationStatus::Expired,
        P::MaxAttemptsReached => VerificationStatus::MaxAttemptsReached,
    })
}

/// A proto notification status as asked for in a filter; `None` for an unknown or unset one.
pub fn notification_status_from_proto(value: i32) -> Option<NotificationStatus> {
    use proto::NotificationStatus as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Scheduled => NotificationStatus::Scheduled,
        P::Queued => NotificationStatus::Queued,
        P::Submitted => NotificationStatus::Submitted,
        P::Delivered => NotificationStatus::Delivered,
        P::Failed => NotificationStatus::Failed,
        P::MaybeSent => NotificationStatus::MaybeSent,
        P::Canceled => NotificationStatus::Canceled,
    })
}

/// A channel to its proto value.
pub fn channel(channel: Channel) -> proto::Channel {
    match channel {
        Channel::Sms => proto::Channel::Sms,
        Channel::Voice => proto::Channel::Voice,
    }
}

fn line_type(line_type: Option<LineType>) -> proto::LineType {
    use proto::LineType as P;
    match line_type {
        None => P::Unspecified,
        Some(LineType::FixedLine) => P::FixedLine,
        Some(LineType::Mobile) => P::Mobile,
        Some(LineType::FixedLineOrMobile) => P::FixedLineOrMobile,
        Some(LineType::TollFree) => P::TollFree,
        Some(LineType::PremiumRate) => P::PremiumRate,
        Some(LineType::SharedCost) => P::SharedCost,
        Some(LineType::Voip) => P::Voip,
        Some(LineType::PersonalNumber) => P::PersonalNumber,
        Some(LineType::Pager) => P::Pager,
        Some(LineType::Uan) => P::Uan,
        Some(LineType::Voicemail) => P::Voicemail,
        Some(LineType::Unknown) => P::Unknown,
    }
}

fn invalid_reason(reason: Option<InvalidReason>) -> proto::InvalidReason {
    use proto::InvalidReason as P;
    match reason {
        None => P::Unspecified,
        Some(InvalidReason::NotANumber) => P::NotANumber,
        Some(InvalidReason::InvalidCountryCode) => P::InvalidCountryCode,
        Some(InvalidReason::TooShort) => P::TooShort,
        Some(InvalidReason::TooLong) => P::TooLong,
        Some(InvalidReason::InvalidLength) => P::InvalidLength,
        Some(InvalidReason::NoSuchRange) => P::NoSuchRange,
    }
}

/// A classification to its proto message.
pub fn classification(c: &Classification) -> proto::Classification {
    classification_owned(c.clone())
}

/// A classification for clients, taking its strings over (the batch path copies none).
pub fn classification_owned(c: Classification) -> proto::Classification {
    proto::Classification {
        input: c.input,
        valid: c.valid,
        e164: c.e164.unwrap_or_default(),
        region_code: c.region_code.unwrap_or_default(),
        country_calling_code: c.country_calling_code,
        line_type: line_type(c.line_type) as i32,
        carrier: c.carrier.unwrap_or_default(),
        time_zones: c.time_zones,
        recommended_channel: c
            .recommended_channel
            .map_or(proto::Channel::Unspecified, channel) as i32,
        invalid_reason: invalid_reason(c.invalid_reason) as i32,
        detail: c.detail.to_string(),
        national_format: c.national_format.unwrap_or_default(),
        international_format: c.international_format.unwrap_or_default(),
    }
}

/// The part of a classification stored with a verification (as JSON), so `GetVerification`
/// answers with what was decided at the time.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredClassification {
    input: String,
    e164: String,
    region_code: String,
    country_calling_code: u32,
    line_type: i32,
    carrier: String,
    time_zones: Vec<String>,
    recommended_channel: i32,
    national_format: String,
    international_format: String,
}

impl StoredClassification {
    /// From a (valid) classification.
    pub fn from_classification(c: &Classification) -> Self {
        let p = classification(c);
        StoredClassification {
            input: p.input,
            e164: p.e164,
            region_code: p.region_code,
            country_calling_code: p.country_calling_code,
            line_type: p.line_type,
            carrier: p.carrier,
            time_zones: p.time_zones,
            recommended_channel: p.recommended_channel,
            national_format: p.national_format,
            international_format: p.international_format,
        }
    }

    fn into_proto(self) -> proto::Classification {
        proto::Classification {
            input: self.input,
            valid: true,
            e164: self.e164,
            region_code: self.region_code,
            country_calling_code: self.country_calling_code,
            line_type: self.line_type,
            carrier: self.carrier,
            time_zones: self.time_zones,
            recommended_channel: self.recommended_channel,
            invalid_reason: proto::InvalidReason::Unspecified as i32,
            detail: String::new(),
            national_format: self.national_format,
            international_format: self.international_format,
        }
    }
}

/// A verification status to its proto value.
pub fn verification_status(status: VerificationStatus) -> proto::VerificationStatus {
    use proto::VerificationStatus as P;
    match status {
        VerificationStatus::Pending => P::Pending,
        VerificationStatus::Approved => P::Approved,
        VerificationStatus::Canceled => P::Canceled,
        VerificationStatus::Expired => P::Expired,
        VerificationStatus::MaxAttemptsReached => P::MaxAttemptsReached,
    }
}

/// A delivery status to its proto value: clients see a message held by a dispatcher, or being
/// handed over, as queued until the carrier answers.
pub fn delivery_status(status: DeliveryStatus) -> proto::DeliveryStatus {
    use proto::DeliveryStatus as P;
    match status {
        DeliveryStatus::Scheduled
        | DeliveryStatus::Queued
        | DeliveryStatus::Claimed
        | DeliveryStatus::Sending => P::Queued,
        DeliveryStatus::Submitted => P::Submitted,
        DeliveryStatus::MaybeSent => P::MaybeSent,
        DeliveryStatus::Delivered => P::Delivered,
        DeliveryStatus::Failed => P::Failed,
        DeliveryStatus::Canceled => P::Canceled,
    }
}

/// A notification status to its proto value.
pub fn notification_status(status: NotificationStatus) -> proto::NotificationStatus {
    use proto::NotificationStatus as P;
    match status {
        NotificationStatus::Scheduled => P::Scheduled,
        NotificationStatus::Queued => P::Queued,
        NotificationStatus::Submitted => P::Submitted,
        NotificationStatus::MaybeSent => P::MaybeSent,
        NotificationStatus::Delivered => P::Delivered,
        NotificationStatus::Failed => P::Failed,
        NotificationStatus::Canceled => P::Canceled,
    }
}

/// A check result to its proto value.
pub fn check_result(result: CheckResult) -> proto::CheckResult {
    use proto::CheckResult as P;
    match result {
        CheckResult::Approved => P::Approved,
        CheckResult::WrongCode => P::WrongCode,
        CheckResult::Expired => P::Expired,
        CheckResult::TooManyAttempts => P::TooManyAttempts,
        CheckResult::Canceled => P::Canceled,
    }
}

fn event_kind(kind: EventKind) -> proto::EventType {
    use proto::EventType as P;
    match kind {
        EventKind::VerificationCreated => P::VerificationCreated,
        EventKind::MessageQueued => P::MessageQueued,
        EventKind::MessageSubmitted => P::MessageSubmitted,
        EventKind::MessageDelivered => P::MessageDelivered,
        EventKind::MessageFailed => P::MessageFailed,
        EventKind::CheckFailed => P::CheckFailed,
        EventKind::VerificationApproved => P::VerificationApproved,
        EventKind::VerificationExpired => P::VerificationExpired,
        EventKind::VerificationCanceled => P::VerificationCanceled,
        EventKind::VerificationMaxAttemptsReached => P::VerificationMaxAttemptsReached,
        EventKind::MessageCanceled => P::MessageCanceled,
        EventKind::MessageRerouted => P::MessageRerouted,
        EventKind::FallbackStep => P::FallbackStep,
        EventKind::NotificationScheduled => P::NotificationScheduled,
        EventKind::MessageMaybeSent => P::MessageMaybeSent,
        EventKind::MessageRequeued => P::MessageRequeued,
        EventKind::DestinationBlocked => P::DestinationBlocked,
        EventKind::BlockLifted => P::BlockLifted,
        EventKind::CampaignStarted => P::CampaignStarted,
        EventKind::CampaignPaused => P::CampaignPaused,
        EventKind::CampaignResumed => P::CampaignResumed,
        EventKind::CampaignCanceled => P::CampaignCanceled,
        EventKind::CampaignFinished => P::CampaignFinished,
    }
}

/// A campaign status to the proto enum.
pub fn campaign_status(status: CampaignStatus) -> proto::CampaignStatus {
    use proto::CampaignStatus as P;
    match status {
        CampaignStatus::Ingesting => P::Ingesting,
        CampaignStatus::Scheduled => P::Scheduled,
        CampaignStatus::Running => P::Running,
        CampaignStatus::Paused => P::Paused,
        CampaignStatus::Completed => P::Completed,
        CampaignStatus::Canceled => P::Canceled,
        CampaignStatus::Expired => P::Expired,
    }
}

/// A message to an attempt.
pub fn attempt(message: &OutboxMessage) -> proto::Attempt {
    proto::Attempt {
        message_id: message.id.clone(),
        channel: channel(message.channel) as i32,
        carrier: message.carrier.clone(),
        delivery_status: delivery_status(message.status) as i32,
        carrier_message_id: message.carrier_message_id.clone().unwrap_or_default(),
        detail: message.detail.clone(),
        created_at: Some(timestamp(message.created_at_ms)),
        updated_at: Some(timestamp(message.updated_at_ms)),
    }
}

/// A verification and its messages to the proto message.
pub fn verification(view: &VerificationView) -> proto::Verification {
    let record = &view.verification;
    let classification = serde_json::from_str::<StoredClassification>(&record.classification_json)
        .map(StoredClassification::into_proto)
        .unwrap_or_else(|error| {
            tracing::warn!(verification = %record.id, %error, "stored classification unreadable");
            proto::Classification {
                e164: record.to_e164.clone(),
                valid: true,
                ..Default::default()
            }
        });
    proto::Verification {
        id: record.id.clone(),
        to: record.to_e164.clone(),
        status: verification_status(record.status) as i32,
        channel: channel(record.channel) as i32,
        classification: Some(classification),
        attempts: view.messages.iter().map(attempt).collect(),
        created_at: Some(timestamp(record.created_at_ms)),
        expires_at: Some(timestamp(record.expires_at_ms)),
        checks_left: record.checks_left(),
        sends_left: record.sends_left(),
        code_length: record.code_length,
        locale: record.locale.clone(),
        workflow: record.workflow.workflow.clone(),
        workflow_step: record.workflow.step + 1,
        strategy: record.workflow.strategy.clone(),
        decision: record.decision.clone(),
        service_id: record.service_id.clone(),
        app_hash: record.app_hash.clone(),
        domain: record.autofill_domain.clone(),
    }
}

/// A recorded event to the proto message: its subject's id and status go in the verification
/// or the notification fields.
pub fn event(recorded: &RecordedEvent) -> proto::Event {
    let event = &recorded.event;
    let mut verification_id = String::new();
    let mut notification_id = String::new();
    let mut block_id = String::new();
    let mut campaign_id = String::new();
    match &event.subject {
        Subject::Verification(id) => verification_id.clone_from(id),
        Subject::Notification(id) => notification_id.clone_from(id),
        Subject::Block(id) => block_id.clone_from(id),
        Subject::Campaign(id) => campaign_id.clone_from(id),
    }
    let campaign_status = match event.subject_status {
        SubjectStatus::Campaign(Some(status)) => self::campaign_status(status),
        _ => proto::CampaignStatus::Unspecified,
    };
    let (verification_status, notification_status) = match event.subject_status {
        SubjectStatus::Verification(status) => (
            self::verification_status(status),
            proto::NotificationStatus::Unspecified,
        ),
        SubjectStatus::Notification(status) => (
            proto::VerificationStatus::Unspecified,
            self::notification_status(status),
        ),
        SubjectStatus::Block(_) | SubjectStatus::Campaign(_) => (
            proto::VerificationStatus::Unspecified,
            proto::NotificationStatus::Unspecified,
        ),
    };
    let message = event.message.as_ref();
    proto::Event {
        cursor: recorded.cursor.max(0) as u64,
        r#type: event_kind(event.kind) as i32,
        verification_id,
        notification_id,
        message_id: message.map(|m| m.id.clone()).unwrap_or_default(),
        channel: message.map_or(proto::Channel::Unspecified, |m| channel(m.channel)) as i32,
        carrier: message.map(|m| m.carrier.clone()).unwrap_or_default(),
        delivery_status: message.map_or(proto::DeliveryStatus::Unspecified, |m| {
            delivery_status(m.status)
        }) as i32,
        verification_status: verification_status as i32,
        notification_status: notification_status as i32,
        detail: event.detail.clone(),
        time: Some(timestamp(event.at_ms)),
        block_id,
        service_id: event.service_id.clone(),
        campaign_id,
        campaign_status: campaign_status as i32,
    }
}

/// A notification and its message to the proto message.
pub fn notification(view: &NotificationView) -> proto::Notification {
    let record = &view.notification;
    let message = &view.message;
    proto::Notification {
        id: record.id.clone(),
        to: record.to_e164.clone(),
        category: category(record.category) as i32,
        program_id: record.program_id.clone(),
        status: notification_status(NotificationStatus::of(message.status)) as i32,
        channel: channel(message.channel) as i32,
        carrier: message.carrier.clone(),
        carrier_message_id: message.carrier_message_id.clone().unwrap_or_default(),
        detail: message.detail.clone(),
        send_at: Some(timestamp(message.due_at_ms)),
        created_at: Some(timestamp(record.created_at_ms)),
        updated_at: Some(timestamp(message.updated_at_ms)),
        decision: record.decision.clone(),
        service_id: record.service_id.clone(),
    }
}

/// A failed webhook delivery to the proto message.
pub fn webhook_delivery(retry: &crate::store::WebhookRetry) -> proto::WebhookDelivery {
    use proto::WebhookDeliveryStatus as P;
    let status = match (retry.failed, retry.attempts) {
        (true, _) => P::Failed,
        (false, 0) => P::Waiting,
        (false, _) => P::Retrying,
    };
    proto::WebhookDelivery {
        webhook_id: format!("evt_{}", retry.cursor),
        event_cursor: retry.cursor.max(0) as u64,
        event_type: retry.event_type.clone(),
        subject_id: retry.subject_id.clone(),
        status: status as i32,
        attempts: retry.attempts,
        last_error: retry.last_error.clone(),
        next_attempt_at: (status == P::Retrying).then(|| timestamp(retry.next_attempt_at_ms)),
        first_failed_at: Some(timestamp(retry.first_failed_at_ms)),
    }
}

/// A service to the proto message.
pub fn service(service: &crate::domain::Service) -> proto::Service {
    proto::Service {
        id: service.id.clone(),
        friendly_name: service.friendly_name.clone(),
        code_length: service.code_length,
        code_lifetime_seconds: service.code_lifetime.as_secs() as u32,
        max_checks: service.max_checks,
        max_sends: service.max_sends,
        channels: service
            .channels
            .iter()
            .map(|c| channel(*c) as i32)
            .collect(),
        default_locale: service.default_locale.clone(),
        templates: service
            .templates
            .iter()
            .map(|t| proto::MessageTemplate {
                locale: t.locale.clone(),
                channel: channel(t.channel) as i32,
                text: t.text.clone(),
            })
            .collect(),
        workflow: service
            .workflow
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        configured: service.configured,
        created_at: service.created_at_ms.map(timestamp),
        updated_at: service.updated_at_ms.map(timestamp),
        app_hash: service.app_hash.clone(),
        domain: service.domain.clone(),
        webhook_url: service.webhook_url.clone(),
        webhook_secret: service.webhook_secret.expose().to_string(),
        abuse_level: if service.strict_abuse {
            "strict".into()
        } else {
            String::new()
        },
    }
}

/// A proto channel that a service or template names; `field` says where, for the error.
fn named_channel(value: i32, field: String) -> Result<Channel, (String, String)> {
    match proto::Channel::try_from(value) {
        Ok(proto::Channel::Sms) => Ok(Channel::Sms),
        Ok(proto::Channel::Voice) => Ok(Channel::Voice),
        _ => Err((
            field,
            format!("{value} is not CHANNEL_SMS or CHANNEL_VOICE"),
        )),
    }
}

/// A proto service to settings (zero numbers and an empty locale unset); a wrong channel
/// value is `(field, reason)`.
pub fn service_settings(
    service: &proto::Service,
) -> Result<crate::domain::ServiceSettings, (String, String)> {
    let set = |n: u32| (n != 0).then_some(n);
    Ok(crate::domain::ServiceSettings {
        id: service.id.trim().to_string(),
        friendly_name: service.friendly_name.clone(),
        code_length: set(service.code_length),
        code_lifetime_seconds: set(service.code_lifetime_seconds).map(u64::from),
        max_checks: set(service.max_checks),
        max_sends: set(service.max_sends),
        channels: service
            .channels
            .iter()
            .enumerate()
            .map(|(i, value)| named_channel(*value, format!("service.channels[{i}]")))
            .collect::<Result<_, _>>()?,
        default_locale: Some(service.default_locale.trim().to_string())
            .filter(|locale| !locale.is_empty()),
        templates: service
            .templates
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Ok::<_, (String, String)>(crate::domain::MessageTemplate {
                    locale: t.locale.trim().to_string(),
                    channel: named_channel(t.channel, format!("service.templates[{i}].channel"))?,
                    text: t.text.clone(),
                })
            })
            .collect::<Result<_, _>>()?,
        workflow: service.workflow.trim().to_string(),
        app_hash: service.app_hash.trim().to_string(),
        domain: service.domain.trim().to_string(),
        webhook_url: service.webhook_url.trim().to_string(),
        webhook_secret: match service.webhook_secret.trim() {
            "" => crate::domain::webhook::WebhookSecret::default(),
            text => crate::domain::webhook::WebhookSecret::parse(text)
                .map_err(|reason| ("service.webhook_secret".to_string(), reason))?,
        },
        webhook_secret_env: None,
        abuse_level: service.abuse_level.trim().to_string(),
    })
}

/// A category to its proto value.
pub fn category(category: Category) -> proto::MessageCategory {
    use proto::MessageCategory as P;
    match category {
        Category::Otp => P::Otp,
        Category::Transactional => P::Transactional,
        Category::Alert => P::Alert,
        Category::Marketing => P::Marketing,
    }
}

/// A proto category to the policy's; `None` for unspecified or unknown values.
pub fn category_from_proto(value: i32) -> Option<Category> {
    use proto::MessageCategory as P;
    match P::try_from(value) {
        Ok(P::Otp) => Some(Category::Otp),
        Ok(P::Transactional) => Some(Category::Transactional),
        Ok(P::Alert) => Some(Category::Alert),
        Ok(P::Marketing) => Some(Category::Marketing),
        _ => None,
    }
}

/// A block to the proto message, explained as of `now_ms`.
pub fn block(block: &verify_policy::abuse::Block, now_ms: i64) -> proto::Block {
    proto::Block {
        id: block.id.clone(),
        target_kind: block.target.kind.as_str().to_string(),
        target: block.target.value.clone(),
        rule: block.rule.as_str().to_string(),
        reason: block.reason.clone(),
        strike: block.strike,
        enforced: block.enforced,
        started: Some(timestamp(block.started_ms)),
        ends: Some(timestamp(block.ends_ms)),
        lifted: block.lifted_ms.map(timestamp),
        lifted_by: block.lifted_by.clone().unwrap_or_default(),
        explanation: block.explain(now_ms),
    }
}

/// A statistics dimension from its proto value; `None` for unset or unknown values.
pub fn dimension_from_proto(value: i32) -> Option<Dimension> {
    use proto::StatsDimension as P;
    Some(match P::try_from(value).ok()? {
        P::Unspecified => return None,
        P::Country => Dimension::Country,
        P::Carrier => Dimension::Carrier,
        P::Channel => Dimension::Channel,
        P::Service => Dimension::Service,
        P::Day => Dimension::Day,
        P::Hour => Dimension::Hour,
    })
}

/// A group's figures (`group` empty for the total).
pub fn conversion_figures(group: &GroupKey, tally: &Tally) -> proto::ConversionStats {
    let channel = group
        .channel
        .as_deref()
        .and_then(Channel::parse)
        .map_or(proto::Channel::Unspecified, channel);
    let quantile = |q| tally.approval_time_quantile_ms(q).unwrap_or(0).max(0) as u64;
    proto::ConversionStats {
        region_code: group.country.clone().unwrap_or_default(),
        carrier: group.carrier.clone().unwrap_or_default(),
        channel: channel as i32,
        service_id: group.service_id.clone().unwrap_or_default(),
        period_start: group.period_start_ms.map(timestamp),
        verifications: tally.verifications,
        approved: tally.approved,
        conversion_rate: tally.conversion_rate().unwrap_or(0.0),
        sent: tally.sent,
        delivered: tally.delivered,
        failed: tally.failed,
        delivery_rate: tally.delivery_rate().unwrap_or(0.0),
        approval_time_p50_ms: quantile(0.5),
        approval_time_p90_ms: quantile(0.9),
        fallback_sent: tally.fallback_sent,
        fallback_approved: tally.fallback_approved,
        fallback_yield: tally.fallback_yield().unwrap_or(0.0),
        cost: tally.cost_micros as f64 / 1e6,
        sent_without_cost: tally.sent.saturating_sub(tally.costed_sent),
    }
}

/// A statistics answer.
pub fn conversion_stats(answer: &StatsAnswer) -> proto::GetConversionStatsResponse {
    proto::GetConversionStatsResponse {
        rows: answer
            .rows
            .iter()
            .map(|row| conversion_figures(&row.group, &row.tally))
            .collect(),
        total: Some(conversion_figures(&GroupKey::default(), &answer.total)),
        start_time: Some(timestamp(answer.start_ms)),
        end_time: Some(timestamp(answer.end_ms)),
        counted_through_cursor: answer.counted_through_cursor.max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_milliseconds_and_handle_negative_times() {
        assert_eq!(
            timestamp(1_500),
            Timestamp {
                seconds: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            timestamp(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
    }

    #[test]
    fn stored_classification_round_trips() {
        let c = verify_policy::classify("+91 98123 45678", None);
        let json = serde_json::to_string(&StoredClassification::from_classification(&c)).unwrap();
        let back: StoredClassification = serde_json::from_str(&json).unwrap();
        let proto = back.into_proto();
        assert_eq!(proto.e164, "+919812345678");
        assert_eq!(proto.line_type, proto::LineType::Mobile as i32);
        assert!(proto.valid);
    }
}
