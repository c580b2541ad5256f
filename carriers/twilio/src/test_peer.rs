//! A local HTTP server that implements the part of Twilio's REST API the carrier uses
//! (`Messages.json`, `Calls.json`, Basic auth, error bodies) and, like Twilio, POSTs signed
//! status callbacks to each request's `StatusCallback`. For this crate's tests and verifyd's
//! end-to-end tests; enabled by the `test-peer` feature.
//!
//! ```no_run
//! # async fn demo() {
//! use verify_carrier_twilio::test_peer::{PeerBehaviour, PeerSettings, TwilioPeer};
//! let peer = TwilioPeer::start(PeerSettings::default()).await;
//! peer.set_behaviour("+447400100003", PeerBehaviour::FailDelivery);
//! // Configure a `twilio` carrier with peer.base_url(), peer.account_sid(), peer.auth_token().
//! let calls = peer.wait_for_requests(1, std::time::Duration::from_secs(5)).await;
//! assert!(calls[0].param("Twiml").is_some());
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tokio::sync::oneshot;
use verify_carrier::Secret;

pub use verify_carrier::conformance::PeerBehaviour;

use crate::config::TwilioConfig;
use crate::core::API_VERSION;
use crate::signature::{SIGNATURE_HEADER, sign};

/// The account sid the peer accepts by default.
pub const PEER_ACCOUNT_SID: &str = "AC00000000000000000000000000c0ffee";
/// The auth token the peer accepts (and signs callbacks with) by default.
pub const PEER_AUTH_TOKEN: &str = "peer-auth-token-not-a-secret";
/// The sender number the peer's [`TwilioPeer::carrier_config`] uses.
pub const PEER_FROM: &str = "+15005550006";

/// How the peer is set up.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// The account sid accepted in the path and as Basic auth user.
    pub account_sid: String,
    /// The auth token accepted as Basic auth password; it signs the status callbacks.
    pub auth_token: String,
    /// An API key (sid, secret) also accepted for Basic auth.
    pub api_key: Option<(String, String)>,
    /// What happens to destinations without their own behaviour.
    pub default_behaviour: PeerBehaviour,
    /// Behaviour per destination (E.164).
    pub destinations: HashMap<String, PeerBehaviour>,
    /// Time between the API's answer and the first status callback.
    pub callback_delay: Duration,
    /// Whether intermediate callbacks (`sent` for messages) are sent before the final one.
    pub intermediate_callbacks: bool,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            account_sid: PEER_ACCOUNT_SID.to_string(),
            auth_token: PEER_AUTH_TOKEN.to_string(),
            api_key: None,
            default_behaviour: PeerBehaviour::Deliver,
            destinations: HashMap::new(),
            callback_delay: Duration::from_millis(20),
            intermediate_callbacks: true,
        }
    }
}

/// Which API resource a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerResource {
    /// `POST /2010-04-01/Accounts/{sid}/Messages.json`.
    Messages,
    /// `POST /2010-04-01/Accounts/{sid}/Calls.json`.
    Calls,
}

/// One API request the peer received, as it understood it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Messages or Calls.
    pub resource: PeerResource,
    /// The account sid in the path.
    pub account_sid: String,
    /// The Basic auth user name, when one was sent.
    pub username: Option<String>,
    /// Whether the credentials were accepted.
    pub authorized: bool,
    /// The form parameters, percent-decoded, in order.
    pub form: Vec<(String, String)>,
    /// The HTTP status the peer answered.
    pub status: u16,
    /// The sid of the created resource, when one was created.
    pub sid: Option<String>,
}

impl RecordedRequest {
    /// The first value of form parameter `name` (e.g. `To`, `From`, `Body`, `Twiml`,
    /// `StatusCallback`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One status callback the peer POSTed.
#[derive(Debug, Clone)]
pub struct SentCallback {
    /// The `StatusCallback` URL it went to.
    pub url: String,
    /// The signed form parameters.
    pub params: Vec<(String, String)>,
    /// The HTTP status the receiver answered, or `None` when it could not be reached.
    pub response_status: Option<u16>,
}

impl SentCallback {
    /// The first value of parameter `name` (e.g. `MessageStatus`, `CallStatus`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct PeerState {
    settings: Mutex<PeerSettings>,
    requests: Mutex<Vec<RecordedRequest>>,
    callbacks: Mutex<Vec<SentCallback>>,
    http: reqwest::Client,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running local Twilio API. Stops when dropped.
pub struct TwilioPeer {
    base_url: String,
    state: Arc<PeerState>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for TwilioPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioPeer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TwilioPeer {
    /// Starts the peer on `127.0.0.1` on a free port.
    pub async fn start(settings: PeerSettings) -> TwilioPeer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the test peer binds a local port");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = Arc::new(PeerState {
            settings: Mutex::new(settings),
            requests: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
            http: verify_carrier::http_client(Duration::from_secs(5))
                .expect("the test peer builds its HTTP client"),
        });
        let router = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                axum::routing::post(create_message),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                axum::routing::post(create_call),
            )
            .fallback(not_found)
            .with_state(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        TwilioPeer {
            base_url: format!("http://{address}"),
            state,
            stop: Some(stop),
        }
    }

