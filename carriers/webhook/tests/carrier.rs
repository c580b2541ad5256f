//! The `webhook` carrier against the local gateway: conformance, request shape, signatures,
//! answer mapping and receipts over real HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::Receiver;
use verify_carrier::conformance::{ConformancePeer, PeerBehaviour};
use verify_carrier::test_support::{self, next_receipt};
use verify_carrier::{
    CallbackRequest, Carrier, CarrierContext, CarrierRegistry, Channel, DeliveryReceipt, ErrorKind,
    OneTimeCode, OutboundMessage, ReceiptSink, ReceiptStatus,
};
use verify_carrier_webhook::test_peer::{GatewayOutcome, GatewayPeer};
use verify_carrier_webhook::{KIND, signature};

const NAME: &str = "inhouse";

type Built = (Arc<dyn Carrier>, Receiver<DeliveryReceipt>);

/// Builds a carrier from `settings` whose callback URL is served on a local listener.
async fn carrier_with_callbacks(settings: serde_json::Value) -> Built {
    test_support::build_with_callbacks(verify_carrier_webhook::register, KIND, NAME, settings)
        .await
        .into_parts()
}

fn build(settings: serde_json::Value, callback_url: Option<String>) -> Built {
    test_support::build(
        verify_carrier_webhook::register,
        KIND,
        NAME,
        settings,
        callback_url,
    )
    .into_parts()
}

fn message(to: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_0001".into(),
        verification_id: "vf_0001".into(),
        to: to.into(),
        region_code: Some("IN".into()),
        channel: Channel::Sms,
        body: "आपका कोड 493817 है".into(),
        code: OneTimeCode::new("493817"),
        locale: "hi-IN".into(),
        sender: Some("VRFYD".into()),
        attributes: BTreeMap::from([("dlt_template_id".into(), "1107123".into())]),
    }
}

struct Peer {
    gateway: GatewayPeer,
    channels: serde_json::Value,
}

#[async_trait]
impl ConformancePeer for Peer {
    async fn carrier_for(&self, to: &str, behaviour: PeerBehaviour) -> Built {
        let mut settings = self.gateway.carrier_settings();
        settings["channels"] = self.channels.clone();
        let outcome = match behaviour {
            PeerBehaviour::Deliver => GatewayOutcome::Deliver,
            PeerBehaviour::FailDelivery => GatewayOutcome::FailDelivery("UNDELIV absent".into()),
            PeerBehaviour::RejectPermanently => GatewayOutcome::Refuse {
                status: 422,
                error: "unknown subscriber".into(),
                kind: Some("invalid_destination".into()),
            },
            PeerBehaviour::Throttle => GatewayOutcome::Throttle(2),
            PeerBehaviour::Down => {
                settings["url"] = GatewayPeer::down_url().await.into();
                GatewayOutcome::Deliver
            }
            PeerBehaviour::Hang => {
                settings["timeout_ms"] = (HANG_TIMEOUT.as_millis() as u64).into();
                GatewayOutcome::Hang
            }
        };
        self.gateway.set_outcome(to, outcome);
        carrier_with_callbacks(settings).await
    }

    fn receipt_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn answer_timeout(&self) -> Duration {
        HANG_TIMEOUT
    }
}

/// The carrier's `timeout_ms` against a gateway that never answers.
const HANG_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn passes_the_conformance_suite_sms_only() {
    let peer = Peer {
        gateway: GatewayPeer::start().await.unwrap(),
        channels: serde_json::json!(["sms"]),
    };
    verify_carrier::conformance::run_all(&peer).await;
    assert!(peer.gateway.requests().iter().all(|r| r.signature_valid));
}

#[tokio::test]
async fn passes_the_conformance_suite_with_voice() {
    let peer = Peer {
        gateway: GatewayPeer::start().await.unwrap(),
        channels: serde_json::json!(["sms", "voice"]),
    };
    verify_carrier::conformance::run_all(&peer).await;
    let voice = peer
        .gateway
        .requests()
        .into_iter()
        .find(|r| r.json()["channel"] == "voice");
    assert!(voice.is_some(), "a voice message reached the gateway");
}

