//! The JSON form of the generated messages, as `verifyctl --json` prints it: the proto3 JSON
//! mapping with proto field names and every field printed.

use serde_json::{Value, json};
use verify_proto::Timestamp;
use verify_proto::v1::{
    Attempt, Channel, CheckRequest, CheckResponse, CheckResult, Classification, ClassifyResponse,
    DeliveryStatus, Event, EventType, GetVerificationResponse, InvalidReason, LineType,
    Verification, VerificationStatus, WatchEventsResponse, check_request,
};

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

#[test]
fn classification_has_every_field_under_its_proto_name() {
    let response = ClassifyResponse {
        classification: Some(Classification {
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
        }),
    };
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
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
fn unset_fields_print_at_their_defaults_and_unset_messages_are_left_out() {
    let response = GetVerificationResponse {
        verification: Some(Verification::default()),
    };
    let value = serde_json::to_value(&response).unwrap();
    let verification = value["verification"].as_object().unwrap();
    assert_eq!(verification["id"], "");
    assert_eq!(verification["checks_left"], 0);
    assert_eq!(verification["attempts"], json!([]));
    assert_eq!(verification["status"], "VERIFICATION_STATUS_UNSPECIFIED");
    assert!(!verification.contains_key("classification"), "{value}");
    assert!(!verification.contains_key("created_at"), "{value}");
    assert_eq!(
        serde_json::to_value(GetVerificationResponse { verification: None }).unwrap(),
        json!({})
    );
}

#[test]
fn check_response_nests_the_verification_and_its_attempts_in_field_order() {
    let response = CheckResponse {
        result: CheckResult::WrongCode as i32,
        checks_left: 4,
        verification: Some(Verification {
            id: "vf_1".into(),
            status: VerificationStatus::Pending as i32,
            attempts: vec![Attempt {
                message_id: "msg_1".into(),
                channel: Channel::Voice as i32,
                delivery_status: DeliveryStatus::Delivered as i32,
                created_at: at(1_764_033_600),
                ..Attempt::default()
            }],
            expires_at: Some(Timestamp {
                seconds: 1_764_034_200,
                nanos: 250_000_000,
            }),
            ..Verification::default()
        }),
    };
    let line = serde_json::to_string(&response).unwrap();
    assert!(
        line.starts_with(
            r#"{"result":"CHECK_RESULT_WRONG_CODE","checks_left":4,"verification":{"id":"vf_1","#
        ),
        "{line}"
    );
    let value: Value = serde_json::from_str(&line).unwrap();
    let attempt = &value["verification"]["attempts"][0];
    assert_eq!(attempt["channel"], "CHANNEL_VOICE");
    assert_eq!(attempt["delivery_status"], "DELIVERY_STATUS_DELIVERED");
    assert_eq!(attempt["created_at"], "2025-11-25T01:20:00Z");
    assert!(attempt.get("updated_at").is_none(), "{attempt}");
    assert_eq!(
        value["verification"]["expires_at"],
        "2025-11-25T01:30:00.250Z"
    );
}

#[test]
fn cursors_are_strings_that_keep_every_digit() {
    let response = WatchEventsResponse {
        event: Some(Event {
            cursor: u64::MAX,
            r#type: EventType::MessageFailed as i32,
            time: at(1_764_033_600),
            ..Event::default()
        }),
    };
    let line = serde_json::to_string(&response).unwrap();
    assert!(
        line.contains(r#""cursor":"18446744073709551615""#),
        "{line}"
    );
    assert!(
        line.contains(r#""type":"EVENT_TYPE_MESSAGE_FAILED""#),
        "{line}"
    );
    let back: WatchEventsResponse = serde_json::from_str(&line).unwrap();
    assert_eq!(back, response);
}

#[test]
fn parsing_takes_proto_and_lower_camel_case_names_and_the_oneof() {
    let snake: CheckRequest =
        serde_json::from_str(r#"{"verification_id":"vf_1","code":"123456"}"#).unwrap();
    let camel: CheckRequest =
        serde_json::from_str(r#"{"verificationId":"vf_1","code":"123456"}"#).unwrap();
    assert_eq!(snake, camel);
    assert_eq!(
        snake.target,
        Some(check_request::Target::VerificationId("vf_1".into()))
    );
    let by_number: CheckRequest =
        serde_json::from_str(r#"{"to":"+447700900123","code":"123456"}"#).unwrap();
    assert_eq!(
        by_number.target,
        Some(check_request::Target::To("+447700900123".into()))
    );
}

#[test]
fn parsing_names_the_field_it_does_not_know() {
    let error = serde_json::from_str::<CheckRequest>(r#"{"verification":"vf_1"}"#).unwrap_err();
    assert!(error.to_string().contains("verification"), "{error}");
}

/// pbjson refuses to print an enum value this build does not know (a newer server's), where
/// the proto3 mapping would print its number; `verifyctl --json` reports it as an error.
#[test]
fn an_unknown_enum_value_is_an_error_naming_it() {
    let event = Event {
        r#type: 99,
        ..Event::default()
    };
    let error = serde_json::to_string(&event).unwrap_err();
    assert!(error.to_string().contains("99"), "{error}");
}
