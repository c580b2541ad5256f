//! The `webhook` carrier's signed receipts: `Carrier::handle_callback` on a fuzzed request (the
//! input format is `verifyd_fuzz::parse_callback`'s; the body is the gateway's JSON receipt).
//!
//! Flags: bit 0 has the harness sign the body with the test secret (`X-Verifyd-Timestamp` now,
//! `X-Verifyd-Signature: v1=…`, replacing any the input has), so the receipt parser behind the
//! signature check is reached. A receipt the harness did not sign must never be accepted.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use tokio::sync::mpsc::Receiver;
use verify_carrier::{Carrier, DeliveryReceipt};
use verify_carrier_webhook::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use verifyd_fuzz::{check_answer, drain_receipts, parse_callback, runtime, set_header, unix_now};

const SECRET: &str = "whsec-fuzz-0123456789abcdef";

struct Harness {
    carrier: Arc<dyn Carrier>,
    receipts: Mutex<Receiver<DeliveryReceipt>>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let built = verify_carrier::test_support::build(
            verify_carrier_webhook::register,
            verify_carrier_webhook::KIND,
            "gw",
            serde_json::json!({
                "url": "https://gateway.example.com/send",
                "secret": SECRET,
            }),
            Some("https://verify.example.com/callbacks/gw".into()),
        );
        Harness {
            carrier: built.carrier,
            receipts: Mutex::new(built.receipts),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(mut input) = parse_callback(data, "/callbacks/gw") else {
        return;
    };
    let harness = harness();
    let signed = input.sign();
    if signed {
        let now = unix_now();
        let signature = signature::sign(SECRET.as_bytes(), now, &input.request.body);
        set_header(&mut input.request, TIMESTAMP_HEADER, now.to_string());
        set_header(&mut input.request, SIGNATURE_HEADER, signature);
    }
    let answer = runtime().block_on(harness.carrier.handle_callback(input.request));
    let receipts = drain_receipts(&mut harness.receipts.lock().unwrap());
    check_answer(&answer, signed, &receipts);
});
