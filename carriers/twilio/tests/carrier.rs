//! The `twilio` carrier against the local Twilio API (`test-peer`), with status callbacks
//! served by verifyd's real callback endpoint.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::Receiver;
use verify_carrier::conformance::{self, ConformancePeer};
use verify_carrier::test_support::{self, next_receipt};
use verify_carrier::{
    Carrier, CarrierContext, CarrierRegistry, Channel, DeliveryReceipt, ErrorKind, OneTimeCode,
    OutboundMessage, ReceiptSink, ReceiptStatus,
};
use verify_carrier_twilio::signature::{SIGNATURE_HEADER, sign};
use verify_carrier_twilio::test_peer::{
    PEER_FROM, PeerBehaviour, PeerSettings, TwilioPeer, unreachable_base_url,
};
use verify_carrier_twilio::{KIND, MESSAGE_ID_PARAM};

const NAME: &str = "twilio-test";
const WAIT: Duration = Duration::from_secs(5);

/// A carrier built through the registry, its receipts, and the URL of its callback endpoint
/// (served by `verify_carrier::callback::serve`, as verifyd serves it).
struct Built {
    carrier: Arc<dyn Carrier>,
    receipts: Receiver<DeliveryReceipt>,
    callback_url: String,
}

async fn build(settings: serde_json::Value) -> Built {
    let built =
        test_support::build_with_callbacks(verify_carrier_twilio::register, KIND, NAME, settings)
            .await;
    Built {
        carrier: built.carrier,
        receipts: built.receipts,
        callback_url: built.callback_url.expect("served callbacks"),
    }
}

fn message(to: &str, channel: Channel, locale: &str, region: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_42".into(),
        verification_id: "vf_42".into(),
        to: to.into(),
        region_code: Some(region.into()),
        channel,
        body: body.into(),
        code: OneTimeCode::new("493817"),
        locale: locale.into(),
        sender: None,
        attributes: Default::default(),
    }
}

fn sms(to: &str) -> OutboundMessage {
    message(
        to,
        Channel::Sms,
        "en",
        "GB",
        "Your verification code is 493817. It expires in 10 minutes.",
    )
}

struct Peer {
    twilio: TwilioPeer,
}

#[async_trait]
impl ConformancePeer for Peer {
    async fn carrier_for(
        &self,
        to: &str,
        behaviour: PeerBehaviour,
    ) -> (Arc<dyn Carrier>, Receiver<DeliveryReceipt>) {
        let mut settings = self.twilio.carrier_settings();
        if behaviour == PeerBehaviour::Down {
            settings["base_url"] = unreachable_base_url().await.into();
        } else {
            self.twilio.set_behaviour(to, behaviour);
        }
        if behaviour == PeerBehaviour::Hang {
            settings["timeout_ms"] = (HANG_TIMEOUT.as_millis() as u64).into();
        }
        let built = build(settings).await;
        (built.carrier, built.receipts)
    }

    fn receipt_timeout(&self) -> Duration {
        WAIT
    }

    fn answer_timeout(&self) -> Duration {
        HANG_TIMEOUT
    }
}

/// The carrier's `timeout_ms` against a peer that never answers.
const HANG_TIMEOUT: Duration = Duration::from_millis(500);

#[tokio::test]
async fn conformance_suite_passes_against_the_local_twilio_api() {
    let peer = Peer {
        twilio: TwilioPeer::start_default().await,
    };
    conformance::run_all(&peer).await;
    let calls = peer.twilio.calls();
    assert_eq!(calls.len(), 1, "the voice check placed one call");
    // Every callback the peer sent was taken by the callback endpoint.
    let callbacks = peer.twilio.callbacks();
    assert!(!callbacks.is_empty());
    assert!(
        callbacks.iter().all(|c| c.response_status == Some(200)),
        "{callbacks:?}"
    );
}

