//! The `smpp` carrier of verifyd: an SMPP 3.4 client that binds to an operator's SMSC.
//!
//! It keeps `binds` transceiver (or transmitter + receiver) connections up with enquire_link and
//! reconnects with back-off; submits each message as one or more submit_sm (GSM 03.38 or UCS-2,
//! long texts split with a UDH) within a window of outstanding PDUs per bind and an optional
//! per-bind rate; retries throttling; and turns deliver_sm receipts into
//! [`verify_carrier::DeliveryReceipt`]s. See the crate's README for every setting.

mod backend;
pub mod config;
pub mod pdu;
pub mod receipt;
mod session;
#[cfg(feature = "test-smsc")]
pub mod test_smsc;
pub mod text;

use verify_carrier::CarrierRegistry;

pub use backend::{SmppCarrier, build};
pub use config::SmppConfig;

/// The kind name of this carrier in `[[carriers]]` tables.
pub const KIND: &str = "smpp";

/// Adds the `smpp` kind to `registry`.
pub fn register(registry: &mut CarrierRegistry) {
    registry.register(KIND, build);
}
