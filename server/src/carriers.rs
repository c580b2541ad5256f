//! The carriers of this server: every known kind registered explicitly, the configured instances
//! built by name, and the lookups routing needs.

use std::collections::HashMap;
use std::sync::Arc;

use verify_carrier::{
    Carrier, CarrierContext, CarrierError, CarrierRegistry, Channel, ReceiptSink,
};

use crate::config::CarrierEntry;

/// Registers every carrier kind this server ships.
pub fn register_carriers() -> CarrierRegistry {
    let mut registry = CarrierRegistry::new();
    verify_carrier_sim::register(&mut registry);
    verify_carrier_smpp::register(&mut registry);
    verify_carrier_twilio::register(&mut registry);
    verify_carrier_vonage::register(&mut registry);
    verify_carrier_webhook::register(&mut registry);
    registry
}

/// Checks every carrier's kind and settings by building it against a receipt sink nobody reads;
/// building starts nothing (no connection, no file), so it is safe for `--check-config`. The
/// error lists every carrier that is wrong, not just the first.
pub fn check_settings(entries: &[CarrierEntry]) -> Result<(), CarrierError> {
    let (receipts, _unread) = ReceiptSink::channel(1);
    let registry = register_carriers();
    // Each problem starts with the carrier's key (`carriers[1]`), so the caller can say
    // where the file sets it.
    let problems: Vec<String> = entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            if !registry.kinds().any(|kind| kind == entry.kind) {
                let known: Vec<&str> = registry.kinds().collect();
                return Some(format!(
                    "carriers[{index}].kind: carrier `{}`: `{}` is not a carrier kind; the kinds are: {}",
                    entry.name,
                    entry.kind,
                    known.join(", ")
                ));
            }
            CarrierSet::build(&registry, std::slice::from_ref(entry), &receipts, None)
                .err()
                .map(|error| format!("carriers[{index}]: {}", error.message()))
        })
        .collect();
    match problems.len() {
        0 => Ok(()),
        1 => Err(CarrierError::new(
            verify_carrier::ErrorKind::Config,
            problems.join(""),
        )),
        n => Err(CarrierError::new(
            verify_carrier::ErrorKind::Config,
            format!("{n} problems:\n  {}", problems.join("\n  ")),
        )),
    }
}

/// The configured carrier instances by name.
pub struct CarrierSet {
    by_name: HashMap<String, Arc<dyn Carrier>>,
}

impl CarrierSet {
    /// Builds every configured carrier; the first failure names the carrier. With
    /// `callback_base` (the public URL of the callback listener) each carrier learns its
    /// callback URL, `{callback_base}/callbacks/{name}`.
    pub fn build(
        registry: &CarrierRegistry,
        entries: &[CarrierEntry],
        receipts: &ReceiptSink,
        callback_base: Option<&str>,
    ) -> Result<CarrierSet, CarrierError> {
        let mut by_name = HashMap::new();
        for entry in entries {
            let settings = serde_json::Value::Object(entry.settings.clone());
            let context = CarrierContext {
                name: entry.name.clone(),
                receipts: receipts.clone(),
                callback_url: callback_base.map(|base| format!("{base}/callbacks/{}", entry.name)),
            };
            let carrier = registry.build(&entry.kind, &settings, context)?;
            by_name.insert(entry.name.clone(), carrier);
        }
        Ok(CarrierSet { by_name })
    }

    /// The configured names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// A carrier by configured name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Carrier>> {
        self.by_name.get(name)
    }

    /// Whether the carrier named `name` can carry `channel` to `region`.
    pub fn can_carry(&self, name: &str, channel: Channel, region: Option<&str>) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|carrier| carrier.capabilities().supports(channel, region))
    }

    /// Wraps every carrier in `layer` (e.g. a circuit breaker), keeping names.
    pub fn layered(self, layer: impl Fn(Arc<dyn Carrier>) -> Arc<dyn Carrier>) -> CarrierSet {
        CarrierSet {
            by_name: self
                .by_name
                .into_iter()
                .map(|(name, carrier)| (name, layer(carrier)))
                .collect(),
        }
    }

    /// Starts every carrier (binds, keep-alives). A carrier that cannot start is an error
    /// naming it; a peer that is merely down is not (the carrier keeps reconnecting).
    pub async fn start(&self) -> Result<(), CarrierError> {
        for (name, carrier) in &self.by_name {
            carrier.start().await?;
            tracing::info!(carrier = %name, kind = carrier.kind(), "carrier started");
        }
        Ok(())
    }

    /// The carriers by name, for the callback endpoint.
    pub fn callback_targets(&self) -> verify_carrier::callback::CallbackTargets {
        Arc::new(
            self.by_name
                .iter()
                .map(|(name, carrier)| (name.clone(), Arc::clone(carrier)))
                .collect(),
        )
    }

    /// Shuts every carrier down at once, letting in-flight work finish and receipts arrive.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.by_name.values().map(|carrier| carrier.shutdown())).await;
    }
}