#[tokio::test]
async fn sms_request_carries_twilios_fields_and_basic_auth() {
    let peer = TwilioPeer::start_default().await;
    let mut built = build(peer.carrier_settings()).await;
    let accepted = built.carrier.submit(sms("+447400200001")).await.unwrap();
    assert!(
        accepted.carrier_message_id.starts_with("SM"),
        "{accepted:?}"
    );

    let requests = peer.messages();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(request.authorized);
    assert_eq!(
        request.username.as_deref(),
        Some(peer.account_sid().as_str())
    );
    assert_eq!(request.account_sid, peer.account_sid());
    assert_eq!(request.param("To"), Some("+447400200001"));
    assert_eq!(request.param("From"), Some(PEER_FROM));
    assert_eq!(
        request.param("Body"),
        Some("Your verification code is 493817. It expires in 10 minutes.")
    );
    assert_eq!(
        request.param("StatusCallback"),
        Some(format!("{}?{MESSAGE_ID_PARAM}=msg_42", built.callback_url).as_str())
    );
    assert_eq!(request.param("MessagingServiceSid"), None);
    let mut with_sender = sms("+447400200001");
    with_sender.sender = Some("VERIFYD".into());
    built.carrier.submit(with_sender).await.unwrap();
    assert_eq!(peer.messages()[1].param("From"), Some("VERIFYD"));

    let receipt = next_receipt(&mut built.receipts).await;
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.message_id.as_deref(), Some("msg_42"));
    assert_eq!(receipt.carrier, NAME);
    // `sent` came first and made no receipt.
    let statuses: Vec<String> = peer
        .wait_for_callbacks(4, WAIT)
        .await
        .iter()
        .filter(|c| c.param("MessageSid") == Some(accepted.carrier_message_id.as_str()))
        .filter_map(|c| c.param("MessageStatus").map(str::to_string))
        .collect();
    assert_eq!(statuses, ["sent", "delivered"]);
    let second = next_receipt(&mut built.receipts).await;
    assert_ne!(second.carrier_message_id, receipt.carrier_message_id);
    assert!(
        built.receipts.try_recv().is_err(),
        "one receipt per message"
    );
    built.carrier.shutdown().await;
}

#[tokio::test]
async fn api_key_authenticates_and_messaging_service_picks_the_sender() {
    const KEY_SID: &str = "SK00000000000000000000000000000001";
    const KEY_SECRET: &str = "api-key-secret-value";
    const SERVICE: &str = "MG00000000000000000000000000000002";
    let peer = TwilioPeer::start(PeerSettings {
        api_key: Some((KEY_SID.into(), KEY_SECRET.into())),
        ..Default::default()
    })
    .await;
    let mut settings = peer.carrier_settings();
    let table = settings.as_object_mut().unwrap();
    table.remove("from");
    table.insert("messaging_service_sid".into(), SERVICE.into());
    table.insert("api_key_sid".into(), KEY_SID.into());
    table.insert("api_key_secret".into(), KEY_SECRET.into());
    table.insert("channels".into(), serde_json::json!(["sms"]));
    let mut built = build(settings).await;

    let accepted = built.carrier.submit(sms("+447400200002")).await.unwrap();
    let request = &peer.messages()[0];
    assert_eq!(request.username.as_deref(), Some(KEY_SID));
    assert!(request.authorized);
    assert_eq!(request.param("MessagingServiceSid"), Some(SERVICE));
    assert_eq!(request.param("From"), None);
    // Callbacks are still signed with the auth token.
    let receipt = next_receipt(&mut built.receipts).await;
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);

    let error = built
        .carrier
        .submit(message("+447400200002", Channel::Voice, "en", "GB", "x"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(!error.is_temporary());
    built.carrier.shutdown().await;
}

#[tokio::test]
async fn a_landline_call_reads_the_code_twice_in_the_message_language() {
    let peer = TwilioPeer::start_default().await;
    let mut built = build(peer.carrier_settings()).await;
    // The words verifyd's policy writes for a Spanish voice message.
    let body = "Tu código de verificación es: 4, 9, 3, 8, 1, 7. Repito: 4, 9, 3, 8, 1, 7.";
    let mut call = message("+34910000001", Channel::Voice, "es", "ES", body);
    // A route's alphanumeric sender ID cannot place a call: the configured number does.
    call.sender = Some("VERIFYD".into());
    let accepted = built.carrier.submit(call).await.unwrap();
    assert!(accepted.carrier_message_id.starts_with("CA"));

    let calls = peer.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.param("To"), Some("+34910000001"));
    assert_eq!(call.param("From"), Some(PEER_FROM));
    assert_eq!(
        call.param("Url"),
        None,
        "the TwiML is inline, the code in no URL"
    );
    assert_eq!(call.param("StatusCallbackEvent"), Some("completed"));
    assert_eq!(call.param("StatusCallbackMethod"), Some("POST"));
    assert_eq!(call.param("MachineDetection"), None);
    let twiml = call.param("Twiml").expect("inline TwiML");
    assert!(
        twiml.starts_with("<?xml") && twiml.ends_with("</Response>"),
        "{twiml}"
    );
    assert_eq!(twiml.matches("4, 9, 3, 8, 1, 7").count(), 2, "{twiml}");
    assert!(!twiml.contains("493817"), "{twiml}");
    assert_eq!(
        twiml.matches("<Say language=\"es-ES\">").count(),
        2,
        "{twiml}"
    );
    assert!(
        twiml.contains("</Say><Pause length=\"1\"/><Say"),
        "a pause between the readings: {twiml}"
    );

    let receipt = next_receipt(&mut built.receipts).await;
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert!(receipt.detail.starts_with("call completed"), "{receipt:?}");
    built.carrier.shutdown().await;
}

