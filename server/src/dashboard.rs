//! The operator dashboard at `/dashboard` on the HTTP listener: a read-only page for an admin
//! API key (browsers ask for it as HTTP Basic's password) showing conversion and delivery by
//! country, by carrier and channel over time, fallback yield, the routes' breakers, active
//! blocks and the live event stream.
//!
//! The page, its script and the charting library (uPlot, vendored by `scripts/vendor-uplot`)
//! are embedded in the binary at build time; it loads nothing from elsewhere, and its content
//! security policy forbids it to. Its data comes from three JSON/SSE endpoints under
//! `/dashboard/api/`, answered by the same use cases as the gRPC API:
//!
//! - `stats?by=country,channel&hours=24` (or `start=`/`end=` in unix ms, `service=`,
//!   `channel=`, `country=`): `GetConversionStats`'s figures;
//! - `health`: each route's breaker, the active blocks, the outbox and the rollup's lag;
//! - `events`: the event log as server-sent events (the last `backlog` events, 200 by default,
//!   then live; `Last-Event-ID` resumes), numbers masked.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde::Serialize;
use verify_carrier::Channel;
use verify_policy::abuse::KeyKind;

use crate::access::mask_numbers;
use crate::clock::now_ms;
use crate::domain::conversion::{Dimension, GroupKey, HOUR_MS, Tally};
use crate::domain::{DeliveryStatus, RecordedEvent};
use crate::metrics::messages_in;
use crate::usecases::{Caller, StatsInput, UseCaseError, UseCases, WatchedIds};
use crate::web::{Challenge, Operator};

/// Events sent before the live ones when a page connects.
const DEFAULT_BACKLOG: i64 = 200;
/// Most events a page may ask for before the live ones.
const MAX_BACKLOG: i64 = 2_000;

/// A file of the page, embedded at build time.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/dashboard/dashboard.js"),
    },
    Asset {
        path: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/dashboard/dashboard.css"),
    },
    Asset {
        path: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/vendor/uplot/uPlot.min.css"),
    },
];

const PAGE: &str = include_str!("../assets/dashboard/index.html");

/// What the page may load and connect to: only this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The dashboard's routes, each for an admin key only.
pub fn router(operator: Arc<Operator>) -> axum::Router {
    axum::Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/assets/{file}", get(asset))
        .route("/dashboard/api/stats", get(stats))
        .route("/dashboard/api/health", get(health))
        .route("/dashboard/api/events", get(events))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&operator),
            admin_only,
        ))
        .with_state(operator)
}

/// Lets a request through only with an admin key (browsers are asked for it as HTTP Basic).
async fn admin_only(
    State(operator): State<Arc<Operator>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match operator.refusal(request.headers(), Challenge::Basic) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// Headers every dashboard answer carries.
fn guarded(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

async fn page() -> Response {
    guarded(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response(),
        "no-cache",
    )
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.path == file) {
        Some(asset) => guarded(
            ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response(),
            "private, no-cache",
        ),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

/// A JSON answer.
fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => guarded(
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
            "no-store",
        ),
        Err(error) => {
            tracing::error!(%error, "dashboard: encoding JSON failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A refusal or failure, answered as JSON: `{"field": ..., "error": ...}`.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    field: Option<&'static str>,
    error: String,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    field: Option<&'static str>,
    error: &'a str,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        json(
            self.status,
            &ProblemBody {
                field: self.field,
                error: &self.error,
            },
        )
    }
}

fn problem(status: StatusCode, field: Option<&'static str>, error: impl Into<String>) -> Problem {
    Problem {
        status,
        field,
        error: error.into(),
    }
}

/// A read of `what` that failed in the database: logged, answered 503 without the details.
fn database_failed(error: &crate::store::StoreError, what: &str) -> Problem {
    tracing::error!(%error, "dashboard: reading {what} failed");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "reading the database failed; see the server's log",
    )
}

fn use_case_problem(error: UseCaseError) -> Problem {
    match error {
        UseCaseError::InvalidArgument { field, reason } => {
            problem(StatusCode::BAD_REQUEST, Some(field), reason)
        }
        UseCaseError::NotFound { field, .. } => {
            problem(StatusCode::NOT_FOUND, Some(field), error.to_string())
        }
        UseCaseError::Internal { context, detail } => {
            tracing::error!(context, %detail, "dashboard: request failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("{context}: failed; see the server's log"),
            )
        }
        other => problem(StatusCode::BAD_REQUEST, None, other.to_string()),
    }
}

/// The use cases, or the answer to give while the server is still starting.
fn use_cases(operator: &Operator) -> Result<Arc<UseCases>, Problem> {
    let Some(weak) = operator.use_cases.get() else {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "verifyd is starting; try again in a moment",
        ));
    };
    weak.upgrade()
        .ok_or_else(|| problem(StatusCode::SERVICE_UNAVAILABLE, None, "verifyd is stopping"))
}

