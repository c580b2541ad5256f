//! HTTP callbacks from carriers: delivery receipts and call status that HTTP vendors POST back.
//!
//! verifyd serves `/callbacks/{carrier}` on its callback listener and hands each request, as a
//! [`CallbackRequest`], to [`Carrier::handle_callback`](crate::Carrier::handle_callback) of the
//! carrier of that name. The carrier verifies the vendor's signature, turns the body into receipts
//! and answers with a [`CallbackResponse`]. [`router`] is that endpoint, shared by the server and
//! by carrier crates' own tests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::Carrier;

/// The largest callback body accepted; vendors send a few hundred bytes.
pub const MAX_CALLBACK_BODY: usize = 64 * 1024;

/// One HTTP request addressed to a carrier's callback URL.
#[derive(Clone, Default)]
pub struct CallbackRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// Path and query as received, e.g. `/callbacks/twilio?x=1`.
    pub path_and_query: String,
    /// Headers with lowercase names, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl CallbackRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The query string, without `?`; empty when there is none.
    pub fn query(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map(|(_, query)| query)
            .unwrap_or("")
    }

    /// The query's name/value pairs, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        decode_form(self.query().as_bytes())
    }

    /// The body as `application/x-www-form-urlencoded` pairs, percent-decoded, in order.
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        decode_form(&self.body)
    }
}

impl fmt::Debug for CallbackRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers may carry signatures or credentials and bodies carry numbers: left out.
        f.debug_struct("CallbackRequest")
            .field("method", &self.method)
            .field("path", &self.path_and_query.split('?').next())
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

fn decode_form(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// What verifyd answers the vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackResponse {
    /// HTTP status code.
    pub status: u16,
    /// Content type of `body`.
    pub content_type: &'static str,
    /// The body; vendors mostly ignore it.
    pub body: String,
    /// Why a callback was refused, for the log; `None` for an accepted callback.
    pub rejection: Option<String>,
}

impl CallbackResponse {
    /// `200 OK` with an empty body.
    pub fn ok() -> Self {
        Self::text(200, "")
    }

    /// `200 OK` with an XML body (TwiML and similar).
    pub fn xml(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: "application/xml",
            body: body.into(),
            rejection: None,
        }
    }

    /// A plain-text answer with `status`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            rejection: None,
        }
    }

    /// A refused callback (bad or missing signature, unreadable body): answered with `status`
    /// and `reason`, and logged by the endpoint with the carrier's name.
    pub fn rejected(status: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: reason.clone(),
            rejection: Some(reason),
        }
    }

    /// The answer of a carrier that takes no callbacks.
    pub fn not_found() -> Self {
        Self::rejected(404, "this carrier takes no callbacks")
    }
}

/// The carriers that callbacks can reach, by configured name.
pub type CallbackTargets = Arc<BTreeMap<String, Arc<dyn Carrier>>>;

/// The `/callbacks/{carrier}` endpoint: every method, bodies up to [`MAX_CALLBACK_BODY`], each
/// request handed to the named carrier. Refusals are logged at `warn` with the carrier, the
/// status and the reason (never the body or headers).
pub fn router(targets: CallbackTargets) -> axum::Router {
    use axum::extract::{DefaultBodyLimit, Path, State};
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use axum::response::IntoResponse;

    async fn handle(
        State(targets): State<CallbackTargets>,
        Path(name): Path<String>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let Some(carrier) = targets.get(&name) else {
            tracing::warn!(carrier = %name, "callback for an unknown carrier refused");
            return (StatusCode::NOT_FOUND, "no carrier of that name\n").into_response();
        };
        let request = CallbackRequest {
            method: method.as_str().to_string(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string()),
            headers: headers
                .iter()
                .filter_map(|(key, value)| {
                    value
                        .to_str()
                        .ok()
                        .map(|value| (key.as_str().to_string(), value.to_string()))
                })
                .collect(),
            body: body.to_vec(),
        };
        let answer = carrier.handle_callback(request).await;
        if let Some(reason) = &answer.rejection {
            tracing::warn!(carrier = %name, status = answer.status, %reason, "callback refused");
        }
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
        (
            status,
            [(header::CONTENT_TYPE, answer.content_type)],
            answer.body,
        )
            .into_response()
    }

    axum::Router::new()
        .route("/callbacks/{carrier}", axum::routing::any(handle))
        .layer(DefaultBodyLimit::max(MAX_CALLBACK_BODY))
        .with_state(targets)
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    targets: CallbackTargets,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(targets))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_query_are_decoded() {
        let request = CallbackRequest {
            method: "POST".into(),
            path_and_query: "/callbacks/t?ref=msg%5F1&x=a+b".into(),
            headers: vec![("x-signature".into(), "abc".into())],
            body: b"MessageSid=SM1&MessageStatus=delivered&To=%2B447700900123".to_vec(),
        };
        assert_eq!(request.header("X-Signature"), Some("abc"));
        assert_eq!(
            request.query_pairs(),
            vec![("ref".into(), "msg_1".into()), ("x".into(), "a b".into())]
        );
        assert_eq!(
            request.form_pairs()[2],
            ("To".into(), "+447700900123".into())
        );
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("447700900123") && !shown.contains("abc"),
            "{shown}"
        );
    }
}
