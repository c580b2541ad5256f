//! The `twilio` carrier's status callbacks: `Carrier::handle_callback` on a fuzzed request
//! (method, path and query, headers, body; the input format is `verifyd_fuzz::parse_callback`'s).
//!
//! Flags: bit 0 has the harness sign the request with the test auth token (replacing any
//! `X-Twilio-Signature`), so the status parser behind the signature check is reached; bits 1-2
//! pick the URL it signs among those Twilio may have signed (the public origin with the path
//! and query received, the same with `:443`, the configured callback URL with the query
//! received). A request the harness did not sign must never be accepted.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use tokio::sync::mpsc::Receiver;
use verify_carrier::{Carrier, DeliveryReceipt};
use verify_carrier_twilio::signature::{self, SIGNATURE_HEADER};
use verifyd_fuzz::{check_answer, drain_receipts, parse_callback, runtime, set_header};

const AUTH_TOKEN: &str = "fuzz-auth-token-0123456789";
const ORIGIN: &str = "https://verify.example.com";
const CALLBACK_URL: &str = "https://verify.example.com/callbacks/tw";

struct Harness {
    carrier: Arc<dyn Carrier>,
    receipts: Mutex<Receiver<DeliveryReceipt>>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let built = verify_carrier::test_support::build(
            verify_carrier_twilio::register,
            verify_carrier_twilio::KIND,
            "tw",
            serde_json::json!({
                "account_sid": "AC0123456789abcdef0123456789abcdef",
                "auth_token": AUTH_TOKEN,
                "from": "+15005550006",
            }),
            Some(CALLBACK_URL.to_string()),
        );
        Harness {
            carrier: built.carrier,
            receipts: Mutex::new(built.receipts),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(mut input) = parse_callback(data, "/callbacks/tw") else {
        return;
    };
    let harness = harness();
    let signed = input.sign();
    if signed {
        let request = &input.request;
        let url = match (input.flags >> 1) & 3 {
            0 => format!("{ORIGIN}{}", request.path_and_query),
            1 => format!("{ORIGIN}:443{}", request.path_and_query),
            _ => match request.query() {
                "" => CALLBACK_URL.to_string(),
                query => format!("{CALLBACK_URL}?{query}"),
            },
        };
        let signature = signature::sign(AUTH_TOKEN, &url, &request.form_pairs());
        set_header(&mut input.request, SIGNATURE_HEADER, signature);
    }
    let answer = runtime().block_on(harness.carrier.handle_callback(input.request));
    let receipts = drain_receipts(&mut harness.receipts.lock().unwrap());
    check_answer(&answer, signed, &receipts);
});
