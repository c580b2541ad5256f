//! The simulated carrier: the embedded default of verifyd.
//!
//! It delivers (or fails) each message after a configurable latency with a configurable
//! probability per country, reports receipts like a real carrier, and appends every delivered
//! message to a JSON-lines outbox file so a person can read the code they were "sent".

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde::{Deserialize, Serialize};
use verify_carrier::{
    Capabilities, Carrier, CarrierContext, CarrierError, CarrierRegistry, Channel, DeliveryReceipt,
    ErrorKind, InFlightGate, OutboundMessage, ReceiptSink, ReceiptStatus, SubmitAccepted,
};

/// The kind name under which this carrier registers.
pub const KIND: &str = "sim";

/// Adds the `sim` kind to a registry.
pub fn register(registry: &mut CarrierRegistry) {
    registry.register(KIND, build);
}

/// Delivery behaviour for one country (or the default for all).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryProfile {
    /// Chance, 0.0 to 1.0, that a message is delivered; otherwise its receipt says failed.
    #[serde(default = "default_probability")]
    pub delivery_probability: f64,
    /// Time from submission to the delivery receipt, in milliseconds.
    #[serde(default = "default_latency_ms")]
    pub latency_ms: u64,
}

fn default_probability() -> f64 {
    1.0
}

fn default_latency_ms() -> u64 {
    50
}

impl Default for DeliveryProfile {
    fn default() -> Self {
        Self {
            delivery_probability: default_probability(),
            latency_ms: default_latency_ms(),
        }
    }
}

/// Settings of a `sim` carrier, from its `[[carriers]]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// JSON-lines file that receives every delivered message.
    #[serde(default = "default_outbox")]
    pub outbox: PathBuf,
    /// Delivery behaviour for countries without their own entry.
    #[serde(default, flatten)]
    pub default_profile: DeliveryProfile,
    /// Per-country delivery behaviour, keyed by ISO 3166-1 alpha-2 region, e.g. `HN`.
    #[serde(default)]
    pub countries: HashMap<String, DeliveryProfile>,
    /// Channels it carries; both by default.
    #[serde(default = "default_channels")]
    pub channels: Vec<Channel>,
    /// Time a submission takes before the carrier answers, in milliseconds.
    #[serde(default)]
    pub submit_latency_ms: u64,
    /// Fixed outcomes for chosen destinations (E.164), e.g. `"+50499123456" = "reject"`: how a
    /// test or a demo makes the simulator fail on demand.
    #[serde(default)]
    pub destinations: HashMap<String, SimOutcome>,
    /// How long a `hang` destination keeps the submission waiting before the maybe-sent error,
    /// in milliseconds.
    #[serde(default = "default_hang_ms")]
    pub hang_ms: u64,
    /// The simulated route's throughput, messages per second: declared to routing, and
    /// enforced as a throttling SMSC does (a submission over it is refused for now, with the
    /// rate-limited error). None by default.
    #[serde(default)]
    pub max_messages_per_second: Option<u32>,
}

/// What the simulator does with messages to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimOutcome {
    /// Accept and report delivered.
    Deliver,
    /// Accept and report the delivery failed.
    Fail,
    /// Refuse for good, as for an unknown subscriber.
    Reject,
    /// Refuse for now, as a throttled bind does.
    Throttle,
    /// Behave as an unreachable peer.
    Down,
    /// Behave as a peer that took the message and went silent: answer nothing for `hang_ms`,
    /// then give up with a *maybe sent* error. Nothing is written to the outbox and no receipt
    /// follows.
    Hang,
}

fn default_hang_ms() -> u64 {
    1000
}

fn default_outbox() -> PathBuf {
    PathBuf::from("verifyd-sim-outbox.jsonl")
}

fn default_channels() -> Vec<Channel> {
    vec![Channel::Sms, Channel::Voice]
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            outbox: default_outbox(),
            default_profile: DeliveryProfile::default(),
            countries: HashMap::new(),
            channels: default_channels(),
            submit_latency_ms: 0,
            destinations: HashMap::new(),
            hang_ms: default_hang_ms(),
            max_messages_per_second: None,
        }
    }
}