/// The query string's pairs.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A statistics request from the dashboard's query string.
fn stats_input(pairs: &[(String, String)], now_ms: i64) -> Result<StatsInput, Problem> {
    let bad =
        |field: &'static str, reason: String| problem(StatusCode::BAD_REQUEST, Some(field), reason);
    let number = |field: &'static str, value: &str| {
        value
            .parse::<i64>()
            .map_err(|_| bad(field, format!("`{value}` is not a whole number")))
    };
    let mut input = StatsInput::default();
    let mut hours = None;
    for (name, value) in pairs {
        match name.as_str() {
            "by" => {
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let dimension = Dimension::parse(part).ok_or_else(|| {
                        bad(
                            "by",
                            format!(
                                "`{part}` is not one of country, carrier, channel, service, day, hour"
                            ),
                        )
                    })?;
                    input.group_by.push(dimension);
                }
            }
            "hours" => {
                let value = number("hours", value)?;
                if value < 1 {
                    return Err(bad("hours", "must be 1 or more".into()));
                }
                hours = Some(value);
            }
            "start" => input.start_ms = Some(number("start", value)?),
            "end" => input.end_ms = Some(number("end", value)?),
            "service" => input.service_id = value.clone(),
            "country" => input.region_codes.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            ),
            "channel" => {
                input.channel = Some(Channel::parse(value).ok_or_else(|| {
                    bad(
                        "channel",
                        format!("`{value}` is not a channel (sms, voice)"),
                    )
                })?)
            }
            other => {
                return Err(bad(
                    "query",
                    format!(
                        "unknown parameter `{other}` (by, hours, start, end, service, country, channel)"
                    ),
                ));
            }
        }
    }
    if let Some(hours) = hours {
        let end = input.end_ms.unwrap_or(now_ms);
        input.end_ms = Some(end);
        input.start_ms = Some(end - hours.saturating_mul(HOUR_MS));
    }
    Ok(input)
}

/// One group's figures as the page reads them; rates are `null` where there is nothing to
/// divide by.
#[derive(Serialize)]
struct Figures {
    region_code: Option<String>,
    carrier: Option<String>,
    channel: Option<String>,
    service_id: Option<String>,
    period_start_ms: Option<i64>,
    verifications: u64,
    approved: u64,
    conversion_rate: Option<f64>,
    sent: u64,
    delivered: u64,
    failed: u64,
    delivery_rate: Option<f64>,
    approval_time_p50_ms: Option<i64>,
    approval_time_p90_ms: Option<i64>,
    fallback_sent: u64,
    fallback_approved: u64,
    fallback_yield: Option<f64>,
    cost: f64,
    sent_without_cost: u64,
}

impl Figures {
    fn of(group: &GroupKey, tally: &Tally) -> Figures {
        Figures {
            region_code: group.country.clone(),
            carrier: group.carrier.clone(),
            channel: group.channel.clone(),
            service_id: group.service_id.clone(),
            period_start_ms: group.period_start_ms,
            verifications: tally.verifications,
            approved: tally.approved,
            conversion_rate: tally.conversion_rate(),
            sent: tally.sent,
            delivered: tally.delivered,
            failed: tally.failed,
            delivery_rate: tally.delivery_rate(),
            approval_time_p50_ms: tally.approval_time_quantile_ms(0.5),
            approval_time_p90_ms: tally.approval_time_quantile_ms(0.9),
            fallback_sent: tally.fallback_sent,
            fallback_approved: tally.fallback_approved,
            fallback_yield: tally.fallback_yield(),
            cost: tally.cost_micros as f64 / 1e6,
            sent_without_cost: tally.sent.saturating_sub(tally.costed_sent),
        }
    }
}

#[derive(Serialize)]
struct StatsBody {
    rows: Vec<Figures>,
    total: Figures,
    start_ms: i64,
    end_ms: i64,
    counted_through_cursor: i64,
}

async fn stats(State(operator): State<Arc<Operator>>, RawQuery(query): RawQuery) -> Response {
    let use_cases = match use_cases(&operator) {
        Ok(use_cases) => use_cases,
        Err(problem) => return problem.into_response(),
    };
    let input = match stats_input(&query_pairs(query.as_deref()), now_ms()) {
        Ok(input) => input,
        Err(problem) => return problem.into_response(),
    };
    match use_cases
        .conversion_stats(&Caller::admin("dashboard"), &input)
        .await
    {
        Ok(answer) => json(
            StatusCode::OK,
            &StatsBody {
                rows: answer
                    .rows
                    .iter()
                    .map(|row| Figures::of(&row.group, &row.tally))
                    .collect(),
                total: Figures::of(&GroupKey::default(), &answer.total),
                start_ms: answer.start_ms,
                end_ms: answer.end_ms,
                counted_through_cursor: answer.counted_through_cursor,
            },
        ),
        Err(error) => use_case_problem(error).into_response(),
    }
}

