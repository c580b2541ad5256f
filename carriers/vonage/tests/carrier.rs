//! The `vonage` carrier against the local Vonage-style server: conformance, request shape,
//! signatures, error mapping and receipts over real HTTP.

use std::collections::{BTreeMap, HashMap};
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
use verify_carrier_vonage::test_peer::{PeerOutcome, PeerSettings, ReceiptStyle, VonagePeer};
use verify_carrier_vonage::{KIND, SignatureMethod, signature};

const NAME: &str = "vonage-test";

type Built = (Arc<dyn Carrier>, Receiver<DeliveryReceipt>);

/// Builds a carrier from `settings` whose callback URL is served on a local listener.
async fn carrier_with_callbacks(settings: serde_json::Value) -> Built {
    test_support::build_with_callbacks(verify_carrier_vonage::register, KIND, NAME, settings)
        .await
        .into_parts()
}

fn build(settings: serde_json::Value, callback_url: Option<String>) -> Built {
    test_support::build(
        verify_carrier_vonage::register,
        KIND,
        NAME,
        settings,
        callback_url,
    )
    .into_parts()
}

fn message(to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_0001".into(),
        verification_id: "vf_0001".into(),
        to: to.into(),
        region_code: Some("GB".into()),
        channel: Channel::Sms,
        body: body.into(),
        code: OneTimeCode::new("493817"),
        locale: "en".into(),
        sender: None,
        attributes: Default::default(),
    }
}

struct Peer {
    peer: VonagePeer,
}

#[async_trait]
impl ConformancePeer for Peer {
    async fn carrier_for(&self, to: &str, behaviour: PeerBehaviour) -> Built {
        let mut settings = self.peer.carrier_settings();
        match behaviour {
            PeerBehaviour::Deliver => self.peer.set_outcome(to, PeerOutcome::Deliver),
            PeerBehaviour::FailDelivery => self.peer.set_outcome(to, PeerOutcome::FailDelivery),
            PeerBehaviour::RejectPermanently => self.peer.set_outcome(to, PeerOutcome::Status(7)),
            PeerBehaviour::Throttle => self.peer.set_outcome(to, PeerOutcome::Status(1)),
            PeerBehaviour::Down => settings["base_url"] = VonagePeer::down_url().await.into(),
            PeerBehaviour::Hang => {
                self.peer.set_outcome(to, PeerOutcome::Hang);
                settings["timeout_ms"] = (HANG_TIMEOUT.as_millis() as u64).into();
            }
        }
        carrier_with_callbacks(settings).await
    }

    fn receipt_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn answer_timeout(&self) -> Duration {
        HANG_TIMEOUT
    }
}

/// The carrier's `timeout_ms` against a peer that never answers.
const HANG_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn passes_the_conformance_suite_with_signed_requests_and_receipts() {
    let peer = Peer {
        peer: VonagePeer::start().await.unwrap(),
    };
    verify_carrier::conformance::run_all(&peer).await;
    let requests = peer.peer.requests();
    assert!(requests.iter().all(|r| r.params.contains_key("sig")));
}

#[tokio::test]
async fn conformance_with_md5hash_and_get_receipts() {
    let peer = Peer {
        peer: VonagePeer::start_with(PeerSettings {
            signature_method: SignatureMethod::Md5hash,
            receipt_style: ReceiptStyle::Get,
            ..PeerSettings::default()
        })
        .await
        .unwrap(),
    };
    verify_carrier::conformance::submit_sms_and_receive_delivered(&peer).await;
    verify_carrier::conformance::failed_delivery_is_a_failed_receipt(&peer).await;
}

#[tokio::test]
async fn json_receipts_are_accepted() {
    let peer = Peer {
        peer: VonagePeer::start_with(PeerSettings {
            signature_method: SignatureMethod::Sha512,
            receipt_style: ReceiptStyle::PostJson,
            ..PeerSettings::default()
        })
        .await
        .unwrap(),
    };
    verify_carrier::conformance::submit_sms_and_receive_delivered(&peer).await;
}