#[tokio::test]
async fn unanswered_calls_and_undelivered_sms_are_failed_receipts_with_twilios_reason() {
    let peer = TwilioPeer::start_default().await;
    peer.set_default_behaviour(PeerBehaviour::FailDelivery);
    let mut settings = peer.carrier_settings();
    settings["machine_detection"] = "detect_message_end".into();
    settings["voice"] = "Polly.Joanna".into();
    let mut built = build(settings).await;

    let call = built
        .carrier
        .submit(message(
            "+12025550101",
            Channel::Voice,
            "en",
            "US",
            "Your verification code is: 4, 9, 3, 8, 1, 7. Again: 4, 9, 3, 8, 1, 7.",
        ))
        .await
        .unwrap();
    let receipt = next_receipt(&mut built.receipts).await;
    assert_eq!(receipt.carrier_message_id, call.carrier_message_id);
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert!(receipt.detail.contains("no-answer"), "{receipt:?}");
    let request = &peer.calls()[0];
    assert_eq!(request.param("MachineDetection"), Some("DetectMessageEnd"));
    assert!(
        request
            .param("Twiml")
            .unwrap()
            .contains("<Say language=\"en-US\" voice=\"Polly.Joanna\">"),
        "{request:?}"
    );

    let sms = built.carrier.submit(sms("+447400200003")).await.unwrap();
    let receipt = next_receipt(&mut built.receipts).await;
    assert_eq!(receipt.carrier_message_id, sms.carrier_message_id);
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert!(
        receipt.detail.contains("undelivered") && receipt.detail.contains("ErrorCode=30003"),
        "{receipt:?}"
    );
    built.carrier.shutdown().await;
}