impl SimConfig {
    /// Checks value ranges that serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        let profiles = std::iter::once(("default", &self.default_profile))
            .chain(self.countries.iter().map(|(k, v)| (k.as_str(), v)));
        for (scope, profile) in profiles {
            if !(0.0..=1.0).contains(&profile.delivery_probability) {
                return Err(format!(
                    "{scope}: delivery_probability must be between 0.0 and 1.0, got {}",
                    profile.delivery_probability
                ));
            }
        }
        if self.channels.is_empty() {
            return Err("channels must name at least one of sms, voice".into());
        }
        if self.max_messages_per_second == Some(0) {
            return Err(
                "max_messages_per_second must be above 0 (leave it out for no limit)".into(),
            );
        }
        Ok(())
    }

    fn profile_for(&self, region: Option<&str>) -> DeliveryProfile {
        region
            .and_then(|r| self.countries.get(r))
            .copied()
            .unwrap_or(self.default_profile)
    }
}

/// One line of the outbox file.
#[derive(Debug, Serialize, Deserialize)]
pub struct OutboxLine {
    /// The verification the message belongs to.
    pub verification_id: String,
    /// verifyd's message id.
    pub message_id: String,
    /// The simulator's message id, as a real carrier would return it.
    pub carrier_message_id: String,
    /// Destination in E.164.
    pub to: String,
    /// `sms` or `voice`.
    pub channel: Channel,
    /// The text sent (or spoken).
    pub body: String,
    /// The code, so people and tests can read it without parsing the body.
    pub code: String,
    /// Locale of the text.
    pub locale: String,
    /// When it was delivered, RFC 3339.
    pub delivered_at: String,
    /// Where it came from: the sender shown, when the message set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Registration values carried with it (India's `dlt_entity_id`, `dlt_template_id`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

fn build(
    settings: &serde_json::Value,
    context: CarrierContext,
) -> Result<Arc<dyn Carrier>, CarrierError> {
    let config: SimConfig = if settings.is_null() {
        SimConfig::default()
    } else {
        context.parse_settings(settings)?
    };
    config.validate().map_err(|e| context.config_error(e))?;
    Ok(Arc::new(SimCarrier::new(
        context.name,
        config,
        context.receipts,
    )))
}

/// The simulated carrier.
pub struct SimCarrier {
    name: String,
    config: SimConfig,
    shared: Arc<Shared>,
}

struct Shared {
    receipts: ReceiptSink,
    /// The outbox file, opened on first use and kept open: each line is one `write` of a few
    /// hundred bytes to the page cache, done in place under this lock (no thread hand-off,
    /// no reopening per message).
    outbox: std::sync::Mutex<Option<std::fs::File>>,
    /// Counts submissions until their receipt is delivered, so shutdown can wait for them.
    gate: InFlightGate,
    /// The throughput limit's tokens and when they were last counted.
    throttle: std::sync::Mutex<(f64, std::time::Instant)>,
}

/// The most submissions the simulator takes at once above its rate, in seconds of the rate.
const THROTTLE_BURST_SECONDS: f64 = 0.25;

impl Shared {
    /// Takes one submission's token at `rate` per second; `false` when over the rate.
    fn within_rate(&self, rate: u32) -> bool {
        let rate = f64::from(rate);
        let burst = (rate * THROTTLE_BURST_SECONDS).max(1.0);
        let mut state = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, counted) = &mut *state;
        let now = std::time::Instant::now();
        *tokens = (*tokens + rate * now.duration_since(*counted).as_secs_f64()).min(burst);
        *counted = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl SimCarrier {
    /// A simulator named `name` that reports receipts to `receipts`.
    pub fn new(name: String, config: SimConfig, receipts: ReceiptSink) -> Self {
        Self {
            name,
            config,
            shared: Arc::new(Shared {
                receipts,
                outbox: std::sync::Mutex::new(None),
                gate: InFlightGate::new(),
                throttle: std::sync::Mutex::new((0.0, std::time::Instant::now())),
            }),
        }
    }
}

#[async_trait]
impl Carrier for SimCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: self.config.channels.clone(),
            regions: Vec::new(),
            max_messages_per_second: self.config.max_messages_per_second,
            delivery_receipts: true,
            deduplicates_submissions: false,
        }
    }

    async fn submit(&self, message: OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        let Some(in_flight) = self.shared.gate.try_enter() else {
            return Err(CarrierError::new(
                ErrorKind::ShuttingDown,
                "simulator is shutting down",
            ));
        };
        if !self.config.channels.contains(&message.channel) {
            return Err(CarrierError::new(
                ErrorKind::Unsupported,
                format!(
                    "simulator `{}` does not carry {}",
                    self.name, message.channel
                ),
            ));
        }
        if let Some(rate) = self.config.max_messages_per_second
            && !self.shared.within_rate(rate)
        {
            return Err(CarrierError::new(
                ErrorKind::RateLimited,
                format!("simulated throttling: over {rate} messages per second, retry later"),
            ));
        }
        if self.config.submit_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.submit_latency_ms)).await;
        }
        let profile = self.config.profile_for(message.region_code.as_deref());
        let delivered = match self.config.destinations.get(&message.to) {
            Some(SimOutcome::Reject) => {
                return Err(CarrierError::new(
                    ErrorKind::InvalidDestination,
                    "simulated refusal: unknown subscriber",
                ));
            }
            Some(SimOutcome::Throttle) => {
                return Err(CarrierError::new(
                    ErrorKind::RateLimited,
                    "simulated throttling: too many messages, retry later",
                ));
            }
            Some(SimOutcome::Down) => {
                return Err(CarrierError::new(
                    ErrorKind::Unavailable,
                    "simulated outage: the carrier cannot be reached",
                ));
            }
            Some(SimOutcome::Hang) => {
                tokio::time::sleep(Duration::from_millis(self.config.hang_ms)).await;
                return Err(CarrierError::maybe_sent(
                    ErrorKind::Timeout,
                    format!(
                        "simulated silence: the carrier took the request and did not answer within {} ms",
                        self.config.hang_ms
                    ),
                ));
            }
            Some(SimOutcome::Fail) => false,
            Some(SimOutcome::Deliver) => true,
            None => rand::rng().random_bool(profile.delivery_probability),
        };
        let carrier_message_id = format!("sim-{}", uuid::Uuid::now_v7().simple());

        let shared = Arc::clone(&self.shared);
        let carrier = self.name.clone();
        let outbox = self.config.outbox.clone();
        let id = carrier_message_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(profile.latency_ms)).await;
            let receipt = if delivered {
                match shared.append_to_outbox(&outbox, &message, &id).await {
                    Ok(()) => receipt(
                        &carrier,
                        &id,
                        &message,
                        ReceiptStatus::Delivered,
                        "stat:DELIVRD",
                    ),
                    Err(e) => {
                        tracing::error!(carrier, path = %outbox.display(), error = %e, "simulator could not write its outbox");
                        receipt(
                            &carrier,
                            &id,
                            &message,
                            ReceiptStatus::Failed,
                            "stat:UNDELIV outbox not writable",
                        )
                    }
                }
            } else {
                receipt(
                    &carrier,
                    &id,
                    &message,
                    ReceiptStatus::Failed,
                    "stat:UNDELIV err:001 simulated failure",
                )
            };
            shared.receipts.deliver(receipt).await;
            drop(in_flight);
        });
        Ok(SubmitAccepted { carrier_message_id })
    }

    async fn shutdown(&self) {
        self.shared.gate.close();
        self.shared.gate.wait_idle(None).await;
    }
}

