//! Test helpers for carrier crates (feature `test-support`): build a carrier through the
//! registry as verifyd does, with its callback URL served by [`crate::callback::serve`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use crate::{Carrier, CarrierContext, CarrierRegistry, DeliveryReceipt, ReceiptSink};

/// A carrier built for a test, the receipts it reports, and its callback URL (when it has one).
pub struct TestCarrier {
    /// The carrier, as the registry built it.
    pub carrier: Arc<dyn Carrier>,
    /// Every receipt the carrier reports.
    pub receipts: Receiver<DeliveryReceipt>,
    /// The URL its callbacks are served at, `None` when built without one.
    pub callback_url: Option<String>,
}

impl TestCarrier {
    /// The carrier and its receipts, as a [`ConformancePeer`](crate::conformance::ConformancePeer)
    /// hands them out.
    pub fn into_parts(self) -> (Arc<dyn Carrier>, Receiver<DeliveryReceipt>) {
        (self.carrier, self.receipts)
    }
}

/// Builds carrier `name` of `kind` from `settings` through a registry filled by `register`,
/// with `callback_url` in its context; starts nothing. Panics when it does not build.
pub fn build(
    register: fn(&mut CarrierRegistry),
    kind: &str,
    name: &str,
    settings: serde_json::Value,
    callback_url: Option<String>,
) -> TestCarrier {
    let (sink, receipts) = ReceiptSink::channel(RECEIPT_CAPACITY);
    let mut registry = CarrierRegistry::new();
    register(&mut registry);
    let context = CarrierContext {
        name: name.into(),
        receipts: sink,
        callback_url: callback_url.clone(),
    };
    let carrier = registry
        .build(kind, &settings, context)
        .expect("the carrier builds");
    TestCarrier {
        carrier,
        receipts,
        callback_url,
    }
}

/// Like [`build`], with a callback URL on a local listener where [`crate::callback::serve`]
/// serves the carrier (`http://127.0.0.1:{port}/callbacks/{name}`), and the carrier started.
/// Panics when it does not build or start.
pub async fn build_with_callbacks(
    register: fn(&mut CarrierRegistry),
    kind: &str,
    name: &str,
    settings: serde_json::Value,
) -> TestCarrier {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port for callbacks");
    let address = listener.local_addr().expect("the listener's address");
    let callback_url = format!("http://{address}/callbacks/{name}");
    let built = build(register, kind, name, settings, Some(callback_url));
    let targets = Arc::new(BTreeMap::from([(
        name.to_string(),
        Arc::clone(&built.carrier),
    )]));
    tokio::spawn(crate::callback::serve(
        listener,
        targets,
        std::future::pending(),
    ));
    built.carrier.start().await.expect("the carrier starts");
    built
}

/// How many unread receipts a test carrier's sink holds before the carrier waits.
pub const RECEIPT_CAPACITY: usize = 1024;

/// How long [`next_receipt`] waits.
pub const RECEIPT_WAIT: Duration = Duration::from_secs(5);

/// The next receipt, waiting at most [`RECEIPT_WAIT`]. Panics when none comes in time or the
/// carrier is gone.
pub async fn next_receipt(receipts: &mut Receiver<DeliveryReceipt>) -> DeliveryReceipt {
    tokio::time::timeout(RECEIPT_WAIT, receipts.recv())
        .await
        .expect("receipt in time")
        .expect("channel open")
}