#[tokio::test]
async fn request_is_signed_json_with_every_documented_field() {
    let gateway = GatewayPeer::start().await.unwrap();
    let mut settings = gateway.carrier_settings();
    settings["headers"] = serde_json::json!({ "X-Api-Key": "header-secret-value" });
    let (carrier, mut receipts) = carrier_with_callbacks(settings).await;
    let accepted = carrier.submit(message("+919812345678")).await.unwrap();
    assert!(accepted.carrier_message_id.starts_with("gw-"));

    let request = &gateway.requests()[0];
    let h = &request.headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["idempotency-key"], "msg_0001");
    assert_eq!(h["x-api-key"], "header-secret-value");
    let timestamp: u64 = h["x-verifyd-timestamp"].parse().unwrap();
    let sig = &h["x-verifyd-signature"];
    assert!(sig.starts_with("v1=") && sig.len() == 3 + 64, "{sig}");
    // The signature covers timestamp "." raw body, as documented.
    assert_eq!(
        sig,
        &signature::sign(gateway.secret().as_bytes(), timestamp, &request.body)
    );
    assert!(request.signature_valid);

    let json = request.json();
    let fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "attributes",
            "body",
            "callback_url",
            "channel",
            "code",
            "locale",
            "message_id",
            "region_code",
            "sender",
            "to",
            "verification_id"
        ]
    );
    assert_eq!(json["message_id"], "msg_0001");
    assert_eq!(json["verification_id"], "vf_0001");
    assert_eq!(json["to"], "+919812345678");
    assert_eq!(json["region_code"], "IN");
    assert_eq!(json["channel"], "sms");
    assert_eq!(json["body"], "आपका कोड 493817 है");
    assert_eq!(json["code"], "493817");
    assert_eq!(json["locale"], "hi-IN");
    assert_eq!(json["sender"], "VRFYD");
    assert_eq!(json["attributes"]["dlt_template_id"], "1107123");
    assert!(
        json["callback_url"]
            .as_str()
            .unwrap()
            .ends_with("/callbacks/inhouse")
    );

    let receipt = next_receipt(&mut receipts).await;
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.message_id.as_deref(), Some("msg_0001"));
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert_eq!(receipt.detail, "DELIVRD");
}

#[tokio::test]
async fn gateway_answers_map_to_error_kinds() {
    let gateway = GatewayPeer::start().await.unwrap();
    let (carrier, _receipts) = build(gateway.carrier_settings(), None);
    let refuse = |status: u16, error: &str, kind: Option<&str>| GatewayOutcome::Refuse {
        status,
        error: error.into(),
        kind: kind.map(str::to_string),
    };
    let cases = [
        (
            refuse(400, "template not registered", None),
            ErrorKind::Rejected,
            false,
            "template not registered",
        ),
        (
            refuse(422, "no such subscriber", Some("invalid_destination")),
            ErrorKind::InvalidDestination,
            false,
            "no such subscriber",
        ),
        (
            refuse(400, "voice off", Some("unsupported")),
            ErrorKind::Unsupported,
            false,
            "voice off",
        ),
        (
            refuse(403, "who are you", None),
            ErrorKind::Config,
            false,
            "HTTP 403",
        ),
        (
            GatewayOutcome::Throttle(7),
            ErrorKind::RateLimited,
            true,
            "retry after 7",
        ),
        (
            GatewayOutcome::ServerError(503),
            ErrorKind::Unavailable,
            true,
            "SMSC link down",
        ),
        (
            GatewayOutcome::ServerError(500),
            ErrorKind::Unavailable,
            true,
            "HTTP 500",
        ),
        (
            GatewayOutcome::NotJson(502),
            ErrorKind::Other,
            true,
            "not JSON",
        ),
        (
            GatewayOutcome::NotJson(400),
            ErrorKind::Other,
            false,
            "not JSON",
        ),
        // Accepted, or maybe: the message may be on its way (maybe sent).
        (
            GatewayOutcome::NotJson(200),
            ErrorKind::Other,
            false,
            "not JSON",
        ),
        (
            GatewayOutcome::ServerError(504),
            ErrorKind::Timeout,
            false,
            "HTTP 504",
        ),
    ];
    for (n, (outcome, kind, temporary, words)) in cases.into_iter().enumerate() {
        let to = format!("+4477009{n:05}");
        gateway.set_outcome(&to, outcome.clone());
        let error = carrier.submit(message(&to)).await.expect_err("refused");
        assert_eq!(error.kind(), kind, "{outcome:?}: {error}");
        assert_eq!(error.is_temporary(), temporary, "{outcome:?}: {error}");
        let maybe_sent = matches!(
            outcome,
            GatewayOutcome::NotJson(200) | GatewayOutcome::ServerError(504)
        );
        assert_eq!(error.is_maybe_sent(), maybe_sent, "{outcome:?}: {error}");
        assert!(error.message().contains(words), "{outcome:?}: {error}");
        assert!(!error.message().contains("<html>"), "{error}");
    }
}