fn receipt(
    carrier: &str,
    carrier_message_id: &str,
    message: &OutboundMessage,
    status: ReceiptStatus,
    detail: &str,
) -> DeliveryReceipt {
    DeliveryReceipt {
        carrier: carrier.to_string(),
        carrier_message_id: carrier_message_id.to_string(),
        message_id: Some(message.message_id.clone()),
        status,
        detail: detail.to_string(),
        alternative_ids: Vec::new(),
    }
}

impl Shared {
    async fn append_to_outbox(
        &self,
        path: &std::path::Path,
        message: &OutboundMessage,
        carrier_message_id: &str,
    ) -> std::io::Result<()> {
        let line = OutboxLine {
            verification_id: message.verification_id.clone(),
            message_id: message.message_id.clone(),
            carrier_message_id: carrier_message_id.to_string(),
            to: message.to.clone(),
            channel: message.channel,
            body: message.body.clone(),
            code: message.code.expose().to_string(),
            locale: message.locale.clone(),
            delivered_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            sender: message.sender.clone(),
            attributes: message
                .attributes
                .iter()
                .filter(|(name, _)| !name.starts_with("verifyd."))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        };
        let mut text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
        text.push('\n');
        // One writer at a time, one write per line: readers never see half a line.
        let mut outbox = self
            .outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if outbox.is_none() {
            *outbox = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            );
        }
        let file = outbox.as_mut().expect("opened above");
        std::io::Write::write_all(file, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verify_carrier::OneTimeCode;

    fn message(region: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: "msg_1".into(),
            verification_id: "vf_1".into(),
            to: "+50499123456".into(),
            region_code: Some(region.into()),
            channel: Channel::Sms,
            body: "Your verification code is 123456".into(),
            code: OneTimeCode::new("123456"),
            locale: "en".into(),
            sender: None,
            attributes: Default::default(),
        }
    }

