//! Logs and OpenTelemetry traces. Logs go to standard error as text or JSON. With
//! `[telemetry] otlp_endpoint`, spans are exported over OTLP/gRPC: one per RPC (continuing the
//! caller's W3C `traceparent`), and for each message its send, the carrier's call and its
//! receipt. A message keeps the trace context of the request that queued it, so the send that
//! happens later, in the dispatcher, is a child of the Verify (or Notify) that caused it.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `[telemetry]`: where traces go.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP/gRPC endpoint of a collector, e.g. `http://127.0.0.1:4317`; no traces when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` spans carry.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How often finished spans are sent, in milliseconds (100 to 60000).
    #[serde(default = "default_export_interval_ms")]
    pub export_interval_ms: u64,
}

fn default_service_name() -> String {
    "verifyd".into()
}

fn default_export_interval_ms() -> u64 {
    5_000
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: default_service_name(),
            export_interval_ms: default_export_interval_ms(),
        }
    }
}

impl TelemetrySettings {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "telemetry.otlp_endpoint must start with http:// or https://, got `{endpoint}`"
            ));
        }
        if !(100..=60_000).contains(&self.export_interval_ms) {
            return Err(format!(
                "telemetry.export_interval_ms must be between 100 and 60000, got {}",
                self.export_interval_ms
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err("telemetry.service_name must not be empty".into());
        }
        Ok(())
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The installed logging and tracing; [`Telemetry::shutdown`] sends the spans still waiting.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the log subscriber and, with an OTLP endpoint, the trace exporter (call it
    /// inside the Tokio runtime: the exporter's connection runs there).
    pub fn install(settings: &TelemetrySettings, format: LogFormat) -> Result<Telemetry, String> {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
        let provider = match &settings.otlp_endpoint {
            Some(endpoint) => Some(provider(settings, endpoint)?),
            None => None,
        };
        let traces = provider
            .as_ref()
            .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("verifyd")));
        let registry = tracing_subscriber::registry().with(filter).with(traces);
        let installed = match format {
            LogFormat::Text => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
                )
                .try_init(),
            LogFormat::Json => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_current_span(false)
                        .with_span_list(false)
                        .with_writer(std::io::stderr),
                )
                .try_init(),
        };
        installed.map_err(|e| format!("logging: {e}"))?;
        if let Some(endpoint) = &settings.otlp_endpoint {
            tracing::info!(endpoint = %endpoint, service = %settings.service_name, "exporting traces over OTLP");
        }
        Ok(Telemetry { provider })
    }

    /// Sends the spans still waiting and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("traces: the last spans could not be sent: {error}");
        }
    }
}

fn provider(settings: &TelemetrySettings, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(settings.export_interval_ms))
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batches)
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// Reads a W3C `traceparent` from HTTP headers.
struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// One `traceparent` value, read or written.
#[derive(Default)]
struct TraceParent(Option<String>);

impl Extractor for TraceParent {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent")
            .then_some(self.0.as_deref())
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

impl Injector for TraceParent {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

/// Makes `span` continue the trace of the caller's `traceparent` header, if it sent one.
pub fn continue_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let context = TraceContextPropagator::new().extract(&HeaderReader(headers));
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the stored `traceparent` (a message's, from the request that
/// queued it).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let context =
            TraceContextPropagator::new().extract(&TraceParent(Some(traceparent.to_string())));
        let _ = span.set_parent(context);
    }
}

/// The current span's W3C `traceparent`, to store with what it queues; `None` when traces are
/// off (or the span is not sampled).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = TraceParent::default();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_by_key() {
        let bad = TelemetrySettings {
            otlp_endpoint: Some("collector:4317".into()),
            ..TelemetrySettings::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "telemetry.otlp_endpoint must start with http:// or https://, got `collector:4317`"
        );
        assert!(TelemetrySettings::default().validate().is_ok());
    }

    #[test]
    fn without_an_exporter_nothing_is_propagated() {
        assert_eq!(current_traceparent(), None);
    }
}

#[cfg(test)]
mod propagation_tests {
    use super::*;

    #[test]
    fn a_span_under_the_layer_has_a_traceparent() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc");
            let _entered = span.enter();
            let parent = current_traceparent().expect("a traceparent");
            // version 00, a 32-digit trace id, a 16-digit span id, sampled.
            let parts: Vec<&str> = parent.split('-').collect();
            assert_eq!(
                (parts[0], parts[1].len(), parts[2].len(), parts[3]),
                ("00", 32, 16, "01")
            );
        });
    }
}