#[tokio::test]
async fn error_text_is_bounded_and_never_carries_the_code() {
    let gateway = GatewayPeer::start().await.unwrap();
    let (carrier, _receipts) = build(gateway.carrier_settings(), None);
    let to = "+447700900999";
    gateway.set_outcome(
        to,
        GatewayOutcome::Refuse {
            status: 400,
            error: format!("body 'code 493817' refused {}", "z".repeat(5000)),
            kind: None,
        },
    );
    let error = carrier.submit(message(to)).await.unwrap_err();
    assert!(!error.message().contains("493817"), "{error}");
    assert!(
        error.message().len() < 400,
        "{} bytes",
        error.message().len()
    );
}

#[tokio::test]
async fn wrong_secret_is_a_config_error_and_down_is_unavailable() {
    let gateway = GatewayPeer::start().await.unwrap();
    let mut settings = gateway.carrier_settings();
    settings["secret"] = "not-the-gateway-secret".into();
    let (carrier, _receipts) = build(settings, None);
    let error = carrier.submit(message("+447700900123")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(
        !error.message().contains("not-the-gateway-secret"),
        "{error}"
    );
    assert!(!gateway.requests()[0].signature_valid);

    let mut settings = gateway.carrier_settings();
    settings["url"] = GatewayPeer::down_url().await.into();
    let (carrier, _receipts) = build(settings, None);
    let error = carrier.submit(message("+447700900123")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_temporary());
}

#[tokio::test]
async fn accepted_without_id_uses_the_message_id() {
    let gateway = GatewayPeer::start().await.unwrap();
    let (carrier, mut receipts) = carrier_with_callbacks(gateway.carrier_settings()).await;
    let to = "+447700900124";
    gateway.set_outcome(to, GatewayOutcome::DeliverWithoutId);
    let accepted = carrier.submit(message(to)).await.unwrap();
    assert_eq!(accepted.carrier_message_id, "msg_0001");
    let receipt = next_receipt(&mut receipts).await;
    assert_eq!(receipt.carrier_message_id, "msg_0001");
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
}

#[tokio::test]
async fn intermediate_receipts_report_nothing() {
    let gateway = GatewayPeer::start().await.unwrap();
    let (carrier, mut receipts) = carrier_with_callbacks(gateway.carrier_settings()).await;
    let to = "+447700900125";
    gateway.set_outcome(to, GatewayOutcome::DeliverAfterSent);
    carrier.submit(message(to)).await.unwrap();
    carrier.shutdown().await;
    assert_eq!(
        receipts.try_recv().unwrap().status,
        ReceiptStatus::Delivered
    );
    assert!(
        receipts.try_recv().is_err(),
        "the `sent` receipt reported nothing"
    );
}

fn receipt_request(headers: Vec<(String, String)>, body: &[u8]) -> CallbackRequest {
    CallbackRequest {
        method: "POST".into(),
        path_and_query: format!("/callbacks/{NAME}"),
        headers,
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn receipt_signatures_are_checked() {
    let gateway = GatewayPeer::start().await.unwrap();
    let (carrier, mut receipts) = build(gateway.carrier_settings(), None);
    let body =
        br#"{"id":"gw-77","message_id":"msg_77","status":"failed","detail":"absent subscriber"}"#;

    // Valid: a receipt for a message this process did not submit is reported as it is.
    let headers = gateway.receipt_headers(body);
    let answer = carrier
        .handle_callback(receipt_request(headers.clone(), body))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let receipt = receipts.try_recv().unwrap();
    assert_eq!(receipt.carrier_message_id, "gw-77");
    assert_eq!(receipt.message_id.as_deref(), Some("msg_77"));
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(receipt.detail, "absent subscriber");

    // Replayed as is.
    let answer = carrier
        .handle_callback(receipt_request(headers.clone(), body))
        .await;
    assert_eq!(answer.status, 403, "{answer:?}");

    // Tampered body under a valid signature.
    let tampered = br#"{"id":"gw-77","message_id":"msg_77","status":"delivered","detail":"absent subscriber"}"#;
    let answer = carrier
        .handle_callback(receipt_request(headers.clone(), tampered))
        .await;
    assert_eq!(answer.status, 403, "{answer:?}");

    // Missing signature.
    let unsigned: Vec<_> = headers
        .iter()
        .filter(|(k, _)| k != "x-verifyd-signature")
        .cloned()
        .collect();
    let answer = carrier
        .handle_callback(receipt_request(unsigned, body))
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");

    // Stale: correctly signed ten minutes ago.
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 600;
    let stale = vec![
        ("x-verifyd-timestamp".to_string(), old.to_string()),
        (
            "x-verifyd-signature".to_string(),
            signature::sign(gateway.secret().as_bytes(), old, body),
        ),
    ];
    let answer = carrier.handle_callback(receipt_request(stale, body)).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("skew"), "{answer:?}");

    // Signed with another secret.
    let other = vec![
        ("x-verifyd-timestamp".to_string(), (old + 600).to_string()),
        (
            "x-verifyd-signature".to_string(),
            signature::sign(b"some-other-secret-123", old + 600, body),
        ),
    ];
    let answer = carrier.handle_callback(receipt_request(other, body)).await;
    assert_eq!(answer.status, 403, "{answer:?}");

    // Signed but not the documented JSON, or an unknown status.
    let junk = b"not json";
    let answer = carrier
        .handle_callback(receipt_request(gateway.receipt_headers(junk), junk))
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let odd = br#"{"id":"gw-78","status":"exploded"}"#;
    let answer = carrier
        .handle_callback(receipt_request(gateway.receipt_headers(odd), odd))
        .await;
    assert_eq!(answer.status, 400, "{answer:?}");

    // GET is not a receipt.
    let mut get = receipt_request(gateway.receipt_headers(b""), b"");
    get.method = "GET".into();
    assert_eq!(carrier.handle_callback(get).await.status, 405);

    assert!(
        receipts.try_recv().is_err(),
        "refused callbacks report nothing"
    );
}

#[test]
fn settings_are_validated_without_showing_secrets() {
    let base = serde_json::json!({
        "url": "https://gw.example/messages", "secret": "s3cr3t-value-0123456789"
    });
    let refuse = |patch: serde_json::Value, expect: &str| {
        let mut settings = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            settings[k] = v.clone();
        }
        let (sink, _rx) = ReceiptSink::channel(16);
        let mut registry = CarrierRegistry::new();
        verify_carrier_webhook::register(&mut registry);
        let context = CarrierContext {
            name: NAME.into(),
            receipts: sink,
            callback_url: None,
        };
        let Err(error) = registry.build(KIND, &settings, context) else {
            panic!("{settings} must be refused");
        };
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains(expect), "{error}");
        assert!(!error.message().contains("s3cr3t-value"), "{error}");
        assert!(!error.message().contains("hdr-secret"), "{error}");
    };
    refuse(serde_json::json!({ "url": "gw.example" }), "url");
    refuse(serde_json::json!({ "secret": "short" }), "secret");
    refuse(serde_json::json!({ "channels": [] }), "channels");
    refuse(serde_json::json!({ "channels": ["fax"] }), "fax");
    refuse(serde_json::json!({ "regions": ["in"] }), "regions");
    refuse(serde_json::json!({ "colour": "blue" }), "colour");
    refuse(
        serde_json::json!({ "headers": { "X-Verifyd-Signature": "hdr-secret" } }),
        "X-Verifyd-Signature",
    );
    refuse(
        serde_json::json!({ "headers": { "Bad Name": "hdr-secret" } }),
        "Bad Name",
    );
    refuse(
        serde_json::json!({ "headers": { "X-Key": "hdr-secret\n" } }),
        "X-Key",
    );
    let (carrier, _rx) = build(base, None);
    let capabilities = carrier.capabilities();
    assert_eq!(capabilities.channels, vec![Channel::Sms]);
    assert!(
        !capabilities.delivery_receipts,
        "no callback URL, no receipts"
    );
}