#[tokio::test]
async fn twilio_error_bodies_map_to_kinds_without_secrets() {
    let peer = TwilioPeer::start_default().await;
    peer.set_behaviour("+447400200010", PeerBehaviour::Throttle);
    peer.set_behaviour("+447400200011", PeerBehaviour::Down);
    peer.set_behaviour("+447400200012", PeerBehaviour::RejectPermanently);
    let built = build(peer.carrier_settings()).await;

    let invalid = built.carrier.submit(sms("+0123")).await.unwrap_err();
    assert_eq!(invalid.kind(), ErrorKind::InvalidDestination, "{invalid}");
    assert!(!invalid.is_temporary());
    assert!(invalid.message().contains("21211"), "{invalid}");
    assert!(
        invalid.message().contains("is not a valid phone number"),
        "{invalid}"
    );

    let throttled = built
        .carrier
        .submit(sms("+447400200010"))
        .await
        .unwrap_err();
    assert_eq!(throttled.kind(), ErrorKind::RateLimited, "{throttled}");
    assert!(throttled.is_temporary() && throttled.message().contains("20429"));

    let down = built
        .carrier
        .submit(sms("+447400200011"))
        .await
        .unwrap_err();
    assert_eq!(down.kind(), ErrorKind::Unavailable, "{down}");
    assert!(down.is_temporary());

    let rejected = built
        .carrier
        .submit(sms("+447400200012"))
        .await
        .unwrap_err();
    assert_eq!(rejected.kind(), ErrorKind::InvalidDestination, "{rejected}");
    assert!(
        !rejected.message().contains("7400200012"),
        "the number is masked: {rejected}"
    );
    for error in [&invalid, &throttled, &down, &rejected] {
        assert!(!error.message().contains("493817"), "{error}");
    }

    let mut wrong_token = peer.carrier_settings();
    wrong_token["auth_token"] = "wrong-token-value".into();
    let refused = build(wrong_token)
        .await
        .carrier
        .submit(sms("+447400200013"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Config, "{refused}");
    assert!(!refused.is_temporary());
    assert!(
        refused.message().contains("refused the credentials"),
        "{refused}"
    );
    assert!(
        !refused.message().contains("wrong-token-value"),
        "{refused}"
    );
    assert!(
        !refused.message().contains(&peer.account_sid()),
        "{refused}"
    );
    assert!(!peer.requests().last().unwrap().authorized);
    built.carrier.shutdown().await;
}

#[tokio::test]
async fn callbacks_without_a_valid_signature_are_refused() {
    let peer = TwilioPeer::start_default().await;
    let mut built = build(peer.carrier_settings()).await;
    let http = verify_carrier::http_client(WAIT).unwrap();
    let url = format!("{}?{MESSAGE_ID_PARAM}=msg_7", built.callback_url);
    let params: Vec<(String, String)> = [
        ("AccountSid", peer.account_sid()),
        (
            "MessageSid",
            "SM00000000000000000000000000000007".to_string(),
        ),
        ("MessageStatus", "delivered".to_string()),
        ("To", "+447400200020".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let post = |params: &[(String, String)], signature: Option<String>| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let mut request = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let token = peer.auth_token();

    assert_eq!(post(&params, None).await, 403, "unsigned");
    assert_eq!(
        post(&params, Some("bm9wZQ==".into())).await,
        403,
        "bad signature"
    );
    let other_url = sign(&token, &built.callback_url, &params);
    assert_eq!(
        post(&params, Some(other_url)).await,
        403,
        "signed for another URL"
    );
    let mut tampered = params.clone();
    tampered[2].1 = "undelivered".into();
    let signature = sign(&token, &url, &params);
    assert_eq!(
        post(&tampered, Some(signature.clone())).await,
        403,
        "changed param"
    );
    let wrong_token = sign("not-the-token", &url, &params);
    assert_eq!(post(&params, Some(wrong_token)).await, 403, "wrong token");
    assert!(
        built.receipts.try_recv().is_err(),
        "no receipt from a refused callback"
    );

    // Intermediate statuses are taken without a receipt.
    let mut sent = params.clone();
    sent[2].1 = "sent".into();
    let signature_sent = sign(&token, &url, &sent);
    assert_eq!(post(&sent, Some(signature_sent)).await, 200);
    assert!(built.receipts.try_recv().is_err());

    // The same request correctly signed is a receipt, even for a sid this carrier never sent.
    assert_eq!(post(&params, Some(signature)).await, 200);
    let receipt = next_receipt(&mut built.receipts).await;
    assert_eq!(
        receipt.carrier_message_id,
        "SM00000000000000000000000000000007"
    );
    assert_eq!(receipt.message_id.as_deref(), Some("msg_7"));
    assert_eq!(receipt.status, ReceiptStatus::Delivered);

    // A GET is not a status callback.
    let status = http.get(&url).send().await.unwrap().status().as_u16();
    assert_eq!(status, 405);
    built.carrier.shutdown().await;
}

#[tokio::test]
async fn bad_settings_are_config_errors_naming_the_field() {
    let mut registry = CarrierRegistry::new();
    verify_carrier_twilio::register(&mut registry);
    let context = || CarrierContext {
        name: "tw".into(),
        receipts: ReceiptSink::channel(16).0,
        callback_url: None,
    };
    let cases = [
        (serde_json::Value::Null, "account_sid"),
        (
            serde_json::json!({ "account_sid": "AC00000000000000000000000000c0ffee",
                "auth_token": "sekrit-token", "from": "+15005550006", "timeout": 5 }),
            "unknown field `timeout`",
        ),
        (
            serde_json::json!({ "account_sid": "AC00000000000000000000000000c0ffee",
                "auth_token": "sekrit-token", "from": "+15005550006", "timeout_ms": 0 }),
            "timeout_ms",
        ),
    ];
    for (settings, expected) in cases {
        let Err(error) = registry.build(KIND, &settings, context()) else {
            panic!("{settings} must not build");
        };
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains(expected), "{error}");
        assert!(error.message().contains("carrier `tw`"), "{error}");
        assert!(!error.message().contains("sekrit-token"), "{error}");
    }
    let built = registry
        .build(
            KIND,
            &serde_json::json!({ "account_sid": "AC00000000000000000000000000c0ffee",
                "auth_token": "sekrit-token", "from": "+15005550006",
                "api_key_sid": "SK00000000000000000000000000000001",
                "api_key_secret": "sekrit-key", "regions": ["GB"] }),
            context(),
        )
        .expect("valid settings build without a callback URL");
    assert_eq!(built.kind(), KIND);
    let capabilities = built.capabilities();
    assert_eq!(capabilities.channels, [Channel::Sms, Channel::Voice]);
    assert_eq!(capabilities.regions, ["GB"]);
    assert!(
        !capabilities.delivery_receipts,
        "no callback URL, no receipts"
    );
}