#[tokio::test]
async fn request_with_api_secret_has_vonage_fields() {
    let peer = VonagePeer::start_with(PeerSettings {
        signature_secret: None,
        ..PeerSettings::default()
    })
    .await
    .unwrap();
    let (carrier, mut receipts) = carrier_with_callbacks(peer.carrier_settings()).await;
    let accepted = carrier
        .submit(message("+447700900123", "Your code is 493817"))
        .await
        .unwrap();
    let request = &peer.requests()[0];
    let p = &request.params;
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(p["api_key"], "peer-key");
    assert_eq!(p["api_secret"], "peer-api-secret");
    assert_eq!(p["to"], "447700900123", "no + in to");
    assert_eq!(p["from"], "verifyd");
    assert_eq!(p["text"], "Your code is 493817");
    assert_eq!(p["type"], "text");
    assert_eq!(p["client-ref"], "msg_0001");
    assert_eq!(p["status-report-req"], "1");
    assert!(
        p["callback"].ends_with("/callbacks/vonage-test"),
        "{}",
        p["callback"]
    );
    assert!(!p.contains_key("sig") && !p.contains_key("entity-id"));
    // Unsigned receipts are accepted when no signature secret is configured.
    let receipt = next_receipt(&mut receipts).await;
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.message_id.as_deref(), Some("msg_0001"));
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
}

#[tokio::test]
async fn signed_request_carries_sig_and_timestamp_but_no_secret() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, _receipts) = build(peer.carrier_settings(), None);
    carrier
        .submit(message("+447700900123", "Your code is 493817"))
        .await
        .unwrap();
    let p = &peer.requests()[0].params;
    assert!(!p.contains_key("api_secret"));
    assert!(!p.contains_key("callback"), "no callback URL configured");
    let timestamp: u64 = p["timestamp"].parse().unwrap();
    assert!(timestamp > 1_700_000_000);
    assert!(signature::verify(
        p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &p["sig"],
        "peer-signature-secret",
        SignatureMethod::Sha256,
    ));
}

#[tokio::test]
async fn hindi_text_is_unicode_and_dlt_ids_come_from_attributes() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, _receipts) = build(peer.carrier_settings(), None);
    let mut hindi = message("+919812345678", "आपका सत्यापन कोड 493817 है");
    hindi.region_code = Some("IN".into());
    hindi.sender = Some("VRFYD".into());
    hindi.attributes = BTreeMap::from([
        ("dlt_entity_id".into(), "1101234567890123456".into()),
        ("dlt_template_id".into(), "1107123456789012345".into()),
    ]);
    carrier.submit(hindi).await.unwrap();
    let p = &peer.requests()[0].params;
    assert_eq!(p["type"], "unicode");
    assert_eq!(p["text"], "आपका सत्यापन कोड 493817 है");
    assert_eq!(p["entity-id"], "1101234567890123456");
    assert_eq!(p["content-id"], "1107123456789012345");
    assert_eq!(p["from"], "VRFYD", "the route's sender overrides `from`");

    // A custom mapping names other attributes.
    let mut settings = peer.carrier_settings();
    settings["dlt"] = serde_json::json!({
        "entity_id_attribute": "pe_id", "content_id_attribute": "template"
    });
    let (carrier, _receipts) = build(settings, None);
    let mut custom = message("+919812345678", "Code 493817");
    custom.attributes = BTreeMap::from([
        ("pe_id".into(), "E1".into()),
        ("template".into(), "T1".into()),
        ("dlt_entity_id".into(), "ignored".into()),
    ]);
    carrier.submit(custom).await.unwrap();
    let p = &peer.requests()[1].params;
    assert_eq!(
        (p["entity-id"].as_str(), p["content-id"].as_str()),
        ("E1", "T1")
    );
    assert_eq!(p["type"], "text");
}

