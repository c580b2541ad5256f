//! The registry of carrier kinds: kind name -> factory that builds a carrier from its settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Carrier, CarrierError, ErrorKind, ReceiptSink};

/// What a factory gets besides its settings.
#[derive(Debug, Clone)]
pub struct CarrierContext {
    /// The configured name of the instance to build.
    pub name: String,
    /// Where the carrier sends delivery receipts.
    pub receipts: ReceiptSink,
    /// The public URL of this carrier's callback endpoint (`{public_url}/callbacks/{name}`),
    /// which HTTP carriers give their vendor for receipts; `None` when the server serves no
    /// callbacks.
    pub callback_url: Option<String>,
}

impl CarrierContext {
    /// A configuration error of this carrier: [`ErrorKind::Config`], naming the carrier and the
    /// `reason` (which must name the setting, never a secret value).
    pub fn config_error(&self, reason: impl std::fmt::Display) -> CarrierError {
        CarrierError::new(
            ErrorKind::Config,
            format!("carrier `{}`: {reason}", self.name),
        )
    }

    /// Reads this carrier's settings into its config type; a mismatch is a
    /// [`config_error`](Self::config_error).
    pub fn parse_settings<T: serde::de::DeserializeOwned>(
        &self,
        settings: &serde_json::Value,
    ) -> Result<T, CarrierError> {
        serde_json::from_value(settings.clone()).map_err(|e| self.config_error(e))
    }
}

/// Builds a carrier of one kind from its settings (a JSON value taken from the config table).
pub type CarrierFactory = fn(
    settings: &serde_json::Value,
    context: CarrierContext,
) -> Result<Arc<dyn Carrier>, CarrierError>;

/// Kind name -> factory. The server fills it with explicit `register` calls at start.
#[derive(Default, Clone)]
pub struct CarrierRegistry {
    factories: BTreeMap<&'static str, CarrierFactory>,
}

impl CarrierRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind. A second registration of the same kind replaces the first.
    pub fn register(&mut self, kind: &'static str, factory: CarrierFactory) {
        self.factories.insert(kind, factory);
    }

    /// The registered kind names, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }

    /// Builds a carrier of `kind`. An unknown kind is a config error that lists the known ones.
    pub fn build(
        &self,
        kind: &str,
        settings: &serde_json::Value,
        context: CarrierContext,
    ) -> Result<Arc<dyn Carrier>, CarrierError> {
        let Some(factory) = self.factories.get(kind) else {
            let known: Vec<&str> = self.kinds().collect();
            return Err(CarrierError::new(
                ErrorKind::Config,
                format!(
                    "carrier `{}`: unknown kind `{kind}`; known kinds: {}",
                    context.name,
                    known.join(", ")
                ),
            ));
        };
        factory(settings, context)
    }
}

impl std::fmt::Debug for CarrierRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_lists_known_kinds() {
        fn refuse(
            _: &serde_json::Value,
            _: CarrierContext,
        ) -> Result<Arc<dyn Carrier>, CarrierError> {
            Err(CarrierError::new(
                ErrorKind::Config,
                "not built in this test",
            ))
        }
        let mut registry = CarrierRegistry::new();
        registry.register("sim", refuse);
        registry.register("smpp", refuse);
        let (receipts, _rx) = ReceiptSink::channel(1);
        let context = CarrierContext {
            name: "main".into(),
            receipts,
            callback_url: None,
        };
        let Err(error) = registry.build("twilio", &serde_json::Value::Null, context) else {
            panic!("an unknown kind must not build");
        };
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.message().contains("known kinds: sim, smpp"),
            "{error}"
        );
    }
}
