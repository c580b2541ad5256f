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
/// building starts nothing (no connection, no file), so it is safe for `--check-config`.
pub fn check_settings(entries: &[CarrierEntry]) -> Result<(), CarrierError> {
    let (receipts, _unread) = ReceiptSink::channel();
    CarrierSet::build(&register_carriers(), entries, &receipts).map(drop)
}

/// The configured carrier instances by name.
pub struct CarrierSet {
    by_name: HashMap<String, Arc<dyn Carrier>>,
}

impl CarrierSet {
    /// Builds every configured carrier; the first failure names the carrier.
    pub fn build(
        registry: &CarrierRegistry,
        entries: &[CarrierEntry],
        receipts: &ReceiptSink,
    ) -> Result<CarrierSet, CarrierError> {
        let mut by_name = HashMap::new();
        for entry in entries {
            let settings = serde_json::Value::Object(entry.settings.clone());
            let context = CarrierContext {
                name: entry.name.clone(),
                receipts: receipts.clone(),
                callback_url: None,
            };
            let carrier = registry.build(&entry.kind, &settings, context)?;
            by_name.insert(entry.name.clone(), carrier);
        }
        Ok(CarrierSet { by_name })
    }

    /// A carrier by configured name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Carrier>> {
        self.by_name.get(name)
    }

    /// The carriers of `routes`, in order, that can carry `channel` to `region`: the first
    /// gets the message, the others are its failover.
    pub fn capable(
        &self,
        routes: &[String],
        channel: Channel,
        region: Option<&str>,
    ) -> Vec<String> {
        routes
            .iter()
            .filter(|name| {
                self.by_name
                    .get(name.as_str())
                    .is_some_and(|carrier| carrier.capabilities().supports(channel, region))
            })
            .cloned()
            .collect()
    }

    /// Shuts every carrier down, letting in-flight work finish.
    pub async fn shutdown(&self) {
        for carrier in self.by_name.values() {
            carrier.shutdown().await;
        }
    }
}
