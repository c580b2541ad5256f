//! Messages handed to carriers, their acceptance, and the delivery receipts that come back.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The way a message reaches a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A text message.
    Sms,
    /// A phone call that reads the code aloud.
    Voice,
}

impl Channel {
    /// The lowercase name used in storage, config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(name: &str) -> Option<Channel> {
        match name {
            "sms" => Some(Channel::Sms),
            "voice" => Some(Channel::Voice),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A one-time code. Its `Debug` output is redacted so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl OneTimeCode {
    /// Wraps the digits of a code.
    pub fn new(digits: impl Into<String>) -> Self {
        Self(digits.into())
    }

    /// The digits, for the message body or a voice script. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OneTimeCode(<{} digits redacted>)", self.0.len())
    }
}

/// One message for a carrier to deliver.
#[derive(Clone)]
pub struct OutboundMessage {
    /// verifyd's id of this message; carriers that can echo a reference should use it.
    pub message_id: String,
    /// The verification this message belongs to.
    pub verification_id: String,
    /// Destination in E.164 (`+` and digits).
    pub to: String,
    /// ISO 3166-1 alpha-2 region of the destination, when known.
    pub region_code: Option<String>,
    /// SMS or voice.
    pub channel: Channel,
    /// The text: the SMS body, or for voice the sentence to speak.
    pub body: String,
    /// The code the body carries, for carriers that need it apart (voice scripts, simulators).
    pub code: OneTimeCode,
    /// Locale of the text, e.g. `en` or `es-MX`.
    pub locale: String,
    /// Sender to show (alphanumeric ID, long code, short code), when the route sets one.
    pub sender: Option<String>,
    /// Registration values policy attached to the message, by name (e.g. India's
    /// `dlt_entity_id` and `dlt_template_id`); carriers put them where their operator wants
    /// them (SMPP TLVs, API fields) as their config says.
    pub attributes: BTreeMap<String, String>,
}

impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body carries the code, so it is left out like the code itself.
        f.debug_struct("OutboundMessage")
            .field("message_id", &self.message_id)
            .field("verification_id", &self.verification_id)
            .field("to", &mask_number(&self.to))
            .field("region_code", &self.region_code)
            .field("channel", &self.channel)
            .field("body", &"<redacted>")
            .field("code", &self.code)
            .field("locale", &self.locale)
            .field("sender", &self.sender)
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// Masks all but the first four and last two characters of a phone number, for logs.
pub fn mask_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let mut masked = String::with_capacity(chars.len());
    for (i, c) in chars.iter().enumerate() {
        if i < 4 || i >= chars.len() - 2 {
            masked.push(*c);
        } else {
            masked.push('*');
        }
    }
    masked
}

/// The carrier took the message and named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitAccepted {
    /// The carrier's id, which its receipts will refer to.
    pub carrier_message_id: String,
}

/// Final or intermediate state a carrier reports for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    /// Reached the handset, or the call was answered.
    Delivered,
    /// Will not be delivered (unknown subscriber, expired in the network, call not answered).
    Failed,
}

/// A delivery receipt from a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// Configured name of the carrier that sent the receipt.
    pub carrier: String,
    /// The carrier's message id from [`SubmitAccepted`].
    pub carrier_message_id: String,
    /// verifyd's message id, when the carrier can echo it back.
    pub message_id: Option<String>,
    /// What happened.
    pub status: ReceiptStatus,
    /// The carrier's words, e.g. `stat:UNDELIV err:001`.
    pub detail: String,
    /// Other spellings of `carrier_message_id` that name the same message (an SMSC that gives
    /// the id in hexadecimal in `submit_sm_resp` and in decimal in receipts), tried in order
    /// when no message is known by `carrier_message_id` itself.
    pub alternative_ids: Vec<String>,
}

/// Where carriers send their receipts; the server drains the other end.
///
/// The channel is bounded: when the server falls behind, [`deliver`](Self::deliver) waits for
/// room, so a burst of receipts (an SMSC replaying its backlog after a reconnect, a vendor
/// retrying callbacks) slows whoever reads them instead of growing memory.
#[derive(Debug, Clone)]
pub struct ReceiptSink {
    sender: mpsc::Sender<DeliveryReceipt>,
}

/// Room for one receipt in a [`ReceiptSink`], taken by [`ReceiptSink::reserve`]: handing the
/// receipt over then cannot wait, so it can happen under a lock. Dropping it frees the room.
#[derive(Debug)]
pub struct ReceiptPermit {
    permit: mpsc::OwnedPermit<DeliveryReceipt>,
}

impl ReceiptPermit {
    /// Hands `receipt` to the server at once.
    pub fn deliver(self, receipt: DeliveryReceipt) {
        self.permit.send(receipt);
    }
}

impl ReceiptSink {
    /// A sink holding at most `capacity` receipts the server has not read yet (at least 1), and
    /// the receiver the server reads them from.
    pub fn channel(capacity: usize) -> (ReceiptSink, mpsc::Receiver<DeliveryReceipt>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (ReceiptSink { sender }, receiver)
    }

