//! The `twilio` carrier of verifyd: SMS through Twilio's Messages API and voice calls through
//! its Calls API with inline TwiML, delivery outcomes from signed status callbacks.
//!
//! Build it from a `[[carriers]]` table with `kind = "twilio"` (see [`TwilioConfig`] and the
//! crate's README). Status callbacks reach verifyd at `{public_url}/callbacks/{name}` and come
//! back through [`Carrier::handle_callback`](verify_carrier::Carrier::handle_callback), which
//! checks `X-Twilio-Signature` before anything else. With the `test-peer` feature,
//! [`test_peer::TwilioPeer`] is a local server speaking the same API, for tests.

mod backend;
mod config;
mod core;
pub mod signature;
pub mod twiml;

#[cfg(feature = "test-peer")]
pub mod test_peer;

pub use backend::{MESSAGE_ID_PARAM, TwilioCarrier};
pub use config::{DEFAULT_BASE_URL, MachineDetection, TwilioConfig};
pub use core::API_VERSION;
pub use verify_carrier::Secret;

use verify_carrier::CarrierRegistry;

/// The kind name of this carrier in `[[carriers]]` tables.
pub const KIND: &str = "twilio";

/// Adds the `twilio` kind to `registry`.
pub fn register(registry: &mut CarrierRegistry) {
    registry.register(KIND, backend::build);
}