    /// Starts the peer with [`PeerSettings::default`].
    pub async fn start_default() -> TwilioPeer {
        Self::start(PeerSettings::default()).await
    }

    /// The `base_url` setting that reaches this peer, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The account sid it accepts.
    pub fn account_sid(&self) -> String {
        lock(&self.state.settings).account_sid.clone()
    }

    /// The auth token it accepts and signs callbacks with.
    pub fn auth_token(&self) -> String {
        lock(&self.state.settings).auth_token.clone()
    }

    /// Settings for a `twilio` carrier that talks to this peer, sending from [`PEER_FROM`].
    pub fn carrier_config(&self) -> TwilioConfig {
        let mut config = TwilioConfig::new(
            self.account_sid(),
            Secret::new(self.auth_token()),
            PEER_FROM,
        );
        config.base_url = self.base_url.clone();
        config.timeout_ms = 5_000;
        config
    }

    /// The same settings as JSON, as the server passes the keys of a `[[carriers]]` table.
    pub fn carrier_settings(&self) -> serde_json::Value {
        json!({
            "account_sid": self.account_sid(),
            "auth_token": self.auth_token(),
            "from": PEER_FROM,
            "base_url": self.base_url,
            "timeout_ms": 5_000,
        })
    }

    /// The same settings as TOML `key = value` lines, to put in a `[[carriers]]` entry's
    /// settings of a verifyd config file (no table header, so it fits either layout).
    pub fn carrier_settings_toml(&self) -> String {
        format!(
            "account_sid = \"{}\"\nauth_token = \"{}\"\nfrom = \"{PEER_FROM}\"\nbase_url = \"{}\"\ntimeout_ms = 5000\n",
            self.account_sid(),
            self.auth_token(),
            self.base_url,
        )
    }

    /// Sets what happens to messages and calls to `to` from now on.
    pub fn set_behaviour(&self, to: &str, behaviour: PeerBehaviour) {
        lock(&self.state.settings)
            .destinations
            .insert(to.to_string(), behaviour);
    }

    /// Sets what happens to destinations without their own behaviour.
    pub fn set_default_behaviour(&self, behaviour: PeerBehaviour) {
        lock(&self.state.settings).default_behaviour = behaviour;
    }

    /// Every API request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The `Calls.json` requests received so far.
    pub fn calls(&self) -> Vec<RecordedRequest> {
        self.requests_to(PeerResource::Calls)
    }

    /// The `Messages.json` requests received so far.
    pub fn messages(&self) -> Vec<RecordedRequest> {
        self.requests_to(PeerResource::Messages)
    }

    fn requests_to(&self, resource: PeerResource) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.resource == resource)
            .collect()
    }

    /// Every status callback sent so far, with the receiver's answer.
    pub fn callbacks(&self) -> Vec<SentCallback> {
        lock(&self.state.callbacks).clone()
    }

    /// Waits until at least `count` API requests came (or `timeout` passed) and returns them.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count || tokio::time::Instant::now() >= deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until at least `count` status callbacks were sent and answered (or `timeout`
    /// passed) and returns them.
    pub async fn wait_for_callbacks(&self, count: usize, timeout: Duration) -> Vec<SentCallback> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let callbacks = self.callbacks();
            if callbacks.len() >= count || tokio::time::Instant::now() >= deadline {
                return callbacks;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TwilioPeer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A `base_url` where nothing listens: the port of a listener that was bound and closed.
pub async fn unreachable_base_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds a local port");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    drop(listener);
    format!("http://{address}")
}

/// Twilio's error body.
fn api_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    response
}

fn created(body: serde_json::Value) -> Response {
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        20404,
        "The requested resource was not found",
    )
}

fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// Basic auth user name and whether the credentials are accepted.
fn check_auth(headers: &HeaderMap, settings: &PeerSettings) -> (Option<String>, bool) {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return (None, false);
    };
    let Some(decoded) = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
    else {
        return (None, false);
    };
    let Some((user, password)) = decoded.split_once(':') else {
        return (None, false);
    };
    let valid = (user == settings.account_sid && password == settings.auth_token)
        || settings
            .api_key
            .as_ref()
            .is_some_and(|(sid, secret)| user == sid && password == secret);
    (Some(user.to_string()), valid)
}

/// What the peer decided about one request, before the resource-specific part.
enum Admission {
    Refused(Response),
    /// Record the request and never answer ([`PeerBehaviour::Hang`]).
    Hang,
    Admitted {
        behaviour: PeerBehaviour,
        settings: PeerSettings,
    },
}

