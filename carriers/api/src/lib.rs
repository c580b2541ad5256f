//! The carrier plugin interface of verifyd.
//!
//! A carrier is anything that can take a message to a phone: an SMPP bind to an operator, an HTTP
//! aggregator, or the in-process simulator. Each carrier crate exports a config type, a kind name
//! and a `register` function that adds its factory to a [`CarrierRegistry`]. The server builds
//! carriers by kind name from its configuration and never depends on a carrier's internals.

pub mod callback;
pub mod conformance;
mod error;
pub mod gsm7;
#[cfg(feature = "http-client")]
mod http_client;
mod message;
pub mod receipts;
mod registry;
mod replay;
mod secret;
pub mod shutdown;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use callback::{CallbackRequest, CallbackResponse};
pub use error::{CarrierError, ErrorKind};
#[cfg(feature = "http-client")]
pub use http_client::{
    gateway_timeout, http_client, install_crypto_provider, read_answer, read_bounded,
    request_error, unix_now, unreadable_acceptance, vendor_text,
};
pub use message::{
    Capabilities, Channel, DeliveryReceipt, OneTimeCode, OutboundMessage, ReceiptPermit,
    ReceiptSink, ReceiptStatus, SubmitAccepted, check_regions, mask_number,
};
pub use receipts::{PendingReceipts, ReceiptOutcome};
pub use registry::{CarrierContext, CarrierFactory, CarrierRegistry};
pub use replay::{Replay, ReplayGuard};
pub use secret::Secret;
pub use shutdown::{InFlight, InFlightGate};

use async_trait::async_trait;

/// A connection to the phone network that can submit messages and reports delivery receipts.
///
/// Implementations are shared between tasks (`Arc<dyn Carrier>`); `submit` may be called
/// concurrently. Receipts flow back through the [`ReceiptSink`] the carrier was built with.
#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    /// The configured name of this carrier instance (e.g. `"airtel-smpp"`).
    fn name(&self) -> &str;

    /// The kind this instance was built from (e.g. `"sim"`, `"smpp"`).
    fn kind(&self) -> &'static str;

    /// What this carrier can do; routing skips carriers that cannot carry a message.
    fn capabilities(&self) -> Capabilities;

    /// Hands one message to the carrier. `Ok` means the carrier accepted it and gave its own
    /// message id; the final outcome arrives later as a [`DeliveryReceipt`].
    async fn submit(&self, message: OutboundMessage) -> Result<SubmitAccepted, CarrierError>;

    /// Starts background work (binds, keep-alives, receipt readers). Called once after the
    /// carrier is built and before the first `submit`; building alone must start nothing, so
    /// `verifyd --check-config` can build carriers safely. A peer that is down is not an error
    /// here: the carrier keeps reconnecting and `submit` reports it as a temporary error.
    async fn start(&self) -> Result<(), CarrierError> {
        Ok(())
    }

    /// Handles an HTTP request the vendor sent to `/callbacks/{name}` (delivery receipts, call
    /// status, voice instructions): verifies its signature, sends receipts to the sink and says
    /// what to answer. Carriers that take no callbacks answer 404.
    async fn handle_callback(&self, request: CallbackRequest) -> CallbackResponse {
        let _ = request;
        CallbackResponse::not_found()
    }

    /// Stops the carrier: no new submissions are accepted, in-flight ones finish, receipts that
    /// are already known are flushed to the sink. Called once at server shutdown.
    async fn shutdown(&self) {}
}
