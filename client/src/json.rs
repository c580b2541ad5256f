//! JSON form of verifyd's responses, as `verifyctl --json` prints them, one object per line.
//!
//! Field names are the proto field names (snake_case); every field is present, unset ones at
//! their proto default (`""`, `0`, `false`, `[]`) and unset messages and timestamps as `null`.
//! Enum values are their proto names (`"CHANNEL_SMS"`), or the bare number when this client
//! does not know the value (a newer server); timestamps are RFC 3339 in UTC (`"2026-11-25T01:27:00Z"`).
//! `uint64` cursors are JSON numbers, not the strings of the canonical proto3 JSON mapping.
//! Keys print in alphabetical order (serde_json's default map), the same on every run.

use chrono::{DateTime, SecondsFormat};
use prost_types::Timestamp;
use serde_json::{Value, json};

use crate::proto::v1::{
    Attempt, CancelVerificationResponse, Channel, CheckResponse, CheckResult, Classification,
    ClassifyResponse, DeliveryStatus, Event, EventType, GetVerificationResponse, InvalidReason,
    LineType, Verification, VerificationStatus, VerifyResponse, WatchEventsResponse,
};

/// A message that has a JSON form.
pub trait ToJson {
    /// The message as a JSON value, in the shape the module documentation describes.
    fn to_json(&self) -> Value;
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToJson::to_json)
    }
}

