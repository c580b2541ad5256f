//! Helpers shared by verifyd's fuzz targets: one async runtime per process, fuzz input read as
//! an HTTP request that the harness may sign, and the checks every callback answer must pass.
//!
//! Every target lives in `fuzz_targets/`; `README.md` says how to run them and what their
//! inputs look like.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::runtime::Runtime;
use tokio::sync::mpsc::Receiver;
use verify_carrier::{CallbackRequest, CallbackResponse, DeliveryReceipt};

/// The current-thread runtime the async callback handlers run on, built once per process.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Unix seconds now, as the carriers read the clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fuzz input read as a callback: the flags byte that starts it, and the request.
#[derive(Debug)]
pub struct FuzzCallback {
    /// The first byte. Bit 0: the harness signs the request with the test secret; the other
    /// bits are the target's own (which URL to sign, which carrier).
    pub flags: u8,
    /// The request the rest of the input spells.
    pub request: CallbackRequest,
}

impl FuzzCallback {
    /// Whether the harness signs this request.
    pub fn sign(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Reads `data` as a flags byte then a request in HTTP/1 form, so seeds are readable and
/// dictionaries apply:
///
/// ```text
/// 1POST /callbacks/tw?message_id=msg_1
/// content-type: application/x-www-form-urlencoded
///
/// MessageSid=SM1&MessageStatus=delivered
/// ```
///
/// The first line is the method and the path with its query (`default_path` when the line has
/// no space), then `name: value` headers (names lower-cased, as the callback endpoint hands
/// them over), an empty line and the body, taken as it is.
pub fn parse_callback(data: &[u8], default_path: &str) -> Option<FuzzCallback> {
    let (&flags, rest) = data.split_first()?;
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let (method, path_and_query) = match request_line.split_once(' ') {
        Some((method, path)) => (method.to_string(), path.to_string()),
        None => (request_line.to_string(), default_path.to_string()),
    };
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Some(FuzzCallback {
        flags,
        request: CallbackRequest {
            method,
            path_and_query,
            headers,
            body: body.to_vec(),
        },
    })
}

/// Sets header `name` (lower case) to `value`, replacing every value it had.
pub fn set_header(request: &mut CallbackRequest, name: &str, value: String) {
    request
        .headers
        .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    request
        .headers
        .insert(0, (name.to_ascii_lowercase(), value));
}

/// `application/x-www-form-urlencoded` text of `pairs`.
pub fn form_encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

/// Takes every receipt the carrier reported for the last request (so the channel is empty for
/// the next input) and checks what any receipt must hold.
pub fn drain_receipts(receipts: &mut Receiver<DeliveryReceipt>) -> Vec<DeliveryReceipt> {
    let mut taken = Vec::new();
    while let Ok(receipt) = receipts.try_recv() {
        assert!(
            !receipt.carrier_message_id.is_empty(),
            "a receipt without a carrier message id: {receipt:?}"
        );
        assert!(
            !receipt.detail.chars().any(char::is_control),
            "vendor text with control characters reached a receipt's detail: {:?}",
            receipt.detail
        );
        taken.push(receipt);
    }
    taken
}

/// Checks what any callback answer must hold: a real HTTP status, a refusal that says why and
/// reports nothing, at most one receipt, and nothing accepted from a request the harness did
/// not sign (`signed` false) for a carrier that requires signatures.
pub fn check_answer(answer: &CallbackResponse, signed: bool, receipts: &[DeliveryReceipt]) {
    assert!(
        (200..=599).contains(&answer.status),
        "status {} is not an HTTP status",
        answer.status
    );
    assert!(
        receipts.len() <= 1,
        "one callback reported {} receipts",
        receipts.len()
    );
    if answer.status >= 400 {
        assert!(
            answer.rejection.as_deref().is_some_and(|r| !r.is_empty()),
            "a refusal without a reason: {answer:?}"
        );
        assert!(receipts.is_empty(), "a refused callback reported a receipt");
    }
    if !signed {
        assert!(
            answer.status >= 400,
            "an unsigned callback was accepted: {answer:?}"
        );
        assert!(
            receipts.is_empty(),
            "an unsigned callback reported a receipt"
        );
    }
}