#[tokio::test]
async fn vonage_statuses_map_to_error_kinds() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, _receipts) = build(peer.carrier_settings(), None);
    let cases = [
        (PeerOutcome::Status(1), ErrorKind::RateLimited, true),
        (PeerOutcome::Status(5), ErrorKind::Unavailable, true),
        (PeerOutcome::Status(3), ErrorKind::InvalidDestination, false),
        (PeerOutcome::Status(7), ErrorKind::InvalidDestination, false),
        (
            PeerOutcome::Status(29),
            ErrorKind::InvalidDestination,
            false,
        ),
        (
            PeerOutcome::Status(33),
            ErrorKind::InvalidDestination,
            false,
        ),
        (PeerOutcome::Status(6), ErrorKind::Rejected, false),
        (PeerOutcome::Status(12), ErrorKind::Rejected, false),
        (PeerOutcome::Status(15), ErrorKind::Rejected, false),
        (PeerOutcome::Status(8), ErrorKind::Config, false),
        (PeerOutcome::Http(500), ErrorKind::Unavailable, true),
        (PeerOutcome::Http(503), ErrorKind::Unavailable, true),
        (PeerOutcome::Http(429), ErrorKind::RateLimited, true),
        (PeerOutcome::Http(404), ErrorKind::Rejected, false),
        // 502 and 503 say the message was not taken; see the next test for 504.
        (PeerOutcome::Http(502), ErrorKind::Unavailable, true),
    ];
    for (n, (outcome, kind, temporary)) in cases.into_iter().enumerate() {
        let to = format!("+4477009{n:05}");
        peer.set_outcome(&to, outcome.clone());
        let error = carrier
            .submit(message(&to, "Your code is 493817"))
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), kind, "{outcome:?}: {error}");
        assert_eq!(error.is_temporary(), temporary, "{outcome:?}: {error}");
        assert!(!error.message().contains("493817"), "{error}");
        assert!(
            !error.message().contains("<html>"),
            "no body in errors: {error}"
        );
        if let PeerOutcome::Status(status) = outcome {
            assert!(
                error
                    .message()
                    .contains(&format!("Vonage status {status}:")),
                "{error}"
            );
        }
    }
}

#[tokio::test]
async fn answers_that_may_hide_an_accepted_message_are_maybe_sent() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, _rx) = build(peer.carrier_settings(), None);
    let cases = [
        (PeerOutcome::Http(504), ErrorKind::Timeout, "HTTP 504"),
        (PeerOutcome::Http(200), ErrorKind::Other, "HTTP 200"),
        (
            PeerOutcome::RefuseLastPart {
                parts: 3,
                status: 6,
            },
            ErrorKind::Rejected,
            "took 2 of 3 parts",
        ),
    ];
    for (n, (outcome, kind, words)) in cases.into_iter().enumerate() {
        let to = format!("+4477019{n:05}");
        peer.set_outcome(&to, outcome.clone());
        let error = carrier
            .submit(message(&to, "Your code is 493817"))
            .await
            .expect_err("no acceptance");
        assert!(error.is_maybe_sent(), "{outcome:?}: {error}");
        assert!(!error.is_temporary(), "{outcome:?}: {error}");
        assert_eq!(error.kind(), kind, "{outcome:?}: {error}");
        assert!(error.message().contains(words), "{outcome:?}: {error}");
        assert!(!error.message().contains("493817"), "{error}");
    }
}