impl ToJson for Timestamp {
    fn to_json(&self) -> Value {
        let mut normalized = *self;
        normalized.normalize();
        u32::try_from(normalized.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(normalized.seconds, nanos))
            .map_or(Value::Null, |time| {
                Value::String(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            })
    }
}

/// The proto name of an enum value, or the number itself when it is not a known value.
fn enum_name<E: TryFrom<i32>>(value: i32, name: fn(&E) -> &'static str) -> Value {
    E::try_from(value).map_or_else(|_| json!(value), |known| json!(name(&known)))
}

impl ToJson for Classification {
    fn to_json(&self) -> Value {
        json!({
            "input": self.input,
            "valid": self.valid,
            "e164": self.e164,
            "region_code": self.region_code,
            "country_calling_code": self.country_calling_code,
            "line_type": enum_name(self.line_type, LineType::as_str_name),
            "carrier": self.carrier,
            "time_zones": self.time_zones,
            "recommended_channel": enum_name(self.recommended_channel, Channel::as_str_name),
            "invalid_reason": enum_name(self.invalid_reason, InvalidReason::as_str_name),
            "detail": self.detail,
            "national_format": self.national_format,
            "international_format": self.international_format,
        })
    }
}

impl ToJson for Attempt {
    fn to_json(&self) -> Value {
        json!({
            "message_id": self.message_id,
            "channel": enum_name(self.channel, Channel::as_str_name),
            "carrier": self.carrier,
            "delivery_status": enum_name(self.delivery_status, DeliveryStatus::as_str_name),
            "carrier_message_id": self.carrier_message_id,
            "detail": self.detail,
            "created_at": self.created_at.to_json(),
            "updated_at": self.updated_at.to_json(),
        })
    }
}

impl ToJson for Verification {
    fn to_json(&self) -> Value {
        let attempts: Vec<Value> = self.attempts.iter().map(ToJson::to_json).collect();
        json!({
            "id": self.id,
            "to": self.to,
            "status": enum_name(self.status, VerificationStatus::as_str_name),
            "channel": enum_name(self.channel, Channel::as_str_name),
            "classification": self.classification.to_json(),
            "attempts": attempts,
            "created_at": self.created_at.to_json(),
            "expires_at": self.expires_at.to_json(),
            "checks_left": self.checks_left,
            "sends_left": self.sends_left,
            "code_length": self.code_length,
            "locale": self.locale,
            "workflow": self.workflow,
            "workflow_step": self.workflow_step,
            "strategy": self.strategy,
            "decision": self.decision,
        })
    }
}

impl ToJson for Event {
    fn to_json(&self) -> Value {
        json!({
            "cursor": self.cursor,
            "type": enum_name(self.r#type, EventType::as_str_name),
            "verification_id": self.verification_id,
            "notification_id": self.notification_id,
            "message_id": self.message_id,
            "channel": enum_name(self.channel, Channel::as_str_name),
            "carrier": self.carrier,
            "delivery_status": enum_name(self.delivery_status, DeliveryStatus::as_str_name),
            "verification_status":
                enum_name(self.verification_status, VerificationStatus::as_str_name),
            "detail": self.detail,
            "time": self.time.to_json(),
        })
    }
}

impl ToJson for ClassifyResponse {
    fn to_json(&self) -> Value {
        json!({ "classification": self.classification.to_json() })
    }
}

impl ToJson for VerifyResponse {
    fn to_json(&self) -> Value {
        json!({
            "verification": self.verification.to_json(),
            "resent": self.resent,
            "replayed": self.replayed,
            "decision": self.decision,
        })
    }
}

impl ToJson for CheckResponse {
    fn to_json(&self) -> Value {
        json!({
            "result": enum_name(self.result, CheckResult::as_str_name),
            "checks_left": self.checks_left,
            "verification": self.verification.to_json(),
        })
    }
}

impl ToJson for GetVerificationResponse {
    fn to_json(&self) -> Value {
        json!({ "verification": self.verification.to_json() })
    }
}

impl ToJson for CancelVerificationResponse {
    fn to_json(&self) -> Value {
        json!({ "verification": self.verification.to_json() })
    }
}

impl ToJson for WatchEventsResponse {
    fn to_json(&self) -> Value {
        json!({ "event": self.event.to_json() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            at(1_764_033_600, 0).to_json(),
            json!("2025-11-25T01:20:00Z")
        );
        assert_eq!(
            at(1_764_033_600, 250_000_000).to_json(),
            json!("2025-11-25T01:20:00.250Z")
        );
        assert_eq!(at(0, 1).to_json(), json!("1970-01-01T00:00:00.000000001Z"));
    }

    #[test]
    fn timestamps_with_negative_nanos_are_normalized() {
        assert_eq!(
            at(10, -500_000_000).to_json(),
            json!("1970-01-01T00:00:09.500Z")
        );
    }

    #[test]
    fn unset_timestamps_and_messages_are_null() {
        assert_eq!(None::<Timestamp>.to_json(), Value::Null);
        let response = GetVerificationResponse { verification: None };
        assert_eq!(response.to_json(), json!({ "verification": null }));
    }

    #[test]
    fn out_of_range_timestamps_are_null() {
        assert_eq!(at(i64::MAX, 0).to_json(), Value::Null);
    }

    #[test]
    fn unknown_enum_values_print_as_numbers() {
        let event = Event {
            r#type: 99,
            ..Event::default()
        };
        assert_eq!(event.to_json()["type"], json!(99));
        assert_eq!(event.to_json()["channel"], json!("CHANNEL_UNSPECIFIED"));
    }

    #[test]
    fn classification_has_every_field_with_proto_names() {
        let classification = Classification {
            input: "+91 98123 45678".into(),
            valid: true,
            e164: "+919812345678".into(),
            region_code: "IN".into(),
            country_calling_code: 91,
            line_type: LineType::Mobile as i32,
            carrier: "Airtel".into(),
            time_zones: vec!["Asia/Kolkata".into()],
            recommended_channel: Channel::Sms as i32,
            invalid_reason: InvalidReason::Unspecified as i32,
            detail: String::new(),
            national_format: "098123 45678".into(),
            international_format: "+91 98123 45678".into(),
        };
        assert_eq!(
            ClassifyResponse {
                classification: Some(classification)
            }
            .to_json(),
            json!({ "classification": {
                "input": "+91 98123 45678",
                "valid": true,
                "e164": "+919812345678",
                "region_code": "IN",
                "country_calling_code": 91,
                "line_type": "LINE_TYPE_MOBILE",
                "carrier": "Airtel",
                "time_zones": ["Asia/Kolkata"],
                "recommended_channel": "CHANNEL_SMS",
                "invalid_reason": "INVALID_REASON_UNSPECIFIED",
                "detail": "",
                "national_format": "098123 45678",
                "international_format": "+91 98123 45678",
            }})
        );
    }

    #[test]
    fn check_response_nests_verification_and_attempts() {
        let response = CheckResponse {
            result: CheckResult::WrongCode as i32,
            checks_left: 4,
            verification: Some(Verification {
                id: "vf_1".into(),
                to: "+447700900123".into(),
                status: VerificationStatus::Pending as i32,
                channel: Channel::Voice as i32,
                classification: None,
                attempts: vec![Attempt {
                    message_id: "msg_1".into(),
                    channel: Channel::Voice as i32,
                    carrier: "sim".into(),
                    delivery_status: DeliveryStatus::Delivered as i32,
                    carrier_message_id: "c-9".into(),
                    detail: "answered".into(),
                    created_at: at(1_764_033_600, 0),
                    updated_at: at(1_764_033_605, 0),
                }],
                created_at: at(1_764_033_600, 0),
                expires_at: at(1_764_034_200, 0),
                checks_left: 4,
                sends_left: 2,
                code_length: 6,
                locale: "en".into(),
                workflow: "voice(10m)".into(),
                workflow_step: 1,
                strategy: "ordered".into(),
                decision: "voice for a landline".into(),
            }),
        };
        assert_eq!(
            response.to_json(),
            json!({
                "result": "CHECK_RESULT_WRONG_CODE",
                "checks_left": 4,
                "verification": {
                    "id": "vf_1",
                    "to": "+447700900123",
                    "status": "VERIFICATION_STATUS_PENDING",
                    "channel": "CHANNEL_VOICE",
                    "classification": null,
                    "attempts": [{
                        "message_id": "msg_1",
                        "channel": "CHANNEL_VOICE",
                        "carrier": "sim",
                        "delivery_status": "DELIVERY_STATUS_DELIVERED",
                        "carrier_message_id": "c-9",
                        "detail": "answered",
                        "created_at": "2025-11-25T01:20:00Z",
                        "updated_at": "2025-11-25T01:20:05Z",
                    }],
                    "created_at": "2025-11-25T01:20:00Z",
                    "expires_at": "2025-11-25T01:30:00Z",
                    "checks_left": 4,
                    "sends_left": 2,
                    "code_length": 6,
                    "locale": "en",
                    "workflow": "voice(10m)",
                    "workflow_step": 1,
                    "strategy": "ordered",
                    "decision": "voice for a landline",
                },
            })
        );
    }

    #[test]
    fn events_keep_large_cursors_exact() {
        let event = WatchEventsResponse {
            event: Some(Event {
                cursor: u64::MAX,
                r#type: EventType::MessageFailed as i32,
                verification_id: "vf_1".into(),
                message_id: "msg_1".into(),
                channel: Channel::Sms as i32,
                carrier: "smpp-a".into(),
                delivery_status: DeliveryStatus::Failed as i32,
                verification_status: VerificationStatus::Pending as i32,
                detail: "absent subscriber".into(),
                time: at(1_764_033_600, 0),
                notification_id: String::new(),
                notification_status: 0,
            }),
        };
        let line = serde_json::to_string(&event.to_json()).unwrap();
        assert!(line.contains("\"cursor\":18446744073709551615"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(
            event.to_json()["event"]["type"],
            json!("EVENT_TYPE_MESSAGE_FAILED")
        );
    }
}
