//! A local server speaking the Vonage SMS API, for tests (feature `test-peer`).
//!
//! It answers `POST /sms/json` as Vonage does (HTTP 200 and a status per part), checks the
//! API secret or the request signature, records every request, and sends signed delivery
//! receipts to the request's `callback` URL the way Vonage's webhooks do. What happens to a
//! message is chosen per destination with [`VonagePeer::set_outcome`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rand::Rng;

use crate::signature::{self, SignatureMethod};

/// What the peer does with messages to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOutcome {
    /// Accept (status 0) and send a `delivered` receipt.
    Deliver,
    /// Accept and send a `failed` receipt with `err-code` 2 (absent subscriber).
    FailDelivery,
    /// Accept as a multi-part message of this many parts, each receipted `delivered`.
    DeliverInParts(usize),
    /// Accept, send `accepted` and `buffered` receipts first, then `delivered`.
    DeliverAfterIntermediate,
    /// Answer this SMS API status (non-zero) with an error-text, as Vonage does.
    Status(u32),
    /// Answer this HTTP status with a non-JSON body.
    Http(u16),
    /// Read the request and never answer, as a peer that took the message and hung.
    Hang,
    /// Answer a multi-part message of this many parts whose last part is refused with
    /// `status`, the others accepted (no receipts).
    RefuseLastPart {
        /// Parts in the answer (at least 2).
        parts: usize,
        /// The SMS API status of the last one.
        status: u32,
    },
}

/// How the peer sends receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStyle {
    /// `GET` with query parameters.
    Get,
    /// `POST` with an `application/x-www-form-urlencoded` body.
    PostForm,
    /// `POST` with a JSON body.
    PostJson,
}

/// Settings of a peer: the account it accepts and how it sends receipts.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// The API key it accepts.
    pub api_key: String,
    /// The API secret it accepts (when requests are not signed).
    pub api_secret: String,
    /// The signature secret: signs receipts and checks signed requests; `None` = unsigned.
    pub signature_secret: Option<String>,
    /// The signing method of the account.
    pub signature_method: SignatureMethod,
    /// Time between accepting a message and sending its receipt.
    pub receipt_delay: Duration,
    /// How receipts are sent.
    pub receipt_style: ReceiptStyle,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            api_key: "peer-key".into(),
            api_secret: "peer-api-secret".into(),
            signature_secret: Some("peer-signature-secret".into()),
            signature_method: SignatureMethod::Sha256,
            receipt_delay: Duration::from_millis(20),
            receipt_style: ReceiptStyle::PostForm,
        }
    }
}

/// One request the peer received: its form parameters.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The form parameters, by name (last value wins).
    pub params: BTreeMap<String, String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
}

struct Shared {
    settings: PeerSettings,
    outcomes: Mutex<HashMap<String, PeerOutcome>>,
    requests: Mutex<Vec<RecordedRequest>>,
    receipts_sent: Mutex<Vec<BTreeMap<String, String>>>,
    client: reqwest::Client,
}

/// A running local Vonage-style server; stops when dropped.
pub struct VonagePeer {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for VonagePeer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl VonagePeer {
    /// Starts a peer with default settings on `127.0.0.1` and a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(PeerSettings::default()).await
    }