#[derive(Serialize)]
struct RouteHealth {
    carrier: String,
    region: String,
    channel: &'static str,
    state: &'static str,
    cause: Option<String>,
    consecutive_failures: u32,
    window_calls: u32,
    window_failures: u32,
    times_opened: u64,
    probes_in_ms: Option<u64>,
}

#[derive(Serialize)]
struct BlockView {
    id: String,
    kind: &'static str,
    target: String,
    rule: &'static str,
    enforced: bool,
    reason: String,
    strike: u32,
    started_ms: i64,
    ends_ms: i64,
}

#[derive(Serialize)]
struct OutboxDepth {
    scheduled: i64,
    queued: i64,
    claimed: i64,
    sending: i64,
}

#[derive(Serialize)]
struct HealthBody {
    now_ms: i64,
    routes: Vec<RouteHealth>,
    blocks: Vec<BlockView>,
    outbox: OutboxDepth,
    latest_cursor: i64,
    counted_through_cursor: i64,
}

/// Most blocks the page lists.
const BLOCKS_SHOWN: u32 = 200;

async fn health(State(operator): State<Arc<Operator>>) -> Response {
    let store = &operator.sources.store;
    let now = now_ms();
    let read = async {
        let depth = store.outbox_depth().await?;
        let blocks = store.list_blocks(Some(now), BLOCKS_SHOWN).await?;
        let latest = store.latest_event_cursor().await?;
        let counted = store.conversion_rollup_cursor().await?;
        Ok::<_, crate::store::StoreError>((depth, blocks, latest, counted))
    };
    let (depth, blocks, latest_cursor, counted_through_cursor) = match read.await {
        Ok(read) => read,
        Err(error) => return database_failed(&error, "health").into_response(),
    };
    let count = |status| messages_in(&depth, status);
    let routes = operator
        .sources
        .breakers
        .snapshots(Instant::now())
        .into_iter()
        .map(|(route, snapshot)| RouteHealth {
            carrier: route.carrier.clone(),
            region: route.region.clone(),
            channel: route.channel.as_str(),
            state: snapshot.state.as_str(),
            cause: snapshot.cause.clone(),
            consecutive_failures: snapshot.consecutive_failures,
            window_calls: snapshot.window_calls,
            window_failures: snapshot.window_failures,
            times_opened: snapshot.times_opened,
            probes_in_ms: snapshot
                .probes_in
                .map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
        })
        .collect();
    let blocks = blocks
        .into_iter()
        .map(|block| BlockView {
            target: match block.target.kind {
                KeyKind::Number => mask_numbers(&block.target.value),
                _ => block.target.value.clone(),
            },
            kind: block.target.kind.as_str(),
            rule: block.rule.as_str(),
            enforced: block.enforced,
            reason: mask_numbers(&block.reason),
            strike: block.strike,
            started_ms: block.started_ms,
            ends_ms: block.ends_ms,
            id: block.id,
        })
        .collect();
    json(
        StatusCode::OK,
        &HealthBody {
            now_ms: now,
            routes,
            blocks,
            outbox: OutboxDepth {
                scheduled: count(DeliveryStatus::Scheduled),
                queued: count(DeliveryStatus::Queued),
                claimed: count(DeliveryStatus::Claimed),
                sending: count(DeliveryStatus::Sending),
            },
            latest_cursor,
            counted_through_cursor,
        },
    )
}

/// An event as the page shows it: no code, numbers masked.
#[derive(Serialize)]
struct EventView<'a> {
    cursor: i64,
    at_ms: i64,
    event: &'static str,
    subject: &'a str,
    service_id: &'a str,
    status: &'static str,
    carrier: Option<&'a str>,
    channel: Option<&'static str>,
    message_status: Option<&'static str>,
    detail: String,
}