    fn carrier(
        settings: serde_json::Value,
    ) -> (
        Arc<dyn Carrier>,
        tokio::sync::mpsc::Receiver<DeliveryReceipt>,
    ) {
        verify_carrier::test_support::build(register, KIND, "sim", settings, None).into_parts()
    }

    #[tokio::test]
    async fn delivered_message_lands_in_outbox_before_its_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.jsonl");
        let (carrier, mut rx) = carrier(serde_json::json!({ "outbox": outbox, "latency_ms": 1 }));
        let accepted = carrier.submit(message("GB")).await.unwrap();
        let receipt = rx.recv().await.unwrap();
        assert_eq!(receipt.status, ReceiptStatus::Delivered);
        assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
        let text = std::fs::read_to_string(&outbox).unwrap();
        let line: OutboxLine = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line.code, "123456");
        assert_eq!(line.verification_id, "vf_1");
        carrier.shutdown().await;
    }

    #[tokio::test]
    async fn country_profile_fails_delivery_and_shutdown_waits_for_receipts() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.jsonl");
        let (carrier, mut rx) = carrier(serde_json::json!({
            "outbox": outbox,
            "countries": { "HN": { "delivery_probability": 0.0, "latency_ms": 30 } }
        }));
        carrier.submit(message("HN")).await.unwrap();
        carrier.shutdown().await;
        let receipt = rx
            .try_recv()
            .expect("receipt flushed before shutdown returned");
        assert_eq!(receipt.status, ReceiptStatus::Failed);
        assert!(
            !outbox.exists(),
            "a failed message is not written to the outbox"
        );
        let refused = carrier.submit(message("HN")).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ShuttingDown);
        assert!(refused.is_temporary());
    }

    #[tokio::test]
    async fn a_hanging_destination_is_maybe_sent_with_nothing_in_the_outbox_and_no_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.jsonl");
        let (carrier, mut rx) = carrier(serde_json::json!({
            "outbox": outbox,
            "latency_ms": 1,
            "hang_ms": 30,
            "destinations": { "+50499123456": "hang" },
        }));
        let error = carrier.submit(message("HN")).await.unwrap_err();
        assert!(error.is_maybe_sent(), "{error}");
        assert!(!error.is_temporary(), "{error}");
        assert!(error.message().contains("30 ms"), "{error}");
        carrier.shutdown().await;
        drop(carrier);
        assert!(
            rx.recv().await.is_none(),
            "no receipt, and the sink is closed"
        );
        assert!(!outbox.exists(), "nothing written to the outbox");
    }

    /// The simulator as its own conformance peer: outcomes chosen per destination.
    struct SimPeer {
        directory: tempfile::TempDir,
    }

    #[async_trait]
    impl verify_carrier::conformance::ConformancePeer for SimPeer {
        async fn carrier_for(
            &self,
            to: &str,
            behaviour: verify_carrier::conformance::PeerBehaviour,
        ) -> (
            Arc<dyn Carrier>,
            tokio::sync::mpsc::Receiver<DeliveryReceipt>,
        ) {
            use verify_carrier::conformance::PeerBehaviour as B;
            let outcome = match behaviour {
                B::Deliver => "deliver",
                B::FailDelivery => "fail",
                B::RejectPermanently => "reject",
                B::Throttle => "throttle",
                B::Down => "down",
                B::Hang => "hang",
            };
            carrier(serde_json::json!({
                "outbox": self.directory.path().join("outbox.jsonl"),
                "latency_ms": 20,
                "hang_ms": 100,
                "destinations": { to: outcome },
            }))
        }

        fn answer_timeout(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    #[tokio::test]
    async fn passes_the_carrier_conformance_suite() {
        let peer = SimPeer {
            directory: tempfile::tempdir().unwrap(),
        };
        verify_carrier::conformance::run_all(&peer).await;
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let (receipts, _rx) = ReceiptSink::channel(1);
        let context = CarrierContext {
            name: "sim".into(),
            receipts,
            callback_url: None,
        };
        let Err(error) = build(
            &serde_json::json!({ "delivery_probability": 1.5 }),
            context.clone(),
        ) else {
            panic!("probability above 1 must be refused");
        };
        assert!(error.message().contains("delivery_probability"), "{error}");
        let Err(error) = build(&serde_json::json!({ "colour": "blue" }), context) else {
            panic!("unknown settings must be refused");
        };
        assert!(error.message().contains("colour"), "{error}");
    }
}
