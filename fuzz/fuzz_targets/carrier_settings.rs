//! Each carrier kind's settings, as the server hands them over from a `[[carriers]]` table:
//! `CarrierRegistry::build(kind, settings)` with fuzzed JSON, for every kind verifyd registers
//! (and an unknown one). Building starts nothing, so it runs as `verifyd --check-config` does.
//!
//! Input: `KIND\nJSON`. With `!KIND`, the harness first replaces the value of every secret
//! setting with a marker, which a refusal must never show.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use verify_carrier::{CarrierContext, CarrierRegistry, ReceiptSink};

/// Settings whose values are secrets (webhook `headers` values too).
const SECRET_KEYS: &[&str] = &[
    "password",
    "auth_token",
    "api_key_secret",
    "api_secret",
    "signature_secret",
    "secret",
];

/// Long enough for every carrier's minimum, made of what no fixed message says.
const MARKER: &str = "Zq7#marker#Zq7#marker";

fn registry() -> CarrierRegistry {
    let mut registry = CarrierRegistry::new();
    verify_carrier_sim::register(&mut registry);
    verify_carrier_smpp::register(&mut registry);
    verify_carrier_twilio::register(&mut registry);
    verify_carrier_vonage::register(&mut registry);
    verify_carrier_webhook::register(&mut registry);
    registry
}

/// Replaces the string value of every secret setting (at the top, and webhook header values)
/// with a prefix of the marker as long as the original (at least 8 characters); true when any.
fn mark_secrets(settings: &mut Value) -> bool {
    let Value::Object(table) = settings else {
        return false;
    };
    let mut marked = false;
    for (key, value) in table.iter_mut() {
        if SECRET_KEYS.contains(&key.as_str()) {
            if let Value::String(text) = value {
                let length = text.chars().count().clamp(8, MARKER.len());
                *text = MARKER[..length].to_string();
                marked = true;
            }
        } else if key == "headers"
            && let Value::Object(headers) = value
        {
            for header in headers.values_mut() {
                if let Value::String(text) = header {
                    *text = MARKER.to_string();
                    marked = true;
                }
            }
        }
    }
    marked
}

fuzz_target!(|data: &[u8]| {
    let Some(at) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (Ok(kind), Ok(mut settings)) = (
        std::str::from_utf8(&data[..at]),
        serde_json::from_slice::<Value>(&data[at + 1..]),
    ) else {
        return;
    };
    let (kind, mark) = match kind.strip_prefix('!') {
        Some(kind) => (kind, true),
        None => (kind, false),
    };
    let marked = mark && mark_secrets(&mut settings);
    let (receipts, _unread) = ReceiptSink::channel(16);
    let context = CarrierContext {
        name: "fz".into(),
        receipts,
        callback_url: Some("https://verify.example.com/callbacks/fz".into()),
    };
    match registry().build(kind, &settings, context) {
        Ok(carrier) => {
            assert_eq!(carrier.name(), "fz");
            assert_eq!(carrier.kind(), kind);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("fz"),
                "the error does not name the carrier: {message}"
            );
            if marked {
                assert!(
                    !message.contains(&MARKER[..8]),
                    "a refusal shows a secret setting's value: {message}"
                );
            }
        }
    }
});
