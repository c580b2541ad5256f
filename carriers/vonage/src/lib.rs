//! The `vonage` carrier of verifyd: SMS through a Vonage-style SMS API (`POST /sms/json`),
//! with delivery receipts taken at verifyd's callback URL and checked against Vonage's
//! signature scheme.
//!
//! The crate exports the settings ([`VonageConfig`]), the kind name ([`KIND`]), [`register`]
//! and the carrier ([`VonageCarrier`]). With the feature `test-peer` it also has
//! [`test_peer`], a local server speaking the same API for tests.

mod backend;
mod config;
pub mod signature;
#[cfg(feature = "test-peer")]
pub mod test_peer;

pub use backend::VonageCarrier;
pub use config::{DltMapping, VonageConfig};
pub use signature::SignatureMethod;
pub use verify_carrier::Secret;

use verify_carrier::CarrierRegistry;

/// The kind name of this carrier in `[[carriers]]` tables.
pub const KIND: &str = "vonage";

/// Adds the `vonage` kind to `registry`.
pub fn register(registry: &mut CarrierRegistry) {
    registry.register(KIND, backend::build);
}