    /// Hands a receipt to the server, waiting while the channel is full. Returns false when the
    /// server is gone.
    pub async fn deliver(&self, receipt: DeliveryReceipt) -> bool {
        self.sender.send(receipt).await.is_ok()
    }

    /// Waits for room for one receipt; `None` when the server is gone.
    pub async fn reserve(&self) -> Option<ReceiptPermit> {
        let permit = self.sender.clone().reserve_owned().await.ok()?;
        Some(ReceiptPermit { permit })
    }
}

/// What a carrier can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Channels it can carry.
    pub channels: Vec<Channel>,
    /// Regions it reaches (ISO alpha-2); empty means everywhere.
    pub regions: Vec<String>,
    /// Messages per second it accepts at most, if it has a limit.
    pub max_messages_per_second: Option<u32>,
    /// Whether it reports delivery receipts.
    pub delivery_receipts: bool,
    /// Whether its peer recognises a message it was already handed by verifyd's message id
    /// (the webhook's `Idempotency-Key`) and does not send it twice. A message whose hand-off
    /// a crash interrupted is handed again only to such a carrier; otherwise it is recorded as
    /// maybe sent.
    pub deduplicates_submissions: bool,
}

/// Checks a carrier's `regions` setting: each must be an ISO 3166-1 alpha-2 code (two capital
/// letters); the error names the first that is not.
pub fn check_regions(regions: &[String]) -> Result<(), String> {
    match regions
        .iter()
        .find(|r| r.len() != 2 || !r.chars().all(|c| c.is_ascii_uppercase()))
    {
        Some(region) => Err(format!(
            "regions: `{region}` is not an ISO 3166-1 alpha-2 code such as `IN`"
        )),
        None => Ok(()),
    }
}

impl Capabilities {
    /// Whether the carrier can carry `channel` to `region`.
    pub fn supports(&self, channel: Channel, region: Option<&str>) -> bool {
        let channel_ok = self.channels.contains(&channel);
        let region_ok = self.regions.is_empty()
            || region.is_some_and(|r| self.regions.iter().any(|known| known == r));
        channel_ok && region_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_code_body_and_number() {
        let message = OutboundMessage {
            message_id: "msg_1".into(),
            verification_id: "vf_1".into(),
            to: "+447700900123".into(),
            region_code: Some("GB".into()),
            channel: Channel::Sms,
            body: "Your code is 493817".into(),
            code: OneTimeCode::new("493817"),
            locale: "en".into(),
            sender: None,
            attributes: Default::default(),
        };
        let shown = format!("{message:?}");
        assert!(!shown.contains("493817"), "{shown}");
        assert!(!shown.contains("7700900"), "{shown}");
        assert!(shown.contains("+447*******23"), "{shown}");
    }

    fn receipt(n: u32) -> DeliveryReceipt {
        DeliveryReceipt {
            carrier: "c".into(),
            carrier_message_id: format!("id-{n}"),
            message_id: None,
            status: ReceiptStatus::Delivered,
            detail: String::new(),
            alternative_ids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_full_sink_makes_the_carrier_wait_until_the_server_reads() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let (sink, mut receiver) = ReceiptSink::channel(1);
        assert!(sink.deliver(receipt(1)).await);
        let mut context = Context::from_waker(Waker::noop());
        let mut second = std::pin::pin!(sink.deliver(receipt(2)));
        assert!(second.as_mut().poll(&mut context).is_pending(), "no room");
        let mut permit = std::pin::pin!(sink.reserve());
        assert!(permit.as_mut().poll(&mut context).is_pending(), "no room");
        assert_eq!(receiver.recv().await.unwrap().carrier_message_id, "id-1");
        assert_eq!(second.as_mut().poll(&mut context), Poll::Ready(true));
        assert_eq!(receiver.recv().await.unwrap().carrier_message_id, "id-2");
        let Poll::Ready(Some(permit)) = permit.as_mut().poll(&mut context) else {
            panic!("room after the server read");
        };
        permit.deliver(receipt(3));
        assert_eq!(receiver.recv().await.unwrap().carrier_message_id, "id-3");
        drop(receiver);
        assert!(!sink.deliver(receipt(4)).await, "the server is gone");
        assert!(sink.reserve().await.is_none());
    }

    #[test]
    fn capabilities_check_channel_and_region() {
        let caps = Capabilities {
            channels: vec![Channel::Sms],
            regions: vec!["IN".into()],
            max_messages_per_second: None,
            delivery_receipts: true,
            deduplicates_submissions: false,
        };
        assert!(caps.supports(Channel::Sms, Some("IN")));
        assert!(!caps.supports(Channel::Voice, Some("IN")));
        assert!(!caps.supports(Channel::Sms, Some("US")));
        assert!(!caps.supports(Channel::Sms, None));
    }
}