    /// Starts a peer with `settings`.
    pub async fn start_with(settings: PeerSettings) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let client = verify_carrier::http_client(Duration::from_secs(5))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            settings,
            outcomes: Mutex::default(),
            requests: Mutex::default(),
            receipts_sent: Mutex::default(),
            client,
        });
        let router = axum::Router::new()
            .route("/sms/json", axum::routing::post(submit))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            address,
            shared,
            server,
        })
    }

    /// The base URL to configure as `base_url`, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The settings the peer runs with (credentials it accepts).
    pub fn settings(&self) -> &PeerSettings {
        &self.shared.settings
    }

    /// Carrier settings (JSON, as in a `[[carriers]]` table) that talk to this peer with its
    /// credentials: signed requests when the peer has a signature secret.
    pub fn carrier_settings(&self) -> serde_json::Value {
        let s = &self.shared.settings;
        let mut settings = serde_json::json!({
            "api_key": s.api_key,
            "api_secret": s.api_secret,
            "from": "verifyd",
            "base_url": self.base_url(),
            "timeout_ms": 5000,
            "shutdown_receipt_wait_ms": 5000,
        });
        if let Some(secret) = &s.signature_secret {
            settings["signature_secret"] = secret.clone().into();
            settings["signature_method"] = s.signature_method.as_str().into();
        }
        settings
    }

    /// Chooses what happens to messages to `to` (E.164 with or without `+`); the default is
    /// [`PeerOutcome::Deliver`].
    pub fn set_outcome(&self, to: &str, outcome: PeerOutcome) {
        lock(&self.shared.outcomes).insert(to.trim_start_matches('+').to_string(), outcome);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The parameters of every receipt sent so far (signed as sent), oldest first.
    pub fn receipts_sent(&self) -> Vec<BTreeMap<String, String>> {
        lock(&self.shared.receipts_sent).clone()
    }

    /// A URL on which nothing listens, for "carrier down" tests.
    pub async fn down_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        drop(listener);
        format!("http://{address}")
    }

    /// Signs receipt parameters as this peer's account would (adds `timestamp`, `nonce`, `sig`).
    pub fn sign_receipt(&self, params: &mut BTreeMap<String, String>) {
        sign_params(&self.shared.settings, params);
    }
}

fn sign_params(settings: &PeerSettings, params: &mut BTreeMap<String, String>) {
    let Some(secret) = &settings.signature_secret else {
        return;
    };
    params
        .entry("timestamp".into())
        .or_insert_with(|| verify_carrier::unix_now().to_string());
    params
        .entry("nonce".into())
        .or_insert_with(|| format!("{:032x}", rand::rng().random::<u128>()));
    let sig = signature::sign(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        secret,
        settings.signature_method,
    );
    params.insert("sig".into(), sig);
}

