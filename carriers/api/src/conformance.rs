//! The conformance suite every carrier crate runs against its own test peer (a real SMSC, a
//! local server speaking the vendor's API, or the simulator itself).
//!
//! A carrier crate implements [`ConformancePeer`] for its test setup and calls [`run_all`] from
//! one of its tests. Each check builds a fresh carrier, so peers may keep state per carrier.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::Receiver;

use crate::{
    Carrier, Channel, DeliveryReceipt, ErrorKind, OneTimeCode, OutboundMessage, ReceiptStatus,
};

/// How the peer should treat messages to a destination, so each check can ask for an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerBehaviour {
    /// Accept and report delivered.
    Deliver,
    /// Accept and report a failed delivery.
    FailDelivery,
    /// Refuse the message for good (e.g. unknown subscriber, bad sender).
    RejectPermanently,
    /// Refuse for now: throttled or queue full.
    Throttle,
    /// Be unreachable (peer down, connection refused).
    Down,
    /// Accept the request and never answer: read the submit_sm or the HTTP request and stay
    /// silent, as a peer that took the message and then hung would.
    Hang,
}

/// A carrier under test and the peer it talks to.
#[async_trait]
pub trait ConformancePeer: Send + Sync {
    /// Builds and starts ([`Carrier::start`]) a carrier connected to the peer, with the receiver
    /// of its delivery receipts; messages to `to` meet `behaviour`.
    async fn carrier_for(
        &self,
        to: &str,
        behaviour: PeerBehaviour,
    ) -> (std::sync::Arc<dyn Carrier>, Receiver<DeliveryReceipt>);

    /// The longest a receipt may take with this peer.
    fn receipt_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// How long a carrier built for [`PeerBehaviour::Hang`] waits for an answer before it gives
    /// up (its own response timeout, which the peer sets short). Its error must come within this
    /// and a second of slack.
    fn answer_timeout(&self) -> Duration {
        Duration::from_secs(2)
    }
}

fn message(to: &str, channel: Channel, n: usize) -> OutboundMessage {
    OutboundMessage {
        message_id: format!("msg_conformance_{n}"),
        verification_id: format!("vf_conformance_{n}"),
        to: to.to_string(),
        region_code: Some("GB".into()),
        channel,
        body: "Your verification code is 424242. It expires in 10 minutes.".into(),
        code: OneTimeCode::new("424242"),
        locale: "en".into(),
        sender: None,
        attributes: Default::default(),
    }
}

async fn receipt(
    peer: &dyn ConformancePeer,
    receipts: &mut Receiver<DeliveryReceipt>,
) -> DeliveryReceipt {
    tokio::time::timeout(peer.receipt_timeout(), receipts.recv())
        .await
        .expect("a receipt arrives in time")
        .expect("the receipt channel stays open while the carrier lives")
}

/// Submitting an SMS gives a carrier message id, and its delivery receipt names that id.
pub async fn submit_sms_and_receive_delivered(peer: &dyn ConformancePeer) {
    let to = "+447400100001";
    let (carrier, mut receipts) = peer.carrier_for(to, PeerBehaviour::Deliver).await;
    let accepted = carrier
        .submit(message(to, Channel::Sms, 1))
        .await
        .expect("SMS accepted");
    assert!(!accepted.carrier_message_id.is_empty());
    let receipt = receipt(peer, &mut receipts).await;
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.carrier, carrier.name());
    carrier.shutdown().await;
}

/// Voice, where the carrier says it can: accepted and receipted like SMS; where it cannot,
/// refused as unsupported and permanent.
pub async fn submit_voice_where_supported(peer: &dyn ConformancePeer) {
    let to = "+442079460001";
    let (carrier, mut receipts) = peer.carrier_for(to, PeerBehaviour::Deliver).await;
    let result = carrier.submit(message(to, Channel::Voice, 2)).await;
    if carrier.capabilities().channels.contains(&Channel::Voice) {
        let accepted = result.expect("voice accepted by a voice-capable carrier");
        let receipt = receipt(peer, &mut receipts).await;
        assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    } else {
        let error = result.expect_err("voice refused by an SMS-only carrier");
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        assert!(!error.is_temporary());
    }
    carrier.shutdown().await;
}