fn admit(
    state: &PeerState,
    resource: PeerResource,
    account: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> (Admission, RecordedRequest) {
    let settings = lock(&state.settings).clone();
    let (username, authorized) = check_auth(headers, &settings);
    let record = RecordedRequest {
        resource,
        account_sid: account.to_string(),
        username,
        authorized,
        form: form.to_vec(),
        status: 0,
        sid: None,
    };
    if !authorized {
        return (
            Admission::Refused(api_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")),
            record,
        );
    }
    if account != settings.account_sid {
        return (
            Admission::Refused(api_error(
                StatusCode::NOT_FOUND,
                20404,
                "The requested resource was not found",
            )),
            record,
        );
    }
    let param = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let to = param("To").unwrap_or("");
    if !is_e164(to) {
        return (
            Admission::Refused(api_error(
                StatusCode::BAD_REQUEST,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            )),
            record,
        );
    }
    let behaviour = settings
        .destinations
        .get(to)
        .copied()
        .unwrap_or(settings.default_behaviour);
    let refusal = match behaviour {
        PeerBehaviour::RejectPermanently => Some(api_error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        )),
        PeerBehaviour::Throttle => Some(api_error(
            StatusCode::TOO_MANY_REQUESTS,
            20429,
            "Too Many Requests",
        )),
        PeerBehaviour::Down => Some(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
        )),
        PeerBehaviour::Hang => return (Admission::Hang, record),
        PeerBehaviour::Deliver | PeerBehaviour::FailDelivery => None,
    };
    match refusal {
        Some(response) => (Admission::Refused(response), record),
        None => (
            Admission::Admitted {
                behaviour,
                settings,
            },
            record,
        ),
    }
}

/// Records a request that gets no answer (status 0) and stays silent.
async fn hang(state: &PeerState, record: RecordedRequest) -> Response {
    lock(&state.requests).push(record);
    std::future::pending().await
}

fn finish(
    state: &PeerState,
    mut record: RecordedRequest,
    response: Response,
    sid: Option<String>,
) -> Response {
    record.status = response.status().as_u16();
    record.sid = sid;
    lock(&state.requests).push(record);
    response
}

fn now() -> String {
    chrono::Utc::now().to_rfc2822()
}

async fn create_message(
    State(state): State<Arc<PeerState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = crate::core::decode_form(&body);
    let (admission, record) = admit(&state, PeerResource::Messages, &account, &headers, &form);
    let (behaviour, settings) = match admission {
        Admission::Refused(response) => return finish(&state, record, response, None),
        Admission::Hang => return hang(&state, record).await,
        Admission::Admitted {
            behaviour,
            settings,
        } => (behaviour, settings),
    };
    let param = |name: &str| record.param(name).map(str::to_string);
    let (to, from, service, text) = (
        param("To").unwrap_or_default(),
        param("From"),
        param("MessagingServiceSid"),
        param("Body").unwrap_or_default(),
    );
    if from.is_none() && service.is_none() {
        let response = api_error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
        );
        return finish(&state, record, response, None);
    }
    if text.is_empty() {
        let response = api_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
        return finish(&state, record, response, None);
    }
    let sid = new_sid("SM");
    let uri = format!("/{API_VERSION}/Accounts/{account}/Messages/{sid}.json");
    let status = if service.is_some() && from.is_none() {
        "accepted"
    } else {
        "queued"
    };
    let response = created(json!({
        "account_sid": account,
        "api_version": API_VERSION,
        "body": text,
        "date_created": now(),
        "date_sent": null,
        "date_updated": now(),
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": format!("/{API_VERSION}/Accounts/{account}/Messages/{sid}/Media.json")
        },
        "to": to,
        "uri": uri,
    }));
    if let Some(url) = param("StatusCallback") {
        let mut common = vec![
            ("AccountSid".to_string(), account.clone()),
            ("ApiVersion".to_string(), API_VERSION.to_string()),
            ("MessageSid".to_string(), sid.clone()),
            ("SmsSid".to_string(), sid.clone()),
            ("To".to_string(), to.clone()),
        ];
        if let Some(from) = &from {
            common.push(("From".to_string(), from.clone()));
        }
        if let Some(service) = &service {
            common.push(("MessagingServiceSid".to_string(), service.clone()));
        }
        let with_status = |status: &str, error: Option<&str>| {
            let mut params = common.clone();
            params.push(("MessageStatus".to_string(), status.to_string()));
            params.push(("SmsStatus".to_string(), status.to_string()));
            if let Some(code) = error {
                params.push(("ErrorCode".to_string(), code.to_string()));
            }
            params
        };
        let mut sequence = Vec::new();
        if settings.intermediate_callbacks {
            sequence.push(with_status("sent", None));
        }
        sequence.push(match behaviour {
            PeerBehaviour::FailDelivery => with_status("undelivered", Some("30003")),
            _ => with_status("delivered", None),
        });
        send_callbacks(&state, &settings, url, sequence);
    }
    finish(&state, record, response, Some(sid))
}