fn answer(parts: Vec<serde_json::Value>) -> axum::response::Response {
    let body = serde_json::json!({
        "message-count": parts.len().to_string(),
        "messages": parts,
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn refusal(to: &str, status: u32, text: &str) -> axum::response::Response {
    answer(vec![serde_json::json!({
        "to": to, "status": status.to_string(), "error-text": text,
    })])
}

fn status_text(status: u32) -> &'static str {
    match status {
        1 => "Throttled",
        2 => "Missing Parameters",
        3 => "Invalid Parameters",
        4 => "Bad Credentials",
        5 => "Internal Error",
        6 => "Invalid Message",
        7 => "Number Barred",
        8 => "Partner Account Barred",
        9 => "Partner Quota Violation",
        12 => "Message Too Long",
        14 => "Invalid Signature",
        15 => "Illegal Sender Address - rejected",
        29 => "Non White-listed Destination - rejected",
        33 => "Number De-activated",
        _ => "Error",
    }
}

async fn submit(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let params: BTreeMap<String, String> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    lock(&shared.requests).push(RecordedRequest {
        params: params.clone(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let settings = &shared.settings;
    let to = params.get("to").cloned().unwrap_or_default();
    for required in ["api_key", "from", "to", "text"] {
        if params.get(required).is_none_or(|v| v.is_empty()) {
            return refusal(&to, 2, "Missing Parameters");
        }
    }
    if params.get("api_key") != Some(&settings.api_key) {
        return refusal(&to, 4, "Bad Credentials");
    }
    match (params.get("sig"), params.get("api_secret")) {
        (Some(_), Some(_)) => return refusal(&to, 32, "Signature and api secret disallowed"),
        (Some(sig), None) => {
            let Some(secret) = &settings.signature_secret else {
                return refusal(&to, 14, "Invalid Signature");
            };
            let fresh = params
                .get("timestamp")
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|t| t.abs_diff(verify_carrier::unix_now()) <= 300);
            let valid = signature::verify(
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                sig,
                secret,
                settings.signature_method,
            );
            if !fresh || !valid {
                return refusal(&to, 14, "Invalid Signature");
            }
        }
        (None, Some(secret)) if secret == &settings.api_secret => {}
        _ => return refusal(&to, 4, "Bad Credentials"),
    }
    let outcome = lock(&shared.outcomes)
        .get(&to)
        .cloned()
        .unwrap_or(PeerOutcome::Deliver);
    let (parts, statuses): (usize, Vec<(&str, &str)>) = match outcome {
        PeerOutcome::Status(status) => return refusal(&to, status, status_text(status)),
        PeerOutcome::Http(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "<html>upstream trouble</html>").into_response();
        }
        PeerOutcome::Hang => std::future::pending().await,
        PeerOutcome::RefuseLastPart { parts, status } => {
            let parts = parts.max(2);
            let mut answered: Vec<serde_json::Value> = (1..parts)
                .map(|n| {
                    serde_json::json!({ "to": to, "message-id": format!("{n:016X}"), "status": "0" })
                })
                .collect();
            answered.push(serde_json::json!({
                "status": status.to_string(), "error-text": status_text(status),
            }));
            return answer(answered);
        }
        PeerOutcome::Deliver => (1, vec![("delivered", "0")]),
        PeerOutcome::FailDelivery => (1, vec![("failed", "2")]),
        PeerOutcome::DeliverInParts(n) => (n.max(1), vec![("delivered", "0")]),
        PeerOutcome::DeliverAfterIntermediate => (
            1,
            vec![("accepted", "0"), ("buffered", "0"), ("delivered", "0")],
        ),
    };
    let ids: Vec<String> = (0..parts)
        .map(|_| format!("{:016X}", rand::rng().random::<u64>()))
        .collect();
    if let Some(callback) = params.get("callback").cloned() {
        let shared = Arc::clone(&shared);
        let ids = ids.clone();
        let to = to.clone();
        let client_ref = params.get("client-ref").cloned();
        tokio::spawn(async move {
            tokio::time::sleep(shared.settings.receipt_delay).await;
            // Parts in reverse order: receipts do not arrive in order.
            for id in ids.iter().rev() {
                for (status, err_code) in &statuses {
                    let mut receipt = BTreeMap::from([
                        ("msisdn".to_string(), to.clone()),
                        ("to".to_string(), "verifyd".to_string()),
                        ("network-code".to_string(), "23410".to_string()),
                        ("messageId".to_string(), id.clone()),
                        ("price".to_string(), "0.03330000".to_string()),
                        ("status".to_string(), status.to_string()),
                        ("scts".to_string(), "2011191200".to_string()),
                        ("err-code".to_string(), err_code.to_string()),
                        ("api-key".to_string(), shared.settings.api_key.clone()),
                        (
                            "message-timestamp".to_string(),
                            "2026-11-25 12:00:00".to_string(),
                        ),
                    ]);
                    if let Some(client_ref) = &client_ref {
                        receipt.insert("client-ref".into(), client_ref.clone());
                    }
                    sign_params(&shared.settings, &mut receipt);
                    lock(&shared.receipts_sent).push(receipt.clone());
                    send_receipt(&shared, &callback, &receipt).await;
                }
            }
        });
    }
    let parts = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "to": to, "message-id": id, "status": "0",
                "remaining-balance": "3.14159265", "message-price": "0.03330000",
                "network": "23410",
            })
        })
        .collect();
    answer(parts)
}

async fn send_receipt(shared: &Shared, callback: &str, receipt: &BTreeMap<String, String>) {
    let request = match shared.settings.receipt_style {
        ReceiptStyle::Get => {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(receipt.iter())
                .finish();
            let separator = if callback.contains('?') { '&' } else { '?' };
            shared.client.get(format!("{callback}{separator}{query}"))
        }
        ReceiptStyle::PostForm => shared
            .client
            .post(callback)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(receipt.iter())
                    .finish(),
            ),
        ReceiptStyle::PostJson => shared
            .client
            .post(callback)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(receipt).unwrap_or_default()),
    };
    match request.send().await {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            tracing::warn!(status = %response.status(), "test peer: receipt refused")
        }
        Err(error) => tracing::warn!(%error, "test peer: receipt not delivered"),
    }
}
