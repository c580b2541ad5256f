//! verifyd's HTTP listener: carriers' delivery receipts at `/callbacks/{carrier}` (each
//! checked by its carrier's signature) and Prometheus metrics at `/metrics` (for an admin
//! API key as `authorization: Bearer <key>`; with no API keys configured, only on a loopback
//! listener).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use verify_carrier::callback::CallbackTargets;

use crate::auth::ApiKeyCheck;
use crate::metrics::{CONTENT_TYPE, ScrapeSources, metrics};
use crate::usecases::Scope;

/// What the operator pages need.
#[derive(Clone)]
pub struct Operator {
    /// The API keys (an admin key reads the pages).
    pub keys: ApiKeyCheck,
    /// Where the HTTP listener listens (with no keys, pages are served on loopback only).
    pub address: SocketAddr,
    /// Where metrics' state gauges come from.
    pub sources: ScrapeSources,
}

impl Operator {
    /// The refusal of a request that may not read operator pages; `None` when it may.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        if !self.keys.is_enabled() {
            if self.address.ip().is_loopback() {
                return None;
            }
            return Some((
                StatusCode::FORBIDDEN,
                "no api_keys are configured: metrics are served on a loopback http.listen only; \
                 configure an admin API key and send `authorization: Bearer <key>`\n",
            )
                .into_response());
        }
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        match self.keys.caller_for(header) {
            Ok(caller) if matches!(caller.scope, Scope::Admin) => None,
            Ok(caller) => Some((
                StatusCode::FORBIDDEN,
                format!(
                    "API key `{}` belongs to a service; metrics need an admin key (one without `service`)\n",
                    caller.name()
                ),
            )
                .into_response()),
            Err(reason) => Some((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("{reason}\n"),
            )
                .into_response()),
        }
    }
}

async fn scrape(State(operator): State<Arc<Operator>>, headers: HeaderMap) -> Response {
    if let Some(refused) = operator.refusal(&headers) {
        return refused;
    }
    let text = metrics().scrape(&operator.sources).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Every route of the HTTP listener.
pub fn router(targets: CallbackTargets, operator: Operator) -> axum::Router {
    let pages = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(operator));
    verify_carrier::callback::router(targets).merge(pages)
}
