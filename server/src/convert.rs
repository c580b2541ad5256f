//! Conversions between stored records, policy types and the generated `verify.v1` messages.

use serde::{Deserialize, Serialize};
use verify_carrier::Channel;
use verify_policy::{Classification, InvalidReason, LineType};
use verify_proto::Timestamp;

use crate::proto;
use crate::store::{
    CheckResult, DeliveryStatus, EventRecord, EventType, MessageRecord, VerificationRecord,
    VerificationStatus,
};

/// Unix milliseconds to a protobuf timestamp.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
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
    proto::Classification {
        input: c.input.clone(),
        valid: c.valid,
        e164: c.e164.clone().unwrap_or_default(),
        region_code: c.region_code.clone().unwrap_or_default(),
        country_calling_code: c.country_calling_code,
        line_type: line_type(c.line_type) as i32,
        carrier: c.carrier.clone().unwrap_or_default(),
        time_zones: c.time_zones.clone(),
        recommended_channel: c
            .recommended_channel
            .map_or(proto::Channel::Unspecified, channel) as i32,
        invalid_reason: invalid_reason(c.invalid_reason) as i32,
        detail: c.detail.clone(),
        national_format: c.national_format.clone().unwrap_or_default(),
        international_format: c.international_format.clone().unwrap_or_default(),
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

/// A delivery status to its proto value (`sending` is still `queued` to clients).
pub fn delivery_status(status: DeliveryStatus) -> proto::DeliveryStatus {
    use proto::DeliveryStatus as P;
    match status {
        DeliveryStatus::Queued | DeliveryStatus::Sending => P::Queued,
        DeliveryStatus::Submitted => P::Submitted,
        DeliveryStatus::Delivered => P::Delivered,
        DeliveryStatus::Failed => P::Failed,
        DeliveryStatus::Canceled => P::Canceled,
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

fn event_type(event_type: EventType) -> proto::EventType {
    use proto::EventType as P;
    match event_type {
        EventType::VerificationCreated => P::VerificationCreated,
        EventType::MessageQueued => P::MessageQueued,
        EventType::MessageSubmitted => P::MessageSubmitted,
        EventType::MessageDelivered => P::MessageDelivered,
        EventType::MessageFailed => P::MessageFailed,
        EventType::CheckFailed => P::CheckFailed,
        EventType::VerificationApproved => P::VerificationApproved,
        EventType::VerificationExpired => P::VerificationExpired,
        EventType::VerificationCanceled => P::VerificationCanceled,
        EventType::VerificationMaxAttemptsReached => P::VerificationMaxAttemptsReached,
        EventType::MessageCanceled => P::MessageCanceled,
        EventType::MessageRerouted => P::MessageRerouted,
        EventType::FallbackStep => P::FallbackStep,
        EventType::NotificationScheduled => P::NotificationScheduled,
    }
}

/// A stored message to an attempt.
pub fn attempt(message: &MessageRecord) -> proto::Attempt {
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

/// A stored verification and its messages to the proto message.
pub fn verification(
    record: &VerificationRecord,
    messages: &[MessageRecord],
) -> proto::Verification {
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
        attempts: messages.iter().map(attempt).collect(),
        created_at: Some(timestamp(record.created_at_ms)),
        expires_at: Some(timestamp(record.expires_at_ms)),
        checks_left: record.checks_left(),
        sends_left: record.sends_left(),
        code_length: record.code_length,
        locale: record.locale.clone(),
        workflow: record.workflow.clone(),
        workflow_step: record.step + 1,
        strategy: record.strategy.clone(),
        decision: record.decision.clone(),
    }
}

/// A stored event to the proto message.
pub fn event(record: &EventRecord) -> proto::Event {
    // A notification's events have the notification as their subject.
    let notification = record
        .verification_id
        .starts_with(crate::store::NOTIFICATION_ID_PREFIX);
    let (verification_id, notification_id) = if notification {
        (String::new(), record.verification_id.clone())
    } else {
        (record.verification_id.clone(), String::new())
    };
    proto::Event {
        cursor: record.cursor.max(0) as u64,
        r#type: event_type(record.event_type) as i32,
        verification_id,
        notification_id,
        message_id: record.message_id.clone().unwrap_or_default(),
        channel: record.channel.map_or(proto::Channel::Unspecified, channel) as i32,
        carrier: record.carrier.clone().unwrap_or_default(),
        delivery_status: record
            .delivery_status
            .map_or(proto::DeliveryStatus::Unspecified, delivery_status)
            as i32,
        verification_status: if notification {
            proto::VerificationStatus::Unspecified as i32
        } else {
            verification_status(record.verification_status) as i32
        },
        detail: record.detail.clone(),
        time: Some(timestamp(record.created_at_ms)),
    }
}

/// A stored notification to the proto message.
pub fn notification(record: &crate::store::NotificationRecord) -> proto::Notification {
    use crate::store::NotificationStatus as S;
    use proto::NotificationStatus as P;
    let status = match record.status {
        S::Scheduled => P::Scheduled,
        S::Queued | S::Sending => P::Queued,
        S::Submitted => P::Submitted,
        S::Delivered => P::Delivered,
        S::Failed => P::Failed,
    };
    proto::Notification {
        id: record.id.clone(),
        to: record.to_e164.clone(),
        category: category_to_proto(&record.category) as i32,
        program_id: record.program_id.clone(),
        status: status as i32,
        channel: channel(record.channel) as i32,
        carrier: record.carrier.clone(),
        carrier_message_id: record.carrier_message_id.clone().unwrap_or_default(),
        detail: record.detail.clone(),
        send_at: Some(timestamp(record.due_at_ms)),
        created_at: Some(timestamp(record.created_at_ms)),
        updated_at: Some(timestamp(record.updated_at_ms)),
        decision: record.decision.clone(),
    }
}

/// A stored category name (`MARKETING`) to its proto value.
pub fn category_to_proto(name: &str) -> proto::MessageCategory {
    use proto::MessageCategory as P;
    match name {
        "OTP" => P::Otp,
        "TRANSACTIONAL" => P::Transactional,
        "ALERT" => P::Alert,
        "MARKETING" => P::Marketing,
        _ => P::Unspecified,
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
