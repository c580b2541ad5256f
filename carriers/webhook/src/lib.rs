//! The `webhook` carrier of verifyd: each message is POSTed as HMAC-signed JSON to an in-house
//! gateway, which answers with its id and later POSTs signed delivery receipts back to
//! verifyd's callback URL. The protocol is documented in the crate's README.
//!
//! The crate exports the settings ([`WebhookConfig`]), the kind name ([`KIND`]), [`register`],
//! the carrier ([`WebhookCarrier`]) and the wire types. With the feature `test-peer` it also
//! has [`test_peer`], a local gateway speaking the protocol for tests.

mod backend;
mod config;
pub mod signature;
#[cfg(feature = "test-peer")]
pub mod test_peer;

pub use backend::{GatewayReceipt, GatewayRequest, WebhookCarrier};
pub use config::{RESERVED_HEADERS, WebhookConfig};
pub use verify_carrier::Secret;

use verify_carrier::CarrierRegistry;

/// The kind name of this carrier in `[[carriers]]` tables.
pub const KIND: &str = "webhook";

/// Adds the `webhook` kind to `registry`.
pub fn register(registry: &mut CarrierRegistry) {
    registry.register(KIND, backend::build);
}