#[tokio::test]
async fn refused_credentials_are_a_config_error_without_the_secret() {
    let peer = VonagePeer::start_with(PeerSettings {
        signature_secret: None,
        ..PeerSettings::default()
    })
    .await
    .unwrap();
    let mut settings = peer.carrier_settings();
    settings["api_secret"] = "wrong-secret-value".into();
    let (carrier, _receipts) = build(settings, None);
    let error = carrier
        .submit(message("+447700900123", "Your code is 493817"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(!error.is_temporary());
    assert!(error.message().contains("credentials"), "{error}");
    assert!(error.message().contains("status 4"), "{error}");
    assert!(!error.message().contains("wrong-secret-value"), "{error}");

    // A wrong signature secret is Vonage status 14, also a config error.
    let peer = VonagePeer::start().await.unwrap();
    let mut settings = peer.carrier_settings();
    settings["signature_secret"] = "not-the-peer-secret".into();
    let (carrier, _receipts) = build(settings, None);
    let error = carrier
        .submit(message("+447700900123", "Your code is 493817"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(error.message().contains("status 14"), "{error}");
    assert!(!error.message().contains("not-the-peer-secret"), "{error}");
}

#[tokio::test]
async fn unreachable_api_is_unavailable_and_temporary() {
    let peer = VonagePeer::start().await.unwrap();
    let mut settings = peer.carrier_settings();
    settings["base_url"] = VonagePeer::down_url().await.into();
    let (carrier, _receipts) = build(settings, None);
    let error = carrier
        .submit(message("+447700900123", "Your code is 493817"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.is_temporary());
}

#[tokio::test]
async fn multipart_message_gets_one_receipt_under_the_first_part_id() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, mut receipts) = carrier_with_callbacks(peer.carrier_settings()).await;
    let to = "+447700900555";
    peer.set_outcome(to, PeerOutcome::DeliverInParts(3));
    let accepted = carrier
        .submit(message(to, &"Your code is 493817. ".repeat(12)))
        .await
        .unwrap();
    carrier.shutdown().await;
    assert_eq!(
        peer.receipts_sent().len(),
        3,
        "one receipt per part was sent"
    );
    let receipt = receipts.try_recv().expect("one receipt");
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert!(receipts.try_recv().is_err(), "only one receipt per message");
}

#[tokio::test]
async fn intermediate_receipts_report_nothing() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, mut receipts) = carrier_with_callbacks(peer.carrier_settings()).await;
    let to = "+447700900556";
    peer.set_outcome(to, PeerOutcome::DeliverAfterIntermediate);
    carrier
        .submit(message(to, "Your code is 493817"))
        .await
        .unwrap();
    carrier.shutdown().await;
    assert_eq!(peer.receipts_sent().len(), 3);
    assert_eq!(
        receipts.try_recv().unwrap().status,
        ReceiptStatus::Delivered
    );
    assert!(receipts.try_recv().is_err());
}

fn receipt_params(peer: &VonagePeer, message_id: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::from([
        ("messageId".to_string(), message_id.to_string()),
        ("msisdn".to_string(), "447700900123".to_string()),
        ("to".to_string(), "verifyd".to_string()),
        ("status".to_string(), "failed".to_string()),
        ("err-code".to_string(), "6".to_string()),
        ("api-key".to_string(), "peer-key".to_string()),
        ("client-ref".to_string(), "msg_9".to_string()),
    ]);
    peer.sign_receipt(&mut params);
    params
}

fn form_request(params: &BTreeMap<String, String>) -> CallbackRequest {
    CallbackRequest {
        method: "POST".into(),
        path_and_query: format!("/callbacks/{NAME}"),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish()
            .into_bytes(),
    }
}

#[tokio::test]
async fn receipt_signatures_are_checked() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, mut receipts) = build(peer.carrier_settings(), None);

    // A valid signed receipt of an unknown message is reported under its own id.
    let good = receipt_params(&peer, "0A00000012345678");
    let answer = carrier.handle_callback(form_request(&good)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let receipt = receipts.try_recv().unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(receipt.message_id.as_deref(), Some("msg_9"));
    assert_eq!(
        receipt.detail,
        "status:failed err-code:6 (anti-spam rejection)"
    );

    // The same receipt again: its nonce was used.
    let answer = carrier.handle_callback(form_request(&good)).await;
    assert_eq!(answer.status, 403, "{answer:?}");

    // Tampered.
    let mut tampered = receipt_params(&peer, "0A00000012345679");
    tampered.insert("status".into(), "delivered".into());
    let answer = carrier.handle_callback(form_request(&tampered)).await;
    assert_eq!(answer.status, 403, "{answer:?}");

    // Unsigned.
    let mut unsigned = receipt_params(&peer, "0A00000012345680");
    unsigned.remove("sig");
    let answer = carrier.handle_callback(form_request(&unsigned)).await;
    assert_eq!(answer.status, 401, "{answer:?}");

    // Stale: signed correctly, but ten minutes old.
    let mut stale = BTreeMap::from([
        ("messageId".to_string(), "0A00000012345681".to_string()),
        ("status".to_string(), "delivered".to_string()),
        ("timestamp".to_string(), (unix_now() - 600).to_string()),
    ]);
    peer.sign_receipt(&mut stale);
    let answer = carrier.handle_callback(form_request(&stale)).await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("timestamp"), "{answer:?}");

    // Signed with the secret but for another account.
    let mut other = receipt_params(&peer, "0A00000012345682");
    other.insert("api-key".into(), "other-key".into());
    other.remove("sig");
    peer.sign_receipt(&mut other);
    let answer = carrier.handle_callback(form_request(&other)).await;
    assert_eq!(answer.status, 403, "{answer:?}");

    // Wrong method.
    let mut put = form_request(&receipt_params(&peer, "0A00000012345683"));
    put.method = "PUT".into();
    assert_eq!(carrier.handle_callback(put).await.status, 405);

    assert!(
        receipts.try_recv().is_err(),
        "no receipt from a refused callback"
    );
}

