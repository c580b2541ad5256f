//! A local in-house gateway speaking the webhook protocol, for tests (feature `test-peer`).
//!
//! It takes `POST /messages`, checks the signature and timestamp, records every request,
//! answers as the test chose for the destination ([`GatewayPeer::set_outcome`]) and POSTs
//! signed receipts to the request's `callback_url` as a real gateway would. Like the gateways
//! the protocol asks for, it honours `Idempotency-Key`: a message it already took is answered
//! with the same id and not sent again.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use crate::backend::{GatewayReceipt, GatewayRequest};
use crate::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// What the gateway does with messages to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// Answer 200 with an id, then POST a `delivered` receipt.
    Deliver,
    /// Answer 200 with an id, then POST a `failed` receipt with this detail.
    FailDelivery(String),
    /// Answer 202 with an empty body (no id), then POST a `delivered` receipt naming only
    /// `message_id`.
    DeliverWithoutId,
    /// Answer 200 with an id, POST a `sent` receipt, then `delivered`.
    DeliverAfterSent,
    /// Answer this 4xx status with `{"error": ..., "kind": ...}`.
    Refuse {
        /// HTTP status.
        status: u16,
        /// The `error` text.
        error: String,
        /// The optional `kind`.
        kind: Option<String>,
    },
    /// Answer 429 with `Retry-After` seconds.
    Throttle(u32),
    /// Answer this status with a JSON error.
    ServerError(u16),
    /// Answer this status with a body that is not JSON.
    NotJson(u16),
    /// Read the request and never answer, as a gateway that took the message and hung.
    Hang,
}

/// One request the gateway received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The raw body as received.
    pub body: Vec<u8>,
    /// Whether its timestamp and signature were valid.
    pub signature_valid: bool,
}

impl RecordedRequest {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

struct Shared {
    secret: String,
    receipt_delay: Duration,
    outcomes: Mutex<HashMap<String, GatewayOutcome>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// `Idempotency-Key` → the id it was answered with, for messages taken.
    taken: Mutex<HashMap<String, String>>,
    client: reqwest::Client,
}

/// A running local gateway; stops when dropped.
pub struct GatewayPeer {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for GatewayPeer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl GatewayPeer {
    /// The secret a peer from [`GatewayPeer::start`] shares.
    pub const DEFAULT_SECRET: &'static str = "gateway-test-secret-0123456789";

    /// Starts a gateway on `127.0.0.1` with a free port, [`Self::DEFAULT_SECRET`] and receipts
    /// 20 ms after each accepted message.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(Self::DEFAULT_SECRET, Duration::from_millis(20)).await
    }

    /// Starts a gateway sharing `secret`, sending receipts `receipt_delay` after acceptance.
    pub async fn start_with(secret: &str, receipt_delay: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let client = verify_carrier::http_client(Duration::from_secs(5))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared {
            secret: secret.to_string(),
            receipt_delay,
            outcomes: Mutex::default(),
            requests: Mutex::default(),
            taken: Mutex::default(),
            client,
        });
        let router = axum::Router::new()
            .route("/messages", axum::routing::post(take_message))
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

    /// The gateway's message endpoint, to configure as `url`.
    pub fn url(&self) -> String {
        format!("http://{}/messages", self.address)
    }

    /// The shared secret it signs and checks with.
    pub fn secret(&self) -> &str {
        &self.shared.secret
    }

    /// Carrier settings (JSON, as in a `[[carriers]]` table) that talk to this gateway.
    pub fn carrier_settings(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url(),
            "secret": self.shared.secret,
            "timeout_ms": 5000,
            "shutdown_receipt_wait_ms": 5000,
        })
    }

    /// Chooses what happens to messages to `to` (E.164); the default is
    /// [`GatewayOutcome::Deliver`].
    pub fn set_outcome(&self, to: &str, outcome: GatewayOutcome) {
        lock(&self.shared.outcomes).insert(to.to_string(), outcome);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The `Idempotency-Key`s of the messages it took (each sent to its handset once).
    pub fn taken(&self) -> Vec<String> {
        lock(&self.shared.taken).keys().cloned().collect()
    }

    /// A URL on which nothing listens, for "gateway down" tests.
    pub async fn down_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        drop(listener);
        format!("http://{address}/messages")
    }

    /// The headers a receipt `body` signed now by this gateway carries.
    pub fn receipt_headers(&self, body: &[u8]) -> Vec<(String, String)> {
        signed_headers(&self.shared.secret, verify_carrier::unix_now(), body)
    }
}

