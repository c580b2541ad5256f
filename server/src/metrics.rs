//! Prometheus metrics, served as OpenMetrics text on the HTTP listener's `/metrics`.
//!
//! Counters and histograms are updated where things happen: each RPC by the access layer
//! (`access.rs`), each committed event by the store, each submission by the dispatcher, each
//! receipt as it is applied. Gauges of state (queued messages, breakers, blocks, conversion,
//! the rollup's lag) are read from their sources at each scrape. One set per process: with
//! several replicas, sum the counters across them; the state gauges are the same on each.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use verify_policy::routing::{BreakerState, CircuitBreakers};

use crate::clock::now_ms;
use crate::domain::conversion::{DAY_MS, Dimension, HOUR_MS, StatsQuery};
use crate::domain::{DeliveryStatus, Event, EventKind};
use crate::store::SqlStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    carrier: String,
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubmitLabels {
    carrier: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CarrierLabels {
    carrier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    carrier: String,
    region: String,
    channel: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlockLabels {
    kind: String,
    rule: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CountryLabels {
    country: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn fast_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

fn slow_histogram() -> Histogram {
    // 0.25 s to about 2.3 h.
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

/// Every metric verifyd exports.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_seconds: Histograms<RpcLabels>,
    events: Family<EventLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    submit_seconds: Histograms<SubmitLabels>,
    receipt_lag_seconds: Histograms<CarrierLabels>,
    outbox_messages: Family<StatusLabels, Gauge>,
    breaker_state: Family<BreakerLabels, Gauge>,
    active_blocks: Family<BlockLabels, Gauge>,
    verifications_24h: Family<CountryLabels, Gauge>,
    conversion_24h: Family<CountryLabels, Gauge<f64, AtomicU64>>,
    rollup_lag_events: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("verifyd");
        let metrics = Metrics {
            rpc_requests: Family::default(),
            rpc_seconds: Family::new_with_constructor(fast_histogram),
            events: Family::default(),
            messages: Family::default(),
            submit_seconds: Family::new_with_constructor(fast_histogram),
            receipt_lag_seconds: Family::new_with_constructor(slow_histogram),
            outbox_messages: Family::default(),
            breaker_state: Family::default(),
            active_blocks: Family::default(),
            verifications_24h: Family::default(),
            conversion_24h: Family::default(),
            rollup_lag_events: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "rpc_requests",
            "gRPC calls answered, by method and status code",
            metrics.rpc_requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Time from a gRPC call's arrival to its last byte (a stream's whole life), by method and status code",
            metrics.rpc_seconds.clone(),
        );
        registry.register(
            "events",
            "Events committed by this process, by type (verification_created, message_delivered ...)",
            metrics.events.clone(),
        );
        registry.register(
            "messages",
            "Message state changes committed by this process, by carrier, channel and outcome (queued, scheduled, submitted, maybe_sent, rerouted, delivered, failed, canceled, requeued)",
            metrics.messages.clone(),
        );
        registry.register(
            "carrier_submit_duration_seconds",
            "Time a carrier took to answer a submission, by carrier and outcome (accepted, refused, maybe_sent)",
            metrics.submit_seconds.clone(),
        );
        registry.register(
            "receipt_lag_seconds",
            "Time from a carrier's acceptance of a message to its delivery receipt, by carrier",
            metrics.receipt_lag_seconds.clone(),
        );
        registry.register(
            "outbox_messages",
            "Messages not yet handed to a carrier, by status (scheduled, queued, claimed, sending)",
            metrics.outbox_messages.clone(),
        );
        registry.register(
            "breaker_state",
            "Each route's circuit breaker: 1 for its current state (closed, open, half_open)",
            metrics.breaker_state.clone(),
        );
        registry.register(
            "active_blocks",
            "Blocks abuse defense holds now, by kind (number, number_prefix, country), rule and mode (enforced, or monitor: recorded, not enforced)",
            metrics.active_blocks.clone(),
        );
        registry.register(
            "verifications_24h",
            "Verifications created in the last 24 hours that ended, by country",
            metrics.verifications_24h.clone(),
        );
        registry.register(
            "conversion_24h",
            "Approved / ended verifications created in the last 24 hours, by country",
            metrics.conversion_24h.clone(),
        );
        registry.register(
            "stats_rollup_lag_events",
            "Events recorded and not yet in the conversion statistics",
            metrics.rollup_lag_events.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts an answered gRPC call.
    pub fn rpc(&self, method: &str, code: &str, elapsed: Duration) {
        let labels = RpcLabels {
            method: method.to_string(),
            code: code.to_string(),
        };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts events this process committed (and the message changes among them).
    pub fn committed(&self, events: &[Event]) {
        for event in events {
            self.events
                .get_or_create(&EventLabels {
                    event: event.kind.as_str().to_string(),
                })
                .inc();
            if let Some(message) = &event.message
                && let Some(outcome) = message_outcome(event.kind)
            {
                self.messages
                    .get_or_create(&MessageLabels {
                        carrier: message.carrier.clone(),
                        channel: message.channel.as_str().to_string(),
                        outcome: outcome.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Times a carrier's answer to a submission.
    pub fn submitted(&self, carrier: &str, outcome: &str, elapsed: Duration) {
        self.submit_seconds
            .get_or_create(&SubmitLabels {
                carrier: carrier.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Times a receipt from the message's acceptance (`accepted_at_ms`) to `now_ms`.
    pub fn receipt(&self, carrier: &str, accepted_at_ms: i64, now_ms: i64) {
        let lag = (now_ms - accepted_at_ms).max(0) as f64 / 1000.0;
        self.receipt_lag_seconds
            .get_or_create(&CarrierLabels {
                carrier: carrier.to_string(),
            })
            .observe(lag);
    }

    /// Reads the state gauges from their sources, then renders every metric.
    pub async fn scrape(&self, sources: &ScrapeSources) -> String {
        let started = Instant::now();
        if let Err(error) = self.refresh(sources).await {
            tracing::warn!(%error, "metrics: reading state for the gauges failed; they keep their last values");
        }
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::error!(%error, "metrics: encoding failed");
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "metrics scraped"
        );
        text
    }

    async fn refresh(&self, sources: &ScrapeSources) -> Result<(), String> {
        let store = &sources.store;
        let depth = store.outbox_depth().await.map_err(|e| e.to_string())?;
        self.outbox_messages.clear();
        for status in [
            DeliveryStatus::Scheduled,
            DeliveryStatus::Queued,
            DeliveryStatus::Claimed,
            DeliveryStatus::Sending,
        ] {
            let count = messages_in(&depth, status);
            self.outbox_messages
                .get_or_create(&StatusLabels {
                    status: status.as_str().to_string(),
                })
                .set(count);
        }

        self.breaker_state.clear();
        for (route, snapshot) in sources.breakers.snapshots(Instant::now()) {
            for state in [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen,
            ] {
                self.breaker_state
                    .get_or_create(&BreakerLabels {
                        carrier: route.carrier.clone(),
                        region: route.region.clone(),
                        channel: route.channel.as_str().to_string(),
                        state: state.as_str().to_string(),
                    })
                    .set(i64::from(snapshot.state == state));
            }
        }

        let now = now_ms();
        let blocks = store
            .list_blocks(Some(now), 10_000)
            .await
            .map_err(|e| e.to_string())?;
        self.active_blocks.clear();
        for block in &blocks {
            self.active_blocks
                .get_or_create(&BlockLabels {
                    kind: block.target.kind.as_str().to_string(),
                    rule: block.rule.as_str().to_string(),
                    mode: if block.enforced {
                        "enforced"
                    } else {
                        "monitor"
                    }
                    .to_string(),
                })
                .inc();
        }

        let to_ms = (now / HOUR_MS + 1) * HOUR_MS;
        let day = StatsQuery {
            from_ms: to_ms - DAY_MS - HOUR_MS,
            to_ms,
            group_by: vec![Dimension::Country],
            service_id: None,
            countries: Vec::new(),
            channel: None,
        };
        let rows = store
            .conversion_stats(&day)
            .await
            .map_err(|e| e.to_string())?;
        self.verifications_24h.clear();
        self.conversion_24h.clear();
        for row in rows {
            let labels = CountryLabels {
                country: row.group.country.unwrap_or_default(),
            };
            self.verifications_24h
                .get_or_create(&labels)
                .set(i64::try_from(row.tally.verifications).unwrap_or(i64::MAX));
            if let Some(rate) = row.tally.conversion_rate() {
                self.conversion_24h.get_or_create(&labels).set(rate);
            }
        }

        let latest = store
            .latest_event_cursor()
            .await
            .map_err(|e| e.to_string())?;
        let rolled = store
            .conversion_rollup_cursor()
            .await
            .map_err(|e| e.to_string())?;
        self.rollup_lag_events.set((latest - rolled).max(0));
        Ok(())
    }
}

/// Of the outbox's depth by status (as `SqlStore::outbox_depth` reads it), the messages in
/// `status` (0 when none).
pub fn messages_in(depth: &[(DeliveryStatus, i64)], status: DeliveryStatus) -> i64 {
    depth
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(0, |(_, n)| *n)
}

/// Where the state gauges are read from at each scrape.
#[derive(Clone)]
pub struct ScrapeSources {
    /// The database (outbox, blocks, statistics, event log).
    pub store: Arc<SqlStore>,
    /// The routes' circuit breakers.
    pub breakers: Arc<CircuitBreakers>,
}

/// The `outcome` label of a message's event; `None` for events that are not a message's own.
fn message_outcome(kind: EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::MessageQueued => "queued",
        EventKind::NotificationScheduled => "scheduled",
        EventKind::MessageSubmitted => "submitted",
        EventKind::MessageMaybeSent => "maybe_sent",
        EventKind::MessageRerouted => "rerouted",
        EventKind::MessageDelivered => "delivered",
        EventKind::MessageFailed => "failed",
        EventKind::MessageCanceled => "canceled",
        EventKind::MessageRequeued => "requeued",
        _ => return None,
    })
}

/// What the store calls once events are committed: counts them, and logs (at info) the
/// receipts and fallback steps among them, which say where a code went.
pub fn record_committed(events: &[Event]) {
    if events.is_empty() {
        return;
    }
    metrics().committed(events);
    for event in events {
        let subject = event.subject.id();
        match (event.kind, &event.message) {
            (EventKind::MessageDelivered | EventKind::MessageFailed, Some(message)) => {
                tracing::info!(
                    target: "verifyd::events",
                    subject,
                    message_id = %message.id,
                    carrier = %message.carrier,
                    channel = message.channel.as_str(),
                    status = message.status.as_str(),
                    detail = %crate::access::mask_numbers(&event.detail),
                    "receipt"
                );
            }
            (EventKind::FallbackStep, _) => {
                tracing::info!(target: "verifyd::events", subject, detail = %crate::access::mask_numbers(&event.detail), "fallback step");
            }
            _ => {}
        }
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The content type of [`Metrics::scrape`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_openmetrics_with_their_labels() {
        let metrics = Metrics::new();
        metrics.rpc("Verify", "OK", Duration::from_millis(3));
        metrics.rpc("Verify", "OK", Duration::from_millis(5));
        metrics.submitted("sim", "accepted", Duration::from_millis(1));
        let mut text = String::new();
        encode(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains("verifyd_rpc_requests_total{method=\"Verify\",code=\"OK\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE verifyd_rpc_duration_seconds histogram"));
        assert!(text.contains(
            "verifyd_carrier_submit_duration_seconds_count{carrier=\"sim\",outcome=\"accepted\"} 1"
        ));
        assert!(text.ends_with("# EOF\n"));
    }
}
