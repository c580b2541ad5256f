//! The `vonage` carrier's delivery-receipt webhooks: `Carrier::handle_callback` on a fuzzed
//! request (GET with the receipt in the query, POST with a form or JSON body; the input format
//! is `verifyd_fuzz::parse_callback`'s).
//!
//! Flags: bits 1-3 pick the carrier: one per signature method (md5hash, md5, sha1, sha256,
//! sha512), each requiring signed receipts, or (5) one that takes unsigned receipts. Bit 0 has
//! the harness sign the receipt's parameters with the test signature secret, as Vonage does:
//! it reads them where the carrier will, sets `timestamp` to now and `sig`, and writes them
//! back, so the receipt parser behind the signature check is reached. A receipt the harness did
//! not sign must never be accepted by a carrier that requires signatures.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use tokio::sync::mpsc::Receiver;
use verify_carrier::{CallbackRequest, Carrier, DeliveryReceipt};
use verify_carrier_vonage::{SignatureMethod, signature};
use verifyd_fuzz::{check_answer, drain_receipts, form_encode, parse_callback, runtime, unix_now};

const SIGNATURE_SECRET: &str = "fuzz-signature-secret";
const API_KEY: &str = "abcd1234";

struct Target {
    carrier: Arc<dyn Carrier>,
    receipts: Mutex<Receiver<DeliveryReceipt>>,
    /// `None` for the carrier that takes unsigned receipts.
    method: Option<SignatureMethod>,
}

fn targets() -> &'static [Target] {
    static TARGETS: OnceLock<Vec<Target>> = OnceLock::new();
    TARGETS.get_or_init(|| {
        [
            Some(SignatureMethod::Md5hash),
            Some(SignatureMethod::Md5),
            Some(SignatureMethod::Sha1),
            Some(SignatureMethod::Sha256),
            Some(SignatureMethod::Sha512),
            None,
        ]
        .into_iter()
        .map(|method| {
            let settings = match method {
                Some(method) => serde_json::json!({
                    "api_key": API_KEY,
                    "signature_secret": SIGNATURE_SECRET,
                    "signature_method": method.as_str(),
                    "from": "verifyd",
                }),
                None => serde_json::json!({
                    "api_key": API_KEY,
                    "api_secret": "fuzz-api-secret",
                    "from": "verifyd",
                }),
            };
            let built = verify_carrier::test_support::build(
                verify_carrier_vonage::register,
                verify_carrier_vonage::KIND,
                "vonage",
                settings,
                Some("https://verify.example.com/callbacks/vonage".into()),
            );
            Target {
                carrier: built.carrier,
                receipts: Mutex::new(built.receipts),
                method,
            }
        })
        .collect()
    })
}

/// Where a receipt's parameters are, as the carrier reads them.
enum Place {
    Query,
    Form,
    Json,
}

fn is_json(request: &CallbackRequest) -> bool {
    request
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"))
}

/// The receipt's parameters and where they are; `None` when the carrier reads none.
fn read_params(request: &CallbackRequest) -> Option<(Place, Vec<(String, String)>)> {
    match request.method.as_str() {
        "GET" => Some((Place::Query, request.query_pairs())),
        "POST" if is_json(request) => {
            let serde_json::Value::Object(object) = serde_json::from_slice(&request.body).ok()?
            else {
                return None;
            };
            let pairs = object
                .into_iter()
                .filter_map(|(name, value)| match value {
                    serde_json::Value::String(s) => Some((name, s)),
                    serde_json::Value::Number(n) => Some((name, n.to_string())),
                    serde_json::Value::Bool(b) => Some((name, b.to_string())),
                    _ => None,
                })
                .collect();
            Some((Place::Json, pairs))
        }
        "POST" => Some((Place::Form, request.form_pairs())),
        _ => None,
    }
}

/// Signs the receipt's parameters in place: `timestamp` now, then `sig` over all of them.
fn sign(request: &mut CallbackRequest, method: SignatureMethod) {
    let Some((place, mut params)) = read_params(request) else {
        return;
    };
    params.retain(|(name, _)| name != "sig" && name != "timestamp");
    params.push(("timestamp".into(), unix_now().to_string()));
    let sig = signature::sign(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SIGNATURE_SECRET,
        method,
    );
    params.push(("sig".into(), sig));
    match place {
        Place::Query => {
            let path = request.path_and_query.split('?').next().unwrap_or_default();
            request.path_and_query = format!("{path}?{}", form_encode(&params));
        }
        Place::Form => request.body = form_encode(&params).into_bytes(),
        Place::Json => {
            let object: serde_json::Map<String, serde_json::Value> = params
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            request.body = serde_json::to_vec(&object).expect("a JSON object serialises");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(mut input) = parse_callback(data, "/callbacks/vonage") else {
        return;
    };
    let targets = targets();
    let target = &targets[usize::from((input.flags >> 1) & 7) % targets.len()];
    let signed = match target.method {
        Some(method) if input.sign() => {
            sign(&mut input.request, method);
            true
        }
        Some(_) => false,
        // Takes unsigned receipts: whatever it accepts is allowed.
        None => true,
    };
    let answer = runtime().block_on(target.carrier.handle_callback(input.request));
    let receipts = drain_receipts(&mut target.receipts.lock().unwrap());
    check_answer(&answer, signed, &receipts);
});