async fn create_call(
    State(state): State<Arc<PeerState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = crate::core::decode_form(&body);
    let (admission, record) = admit(&state, PeerResource::Calls, &account, &headers, &form);
    let (behaviour, settings) = match admission {
        Admission::Refused(response) => return finish(&state, record, response, None),
        Admission::Hang => return hang(&state, record).await,
        Admission::Admitted {
            behaviour,
            settings,
        } => (behaviour, settings),
    };
    let param = |name: &str| record.param(name).map(str::to_string);
    let to = param("To").unwrap_or_default();
    let Some(from) = param("From") else {
        let response = api_error(
            StatusCode::BAD_REQUEST,
            21213,
            "No 'From' number is specified",
        );
        return finish(&state, record, response, None);
    };
    if param("Twiml").is_none() && param("Url").is_none() && param("ApplicationSid").is_none() {
        let response = api_error(
            StatusCode::BAD_REQUEST,
            21205,
            "Url, ApplicationSid or Twiml is required",
        );
        return finish(&state, record, response, None);
    }
    let sid = new_sid("CA");
    let response = created(json!({
        "account_sid": account,
        "annotation": null,
        "answered_by": null,
        "api_version": API_VERSION,
        "caller_name": null,
        "date_created": now(),
        "date_updated": now(),
        "direction": "outbound-api",
        "duration": null,
        "end_time": null,
        "forwarded_from": null,
        "from": from,
        "from_formatted": from,
        "group_sid": null,
        "parent_call_sid": null,
        "phone_number_sid": null,
        "price": null,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": null,
        "status": "queued",
        "subresource_uris": {
            "notifications": format!("/{API_VERSION}/Accounts/{account}/Calls/{sid}/Notifications.json"),
            "recordings": format!("/{API_VERSION}/Accounts/{account}/Calls/{sid}/Recordings.json"),
        },
        "to": to,
        "to_formatted": to,
        "trunk_sid": null,
        "uri": format!("/{API_VERSION}/Accounts/{account}/Calls/{sid}.json"),
    }));
    // Without StatusCallbackEvent Twilio reports only `completed`; other events are not sent
    // by the peer either.
    let wants_completed = param("StatusCallbackEvent")
        .is_none_or(|events| events.split([' ', ',']).any(|e| e == "completed"));
    if let Some(url) = param("StatusCallback").filter(|_| wants_completed) {
        let mut params = vec![
            ("AccountSid".to_string(), account.clone()),
            ("ApiVersion".to_string(), API_VERSION.to_string()),
            ("CallSid".to_string(), sid.clone()),
            (
                "CallbackSource".to_string(),
                "call-progress-events".to_string(),
            ),
            ("Called".to_string(), to.clone()),
            ("Caller".to_string(), from.clone()),
            ("Direction".to_string(), "outbound-api".to_string()),
            ("From".to_string(), from.clone()),
            ("SequenceNumber".to_string(), "0".to_string()),
            ("Timestamp".to_string(), now()),
            ("To".to_string(), to.clone()),
        ];
        match behaviour {
            PeerBehaviour::FailDelivery => {
                params.push(("CallStatus".to_string(), "no-answer".to_string()));
                params.push(("CallDuration".to_string(), "0".to_string()));
                params.push(("SipResponseCode".to_string(), "487".to_string()));
            }
            _ => {
                params.push(("CallStatus".to_string(), "completed".to_string()));
                params.push(("CallDuration".to_string(), "14".to_string()));
                params.push(("Duration".to_string(), "1".to_string()));
            }
        }
        send_callbacks(&state, &settings, url, vec![params]);
    }
    finish(&state, record, response, Some(sid))
}

/// POSTs `sequence` to `url` one after the other, each signed like Twilio signs them.
fn send_callbacks(
    state: &Arc<PeerState>,
    settings: &PeerSettings,
    url: String,
    sequence: Vec<Vec<(String, String)>>,
) {
    let state = Arc::clone(state);
    let token = settings.auth_token.clone();
    let delay = settings.callback_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        for params in sequence {
            let signature = sign(&token, &url, &params);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            let response = state
                .http
                .post(&url)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(SIGNATURE_HEADER, signature)
                .header(header::USER_AGENT, "TwilioProxy/1.1")
                .body(body)
                .send()
                .await;
            let response_status = response.ok().map(|r| r.status().as_u16());
            lock(&state.callbacks).push(SentCallback {
                url: url.clone(),
                params,
                response_status,
            });
        }
    });
}