fn signed_headers(secret: &str, timestamp: u64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        (TIMESTAMP_HEADER.to_ascii_lowercase(), timestamp.to_string()),
        (
            SIGNATURE_HEADER.to_ascii_lowercase(),
            signature::sign(secret.as_bytes(), timestamp, body),
        ),
    ]
}

fn json_answer(status: StatusCode, value: serde_json::Value) -> axum::response::Response {
    (
        status,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn take_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let valid = signature::verify(
        shared.secret.as_bytes(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        verify_carrier::unix_now(),
        300,
    )
    .is_ok();
    lock(&shared.requests).push(RecordedRequest {
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
        signature_valid: valid,
    });
    if !valid {
        return json_answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({ "error": "bad signature" }),
        );
    }
    let Ok(request) = serde_json::from_slice::<GatewayRequest>(&body) else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": "unreadable request" }),
        );
    };
    let key = header("idempotency-key").unwrap_or_default().to_string();
    if let Some(id) = lock(&shared.taken).get(&key) {
        // Taken before: the same answer, and nothing is sent again.
        return json_answer(StatusCode::OK, serde_json::json!({ "id": id }));
    }
    let outcome = lock(&shared.outcomes)
        .get(&request.to)
        .cloned()
        .unwrap_or(GatewayOutcome::Deliver);
    let id = format!("gw-{}", uuid::Uuid::new_v4().simple());
    if matches!(
        outcome,
        GatewayOutcome::Deliver
            | GatewayOutcome::FailDelivery(_)
            | GatewayOutcome::DeliverWithoutId
            | GatewayOutcome::DeliverAfterSent
    ) {
        lock(&shared.taken).insert(key, id.clone());
    }
    let with_id = outcome != GatewayOutcome::DeliverWithoutId;
    let (answer, receipts): (axum::response::Response, Vec<(&str, String)>) = match outcome {
        GatewayOutcome::Deliver => (
            json_answer(StatusCode::OK, serde_json::json!({ "id": id })),
            vec![("delivered", "DELIVRD".into())],
        ),
        GatewayOutcome::FailDelivery(detail) => (
            json_answer(StatusCode::OK, serde_json::json!({ "id": id })),
            vec![("failed", detail)],
        ),
        GatewayOutcome::DeliverWithoutId => (
            StatusCode::ACCEPTED.into_response(),
            vec![("delivered", "DELIVRD".into())],
        ),
        GatewayOutcome::DeliverAfterSent => (
            json_answer(StatusCode::OK, serde_json::json!({ "id": id })),
            vec![
                ("sent", "handed to SMSC".into()),
                ("delivered", "DELIVRD".into()),
            ],
        ),
        GatewayOutcome::Refuse {
            status,
            error,
            kind,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut value = serde_json::json!({ "error": error });
            if let Some(kind) = kind {
                value["kind"] = kind.into();
            }
            return json_answer(status, value);
        }
        GatewayOutcome::Throttle(seconds) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("content-type", "application/json".to_string()),
                    ("retry-after", seconds.to_string()),
                ],
                serde_json::json!({ "error": "slow down" }).to_string(),
            )
                .into_response();
        }
        GatewayOutcome::ServerError(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return json_answer(status, serde_json::json!({ "error": "SMSC link down" }));
        }
        GatewayOutcome::Hang => return std::future::pending().await,
        GatewayOutcome::NotJson(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, "<html>proxy error</html>").into_response();
        }
    };
    if let Some(callback) = request.callback_url.clone() {
        let shared = Arc::clone(&shared);
        let message_id = request.message_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(shared.receipt_delay).await;
            for (status, detail) in receipts {
                let receipt = GatewayReceipt {
                    id: with_id.then(|| id.clone()),
                    message_id: Some(message_id.clone()),
                    status: status.to_string(),
                    detail: Some(detail),
                };
                let body = serde_json::to_vec(&receipt).unwrap_or_default();
                let mut post = shared.client.post(&callback);
                for (name, value) in
                    signed_headers(&shared.secret, verify_carrier::unix_now(), &body)
                {
                    post = post.header(name, value);
                }
                match post.body(body).send().await {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), "test gateway: receipt refused")
                    }
                    Err(error) => tracing::warn!(%error, "test gateway: receipt not delivered"),
                }
            }
        });
    }
    answer
}