/// A failed delivery is a receipt with status failed and the peer's words.
pub async fn failed_delivery_is_a_failed_receipt(peer: &dyn ConformancePeer) {
    let to = "+447400100003";
    let (carrier, mut receipts) = peer.carrier_for(to, PeerBehaviour::FailDelivery).await;
    let accepted = carrier
        .submit(message(to, Channel::Sms, 3))
        .await
        .expect("accepted before failing");
    let receipt = receipt(peer, &mut receipts).await;
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert!(!receipt.detail.is_empty(), "a failed receipt says why");
    carrier.shutdown().await;
}

/// A permanent refusal is an error without the temporary flag, and carries no secret.
pub async fn permanent_refusal_is_not_temporary(peer: &dyn ConformancePeer) {
    let to = "+447400100004";
    let (carrier, _receipts) = peer.carrier_for(to, PeerBehaviour::RejectPermanently).await;
    let error = carrier
        .submit(message(to, Channel::Sms, 4))
        .await
        .expect_err("refused");
    assert!(!error.is_temporary(), "{error}");
    assert!(
        !error.message().contains("424242"),
        "the code leaked into an error: {error}"
    );
    carrier.shutdown().await;
}

/// Throttling and an unreachable peer are temporary errors, so routing retries or fails over.
pub async fn throttled_or_down_is_temporary(peer: &dyn ConformancePeer) {
    for (n, behaviour) in [(5, PeerBehaviour::Throttle), (6, PeerBehaviour::Down)] {
        let to = format!("+44740010000{n}");
        let (carrier, _receipts) = peer.carrier_for(&to, behaviour).await;
        let error = carrier
            .submit(message(&to, Channel::Sms, n))
            .await
            .expect_err("refused for now");
        assert!(error.is_temporary(), "{behaviour:?}: {error}");
        let expected = match behaviour {
            PeerBehaviour::Throttle => ErrorKind::RateLimited,
            _ => ErrorKind::Unavailable,
        };
        assert_eq!(error.kind(), expected, "{behaviour:?}: {error}");
        carrier.shutdown().await;
    }
}

/// A peer that took the request and never answered leaves the message *maybe sent*: the error
/// says so, is not temporary (routing must not fail it over to another carrier, which could
/// send it twice), carries no code, and comes within the carrier's own timeout.
pub async fn accepted_then_silent_is_maybe_sent(peer: &dyn ConformancePeer) {
    let to = "+447400100008";
    let (carrier, _receipts) = peer.carrier_for(to, PeerBehaviour::Hang).await;
    let limit = peer.answer_timeout() + Duration::from_secs(1);
    let error = tokio::time::timeout(limit, carrier.submit(message(to, Channel::Sms, 8)))
        .await
        .unwrap_or_else(|_| panic!("no answer from the carrier within {limit:?}"))
        .expect_err("no answer from the peer is no acceptance");
    assert!(error.is_maybe_sent(), "{error}");
    assert!(!error.is_temporary(), "{error}");
    assert!(
        !error.message().contains("424242"),
        "the code leaked into an error: {error}"
    );
    carrier.shutdown().await;
}

/// Shutdown lets accepted messages finish: every receipt due arrives before it returns, and
/// later submissions are refused as temporary (another instance can take them).
pub async fn shutdown_loses_nothing_in_flight(peer: &dyn ConformancePeer) {
    let to = "+447400100007";
    let (carrier, mut receipts) = peer.carrier_for(to, PeerBehaviour::Deliver).await;
    let mut accepted = Vec::new();
    for n in 0..20 {
        accepted.push(
            carrier
                .submit(message(to, Channel::Sms, 100 + n))
                .await
                .expect("accepted")
                .carrier_message_id,
        );
    }
    carrier.shutdown().await;
    let mut received = Vec::new();
    while let Ok(receipt) = receipts.try_recv() {
        received.push(receipt.carrier_message_id);
    }
    accepted.sort();
    received.sort();
    assert_eq!(
        received, accepted,
        "every accepted message has its receipt after shutdown"
    );
    let refused = carrier
        .submit(message(to, Channel::Sms, 200))
        .await
        .expect_err("no submissions after shutdown");
    assert!(refused.is_temporary());
}

/// Runs every check against `peer`.
pub async fn run_all(peer: &dyn ConformancePeer) {
    submit_sms_and_receive_delivered(peer).await;
    submit_voice_where_supported(peer).await;
    failed_delivery_is_a_failed_receipt(peer).await;
    permanent_refusal_is_not_temporary(peer).await;
    throttled_or_down_is_temporary(peer).await;
    accepted_then_silent_is_maybe_sent(peer).await;
    shutdown_loses_nothing_in_flight(peer).await;
}
