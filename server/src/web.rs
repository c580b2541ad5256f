//! verifyd's HTTP listener: carriers' delivery receipts at `/callbacks/{carrier}` (each
//! checked by its carrier's signature), and the operator pages: Prometheus metrics at
//! `/metrics` and the dashboard at `/dashboard` (for an admin API key, as `authorization:
//! Bearer <key>` or as HTTP Basic's password; with no API keys configured, only on a loopback
//! listener).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use verify_carrier::callback::CallbackTargets;

use crate::auth::ApiKeyCheck;
use crate::metrics::{CONTENT_TYPE, ScrapeSources, metrics};
use crate::usecases::{Scope, UseCases};

/// What the operator pages need.
#[derive(Clone)]
pub struct Operator {
    /// The API keys (an admin key reads the pages).
    pub keys: ApiKeyCheck,
    /// Where the HTTP listener listens (with no keys, pages are served on loopback only).
    pub address: SocketAddr,
    /// Where metrics' state gauges come from (and the dashboard's routes and blocks).
    pub sources: ScrapeSources,
    /// The use cases, once the server has built them (the listener starts earlier, for
    /// receipts): the dashboard's figures and events come from them. Held weakly, so that
    /// shutting down releases them (and the database) while the listener still serves
    /// callbacks.
    pub use_cases: Arc<OnceLock<Weak<UseCases>>>,
}

/// How a refused request is asked for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `WWW-Authenticate: Bearer` (scripts, scrapers).
    Bearer,
    /// `WWW-Authenticate: Basic` (browsers ask for a user name and password; the key is the
    /// password).
    Basic,
}

impl Operator {
    /// The refusal of a request that may not read operator pages; `None` when it may. The
    /// key may come as `Bearer <key>` or as HTTP Basic's password.
    pub fn refusal(&self, headers: &HeaderMap, challenge: Challenge) -> Option<Response> {
        if !self.keys.is_enabled() {
            if self.address.ip().is_loopback() {
                return None;
            }
            return Some(
                (
                    StatusCode::FORBIDDEN,
                    "no api_keys are configured: operator pages (/metrics, /dashboard) are served \
                 on a loopback http.listen only; configure an admin API key and send it as \
                 `authorization: Bearer <key>` or as the password of HTTP Basic\n",
                )
                    .into_response(),
            );
        }
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        match self.keys.caller_for_http(header) {
            Ok(caller) if matches!(caller.scope, Scope::Admin) => None,
            Ok(caller) => Some((
                StatusCode::FORBIDDEN,
                format!(
                    "API key `{}` belongs to a service; operator pages need an admin key (one without `service`)\n",
                    caller.name()
                ),
            )
                .into_response()),
            Err(reason) => {
                let asked = match challenge {
                    Challenge::Bearer => "Bearer",
                    Challenge::Basic => "Basic realm=\"verifyd\", charset=\"UTF-8\"",
                };
                Some(
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, asked)],
                        format!("{reason}\n"),
                    )
                        .into_response(),
                )
            }
        }
    }
}

async fn scrape(State(operator): State<Arc<Operator>>, headers: HeaderMap) -> Response {
    if let Some(refused) = operator.refusal(&headers, Challenge::Bearer) {
        return refused;
    }
    let text = metrics().scrape(&operator.sources).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Every route of the HTTP listener.
pub fn router(targets: CallbackTargets, operator: Operator) -> axum::Router {
    let operator = Arc::new(operator);
    let pages = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::clone(&operator));
    verify_carrier::callback::router(targets)
        .merge(pages)
        .merge(crate::dashboard::router(operator))
}