impl<'a> EventView<'a> {
    fn of(recorded: &'a RecordedEvent) -> EventView<'a> {
        let event = &recorded.event;
        EventView {
            cursor: recorded.cursor,
            at_ms: event.at_ms,
            event: event.kind.as_str(),
            subject: event.subject.id(),
            service_id: &event.service_id,
            status: event.subject_status.as_str(),
            carrier: event.message.as_ref().map(|m| m.carrier.as_str()),
            channel: event.message.as_ref().map(|m| m.channel.as_str()),
            message_status: event.message.as_ref().map(|m| m.status.as_str()),
            detail: mask_numbers(&event.detail),
        }
    }
}

async fn events(
    State(operator): State<Arc<Operator>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let use_cases = match use_cases(&operator) {
        Ok(use_cases) => use_cases,
        Err(problem) => return problem.into_response(),
    };
    let mut backlog = DEFAULT_BACKLOG;
    for (name, value) in query_pairs(query.as_deref()) {
        match (name.as_str(), value.parse::<i64>()) {
            ("backlog", Ok(n)) if (0..=MAX_BACKLOG).contains(&n) => backlog = n,
            ("backlog", _) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    Some("backlog"),
                    format!("`{value}` is not a number from 0 to {MAX_BACKLOG}"),
                )
                .into_response();
            }
            _ => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    Some("query"),
                    format!("unknown parameter `{name}` (backlog)"),
                )
                .into_response();
            }
        }
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let after = match resume {
        Some(cursor) => cursor,
        None => match operator.sources.store.latest_event_cursor().await {
            Ok(latest) => u64::try_from((latest - backlog).max(0)).unwrap_or(0),
            Err(error) => return database_failed(&error, "the event log").into_response(),
        },
    };
    let stream = match use_cases
        .watch(
            &Caller::admin("dashboard"),
            WatchedIds::default(),
            "",
            after,
        )
        .await
    {
        Ok(stream) => stream,
        Err(error) => return use_case_problem(error).into_response(),
    };
    let stream = stream.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(recorded) => match serde_json::to_string(&EventView::of(&recorded)) {
                Ok(data) => SseEvent::default()
                    .id(recorded.cursor.to_string())
                    .data(data),
                Err(_) => SseEvent::default().comment("unencodable event"),
            },
            Err(error) => SseEvent::default().event("error").data(error.to_string()),
        })
    });
    guarded(
        Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
        "no-store",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query_pairs(Some(query))
    }

    async fn refusal_text(answer: Response) -> (StatusCode, String) {
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), 10_000)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn the_query_string_becomes_a_statistics_request() {
        let input = stats_input(
            &pairs("by=country,channel&hours=24&country=HN,GB&channel=sms&service=shop"),
            100 * HOUR_MS,
        )
        .unwrap_or_else(|_| panic!("refused"));
        assert_eq!(input.group_by, [Dimension::Country, Dimension::Channel]);
        assert_eq!(input.end_ms, Some(100 * HOUR_MS));
        assert_eq!(input.start_ms, Some(76 * HOUR_MS));
        assert_eq!(input.region_codes, ["HN", "GB"]);
        assert_eq!(input.channel, Some(Channel::Sms));
        assert_eq!(input.service_id, "shop");
    }

    #[tokio::test]
    async fn bad_parameters_name_the_field() {
        for (query, expected) in [
            (
                "by=planet",
                r#"{"field":"by","error":"`planet` is not one of country, carrier, channel, service, day, hour"}"#,
            ),
            (
                "hours=soon",
                r#"{"field":"hours","error":"`soon` is not a whole number"}"#,
            ),
            (
                "hours=0",
                r#"{"field":"hours","error":"must be 1 or more"}"#,
            ),
            (
                "channel=fax",
                r#"{"field":"channel","error":"`fax` is not a channel (sms, voice)"}"#,
            ),
            (
                "colour=red",
                r#"{"field":"query","error":"unknown parameter `colour` (by, hours, start, end, service, country, channel)"}"#,
            ),
        ] {
            let Err(answer) = stats_input(&pairs(query), 0) else {
                panic!("{query} accepted");
            };
            assert_eq!(
                refusal_text(answer.into_response()).await,
                (StatusCode::BAD_REQUEST, expected.to_string()),
                "{query}"
            );
        }
    }

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        for name in [
            "dashboard.js",
            "dashboard.css",
            "uPlot.iife.min.js",
            "uPlot.min.css",
        ] {
            assert!(
                PAGE.contains(&format!("/dashboard/assets/{name}")),
                "index.html does not load {name}"
            );
            assert!(ASSETS.iter().any(|asset| asset.path == name));
        }
    }

    #[test]
    fn vendored_assets_match_their_checksums() {
        use sha2::{Digest, Sha256};
        let sums = include_str!("../assets/vendor/uplot/SHA256SUMS");
        let mut checked = 0;
        for line in sums.lines().filter(|line| !line.starts_with('#')) {
            let (sum, name) = line.split_once("  ").expect("sha256sum format");
            let body = match name {
                "LICENSE" => include_bytes!("../assets/vendor/uplot/LICENSE").as_slice(),
                _ => {
                    ASSETS
                        .iter()
                        .find(|asset| asset.path == name)
                        .unwrap_or_else(|| panic!("{name} is not embedded"))
                        .body
                }
            };
            assert_eq!(
                hex::encode(Sha256::digest(body)),
                sum,
                "{name} differs from what scripts/vendor-uplot wrote"
            );
            checked += 1;
        }
        assert_eq!(checked, 3);
    }
}