#[tokio::test]
async fn get_and_json_receipts_are_read() {
    let peer = VonagePeer::start().await.unwrap();
    let (carrier, mut receipts) = build(peer.carrier_settings(), None);
    let mut params = receipt_params(&peer, "0A000000000000A1");
    params.insert("status".into(), "delivered".into());
    params.insert("err-code".into(), "0".into());
    params.remove("sig");
    params.remove("nonce");
    peer.sign_receipt(&mut params);
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let get = CallbackRequest {
        method: "GET".into(),
        path_and_query: format!("/callbacks/{NAME}?{query}"),
        ..Default::default()
    };
    assert_eq!(carrier.handle_callback(get).await.status, 200);
    assert_eq!(
        receipts.try_recv().unwrap().status,
        ReceiptStatus::Delivered
    );

    let mut params = receipt_params(&peer, "0A000000000000A2");
    params.insert("status".into(), "expired".into());
    params.remove("sig");
    params.remove("nonce");
    peer.sign_receipt(&mut params);
    let json = CallbackRequest {
        method: "POST".into(),
        path_and_query: format!("/callbacks/{NAME}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&params).unwrap(),
    };
    assert_eq!(carrier.handle_callback(json).await.status, 200);
    let receipt = receipts.try_recv().unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert!(
        receipt.detail.starts_with("status:expired"),
        "{}",
        receipt.detail
    );

    let garbage = CallbackRequest {
        method: "POST".into(),
        path_and_query: format!("/callbacks/{NAME}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: b"{not json".to_vec(),
    };
    assert_eq!(carrier.handle_callback(garbage).await.status, 400);
}

#[test]
fn settings_are_validated_without_showing_secrets() {
    let base = serde_json::json!({
        "api_key": "k", "api_secret": "s3cr3t-value", "from": "verifyd"
    });
    let refuse = |patch: serde_json::Value, expect: &str| {
        let mut settings = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                settings.as_object_mut().unwrap().remove(k);
            } else {
                settings[k] = v.clone();
            }
        }
        let (sink, _rx) = ReceiptSink::channel(16);
        let mut registry = CarrierRegistry::new();
        verify_carrier_vonage::register(&mut registry);
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
        assert!(error.message().contains(NAME), "{error}");
        assert!(!error.message().contains("s3cr3t-value"), "{error}");
    };
    refuse(serde_json::json!({ "api_key": "" }), "api_key");
    refuse(serde_json::json!({ "from": null }), "from");
    refuse(serde_json::json!({ "api_secret": null }), "api_secret");
    refuse(serde_json::json!({ "colour": "blue" }), "colour");
    refuse(
        serde_json::json!({ "sign_requests": true }),
        "signature_secret",
    );
    refuse(
        serde_json::json!({ "require_signed_receipts": true }),
        "signature_secret",
    );
    refuse(serde_json::json!({ "signature_method": "sha3" }), "sha3");
    refuse(serde_json::json!({ "regions": ["india"] }), "regions");
    refuse(serde_json::json!({ "base_url": "ftp://x" }), "base_url");
    let (carrier, _rx) = build(base.clone(), None);
    assert_eq!(carrier.capabilities().channels, vec![Channel::Sms]);
    assert!(!format!("{:?}", HashMap::from([(1, base)])).is_empty());
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
