//! The SMPP carrier against a real SMSC (the npm `smpp` package's server, `smsc/smsc.js`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::Receiver;
use verify_carrier::conformance::{ConformancePeer, PeerBehaviour};
use verify_carrier::test_support::next_receipt;
use verify_carrier::{
    Carrier, CarrierContext, Channel, DeliveryReceipt, ErrorKind, ReceiptSink, ReceiptStatus,
};
use verify_carrier_smpp::test_smsc::TestSmsc;

use common::{free_port, message, settings, start_carrier};

struct SmscPeer {
    smscs: Mutex<Vec<TestSmsc>>,
}

#[async_trait]
impl ConformancePeer for SmscPeer {
    async fn carrier_for(
        &self,
        to: &str,
        behaviour: PeerBehaviour,
    ) -> (Arc<dyn Carrier>, Receiver<DeliveryReceipt>) {
        let outcome = match behaviour {
            PeerBehaviour::Deliver => "deliver",
            PeerBehaviour::FailDelivery => "fail",
            PeerBehaviour::RejectPermanently => "reject",
            PeerBehaviour::Throttle => "throttle",
            PeerBehaviour::Down => {
                return start_carrier(free_port(), serde_json::json!({ "connect_wait_ms": 300 }))
                    .await;
            }
            PeerBehaviour::Hang => "silent",
        };
        let smsc = TestSmsc::start(serde_json::json!({
            "destinations": { to: outcome },
            "receipt_delay_ms": 30,
        }))
        .expect("SMSC starts");
        let port = smsc.port();
        self.smscs.lock().expect("lock").push(smsc);
        start_carrier(
            port,
            serde_json::json!({
                "throttle_retries": 2,
                "response_timeout_ms": HANG_TIMEOUT.as_millis() as u64,
            }),
        )
        .await
    }

    fn answer_timeout(&self) -> Duration {
        HANG_TIMEOUT
    }
}

/// The carriers' `response_timeout_ms` in the conformance suite: the silent SMSC never answers.
const HANG_TIMEOUT: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_carrier_conformance_suite() {
    let peer = SmscPeer {
        smscs: Mutex::new(Vec::new()),
    };
    verify_carrier::conformance::run_all(&peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_spread_over_two_binds_and_every_receipt_arrives() {
    let smsc = TestSmsc::start(serde_json::json!({ "receipt_delay_ms": 5 })).expect("SMSC");
    let (carrier, mut rx) =
        start_carrier(smsc.port(), serde_json::json!({ "binds": 2, "window": 8 })).await;
    // Both binds up before the burst (the SMSC logs a bind just before answering it).
    assert_eq!(
        smsc.wait_for_events("bind", 2, Duration::from_secs(3))
            .len(),
        2
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut tasks = Vec::new();
    for n in 0..200 {
        let carrier = Arc::clone(&carrier);
        tasks.push(tokio::spawn(async move {
            let mut m = message(&format!("+4474001{n:05}"), "Your code is 123456");
            m.message_id = format!("msg_{n}");
            carrier.submit(m).await
        }));
    }
    let mut accepted = Vec::new();
    for task in tasks {
        accepted.push(
            task.await
                .expect("task")
                .expect("accepted")
                .carrier_message_id,
        );
    }
    let mut received = Vec::new();
    for _ in 0..200 {
        let receipt = next_receipt(&mut rx).await;
        assert_eq!(receipt.status, ReceiptStatus::Delivered);
        received.push(receipt.carrier_message_id);
    }
    accepted.sort();
    received.sort();
    assert_eq!(accepted, received);
    let submits = smsc.wait_for_submits(200, Duration::from_secs(2)).await;
    assert_eq!(submits.len(), 200);
    let sessions: std::collections::BTreeSet<u32> = submits.iter().map(|s| s.session).collect();
    assert_eq!(sessions.len(), 2, "both binds carried submits");
    assert_eq!(smsc.events_named("bind").len(), 2);
    carrier.shutdown().await;
    assert_eq!(
        smsc.wait_for_events("unbind", 2, Duration::from_secs(2))
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_caps_outstanding_submits_and_silence_times_out() {
    let smsc = TestSmsc::start(serde_json::json!({ "default": "silent" })).expect("SMSC");
    let (carrier, _rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "window": 4, "response_timeout_ms": 600 }),
    )
    .await;
    let mut tasks = Vec::new();
    for n in 0..10 {
        let carrier = Arc::clone(&carrier);
        tasks.push(tokio::spawn(async move {
            carrier
                .submit(message(&format!("+44740020{n:04}"), "hello"))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        smsc.submits().len(),
        4,
        "no more than the window is outstanding"
    );
    for task in tasks {
        let error = task.await.expect("task").expect_err("no answer");
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(error.is_maybe_sent(), "the SMSC may have it: {error}");
        assert!(!error.is_temporary(), "never failed over: {error}");
    }
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ucs2_message_goes_as_parts_with_udh_and_one_receipt() {
    let smsc = TestSmsc::start(serde_json::json!({ "receipt_delay_ms": 5 })).expect("SMSC");
    let (carrier, mut rx) = start_carrier(smsc.port(), serde_json::json!({})).await;
    let body = "आपका सत्यापन कोड 123456 है। यह कोड दस मिनट में समाप्त हो जाएगा। इसे किसी के साथ साझा न करें। धन्यवाद, आपकी टीम।";
    assert!(body.encode_utf16().count() > 70);
    let accepted = carrier
        .submit(message("+919812345678", body))
        .await
        .expect("accepted");
    let parts = body.encode_utf16().count().div_ceil(67);
    let submits = smsc.wait_for_submits(parts, Duration::from_secs(2)).await;
    assert_eq!(submits.len(), parts);
    let mut joined = String::new();
    for (i, part) in submits.iter().enumerate() {
        assert_eq!(part.data_coding, 0x08);
        assert_eq!(part.esm_class & 0x40, 0x40);
        let udh = part.udh.as_deref().expect("a UDH");
        assert_eq!(&udh[..6], "050003");
        assert_eq!(&udh[8..], format!("{parts:02x}{:02x}", i + 1));
        assert_eq!(part.destination, "919812345678");
        assert_eq!((part.dest_ton, part.dest_npi), (1, 1));
        joined.push_str(&part.text);
    }
    assert_eq!(joined, body);
    assert_eq!(
        accepted.carrier_message_id,
        submits[0].message_id.clone().expect("id")
    );
    let receipt = next_receipt(&mut rx).await;
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rx.try_recv().is_err(),
        "one receipt per message, not per part"
    );
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlt_tlvs_from_config_reach_the_smsc_and_missing_attributes_are_refused() {
    let smsc = TestSmsc::start(serde_json::json!({})).expect("SMSC");
    let (carrier, _rx) = start_carrier(
        smsc.port(),
        serde_json::json!({
            "source_addr": "VRFYDL",
            "tlvs": [
                { "tag": 0x1400, "attribute": "dlt_entity_id" },
                { "tag": 0x1401, "attribute": "dlt_template_id" },
                { "tag": 0x1402, "value": "fixed", "encoding": "octets" },
            ],
        }),
    )
    .await;
    let mut m = message("+919812345678", "Your code is 123456 - €5 {ok}");
    m.attributes
        .insert("dlt_entity_id".into(), "1101234567890123456".into());
    m.attributes
        .insert("dlt_template_id".into(), "1107161234567890123".into());
    carrier.submit(m.clone()).await.expect("accepted");
    let submits = smsc.wait_for_submits(1, Duration::from_secs(2)).await;
    let sent = &submits[0];
    assert_eq!(
        sent.tlv_text(0x1400).as_deref(),
        Some("1101234567890123456")
    );
    assert_eq!(
        sent.tlv_text(0x1401).as_deref(),
        Some("1107161234567890123")
    );
    assert_eq!(
        sent.tlvs.get("0x1402").map(String::as_str),
        Some("6669786564")
    );
    assert_eq!(
        (sent.source.as_str(), sent.source_ton, sent.source_npi),
        ("VRFYDL", 5, 0)
    );
    assert_eq!(
        sent.data_coding, 0x00,
        "GSM 03.38 with extension characters"
    );
    assert_eq!(sent.text, "Your code is 123456 - €5 {ok}");
    assert_eq!(sent.registered_delivery, 1);

    m.attributes.remove("dlt_template_id");
    let error = carrier.submit(m).await.expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::Rejected);
    assert!(!error.is_temporary());
    assert!(error.message().contains("dlt_template_id"), "{error}");
    assert_eq!(
        smsc.submits().len(),
        1,
        "nothing sent for the refused message"
    );
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_reported_as_rate_limited() {
    let smsc = TestSmsc::start(serde_json::json!({
        "destinations": { "+447400300001": "throttle_once", "+447400300002": "throttle", "+447400300003": "queue_full" },
    }))
    .expect("SMSC");
    let (carrier, _rx) =
        start_carrier(smsc.port(), serde_json::json!({ "throttle_retries": 2 })).await;
    carrier
        .submit(message("+447400300001", "hi"))
        .await
        .expect("accepted on retry");
    for to in ["+447400300002", "+447400300003"] {
        let error = carrier
            .submit(message(to, "hi"))
            .await
            .expect_err("throttled");
        assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
        assert!(error.is_temporary());
    }
    let submits = smsc.wait_for_submits(8, Duration::from_secs(2)).await;
    let count = |d: &str| submits.iter().filter(|s| s.destination == d).count();
    assert_eq!(count("447400300001"), 2);
    assert_eq!(count("447400300002"), 3, "first try and two retries");
    assert_eq!(count("447400300003"), 3);
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_map_to_kinds_and_never_carry_the_body() {
    let smsc = TestSmsc::start(serde_json::json!({
        "destinations": { "+447400400001": "reject", "+447400400002": "reject_source", "+447400400003": "nack" },
    }))
    .expect("SMSC");
    let (carrier, _rx) = start_carrier(smsc.port(), serde_json::json!({})).await;
    let cases = [
        (
            "+447400400001",
            ErrorKind::InvalidDestination,
            false,
            "ESME_RINVDSTADR",
        ),
        (
            "+447400400002",
            ErrorKind::Rejected,
            false,
            "ESME_RINVSRCADR",
        ),
        ("+447400400003", ErrorKind::Other, true, "generic_nack"),
    ];
    for (to, kind, temporary, words) in cases {
        let error = carrier
            .submit(message(to, "Your code is 987654"))
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), kind, "{error}");
        assert_eq!(error.is_temporary(), temporary, "{error}");
        assert!(error.message().contains(words), "{error}");
        assert!(!error.message().contains("987654"), "{error}");
    }
    let mut voice = message("+447400400004", "hi");
    voice.channel = Channel::Voice;
    let error = carrier.submit(voice).await.expect_err("SMS only");
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_smsc_is_killed_and_restarted() {
    let mut smsc = TestSmsc::start(serde_json::json!({})).expect("SMSC");
    let (carrier, _rx) =
        start_carrier(smsc.port(), serde_json::json!({ "connect_wait_ms": 300 })).await;
    carrier
        .submit(message("+447400500001", "one"))
        .await
        .expect("accepted");
    smsc.kill();
    // A submit that races the loss (its PDU queued before the bind saw the connection close)
    // is maybe sent; once the bind is seen down, nothing is sent and the error is temporary.
    let mut temporary = false;
    for _ in 0..3 {
        let error = carrier
            .submit(message("+447400500002", "two"))
            .await
            .expect_err("SMSC down");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(error.is_temporary() || error.is_maybe_sent(), "{error}");
        if error.is_temporary() {
            temporary = true;
            break;
        }
    }
    assert!(temporary, "a bind seen down is a temporary error");
    smsc.restart().expect("SMSC restarts on the same port");
    let mut accepted = false;
    for _ in 0..20 {
        if carrier
            .submit(message("+447400500003", "three"))
            .await
            .is_ok()
        {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "the carrier rebinds to the restarted SMSC");
    assert_eq!(
        smsc.wait_for_submits(1, Duration::from_secs(2)).await.len(),
        1
    );
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enquire_link_keeps_the_bind_and_a_silent_peer_is_dropped() {
    let smsc = TestSmsc::start(serde_json::json!({})).expect("SMSC");
    let (carrier, _rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "enquire_link_interval_ms": 100 }),
    )
    .await;
    carrier
        .submit(message("+447400600001", "one"))
        .await
        .expect("accepted");
    let links = smsc.wait_for_events("enquire_link", 4, Duration::from_secs(3));
    assert!(links.len() >= 4, "keep-alives sent: {}", links.len());
    assert_eq!(smsc.events_named("bind").len(), 1, "the bind stayed up");
    carrier
        .submit(message("+447400600002", "two"))
        .await
        .expect("accepted");
    carrier.shutdown().await;

    let deaf = TestSmsc::start(serde_json::json!({ "ignore_enquire_link": true })).expect("SMSC");
    let (carrier, _rx) = start_carrier(
        deaf.port(),
        serde_json::json!({ "enquire_link_interval_ms": 100, "response_timeout_ms": 200 }),
    )
    .await;
    let binds = deaf.wait_for_events("bind", 2, Duration::from_secs(3));
    assert!(
        binds.len() >= 2,
        "a bind without enquire_link_resp is dropped and rebound"
    );
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_receipt_ids_map_to_decimal_submit_ids_from_text_receipts() {
    let smsc = TestSmsc::start(serde_json::json!({
        "receipts": "text",
        "receipt_id_format": "hex",
        "destinations": { "+447400700002": "fail" },
    }))
    .expect("SMSC");
    let (carrier, mut rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "receipt_id_format": "hex_to_decimal" }),
    )
    .await;
    let delivered = carrier
        .submit(message("+447400700001", "a"))
        .await
        .expect("ok");
    assert!(
        delivered
            .carrier_message_id
            .chars()
            .all(|c| c.is_ascii_digit())
    );
    let receipt = next_receipt(&mut rx).await;
    assert_eq!(receipt.carrier_message_id, delivered.carrier_message_id);
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
    let failed = carrier
        .submit(message("+447400700002", "b"))
        .await
        .expect("ok");
    let receipt = next_receipt(&mut rx).await;
    assert_eq!(receipt.carrier_message_id, failed.carrier_message_id);
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(receipt.detail, "stat:UNDELIV err:001");
    let receipted: Vec<String> = smsc
        .events_named("receipt")
        .iter()
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect();
    assert!(
        receipted
            .iter()
            .all(|id| id.chars().any(|c| c.is_ascii_uppercase())
                || id.chars().all(|c| c.is_ascii_hexdigit()))
    );
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_submit_ids_and_decimal_receipts_match_with_no_setting() {
    let smsc = TestSmsc::start(serde_json::json!({
        "id_format": "hex",
        "id_zero_pad": 10,
        "receipt_id_format": "decimal",
        "destinations": { "+447400710002": "fail" },
    }))
    .expect("SMSC");
    let (carrier, mut rx) = start_carrier(smsc.port(), serde_json::json!({})).await;
    for (to, status) in [
        ("+447400710001", ReceiptStatus::Delivered),
        ("+447400710002", ReceiptStatus::Failed),
    ] {
        let mut sms = message(to, "a");
        sms.message_id = format!("msg_{to}");
        let accepted = carrier.submit(sms).await.expect("accepted");
        assert!(
            accepted.carrier_message_id.starts_with("000"),
            "hexadecimal with leading zeros: {accepted:?}"
        );
        let receipt = next_receipt(&mut rx).await;
        assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
        assert_eq!(receipt.message_id, Some(format!("msg_{to}")));
        assert_eq!(receipt.status, status);
    }
    let receipted: Vec<String> = smsc
        .wait_for_events("receipt", 2, Duration::from_secs(2))
        .iter()
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect();
    assert_eq!(receipted.len(), 2);
    assert!(
        receipted
            .iter()
            .all(|id| id.chars().all(|c| c.is_ascii_digit()) && !id.starts_with('0')),
        "{receipted:?}"
    );
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_lost_after_the_submit_or_a_later_part_refused_is_maybe_sent() {
    let smsc = TestSmsc::start(serde_json::json!({
        "destinations": { "+447400720001": "close", "+447400720002": "reject_later_parts" },
    }))
    .expect("SMSC");
    let (carrier, _rx) = start_carrier(smsc.port(), serde_json::json!({})).await;
    let error = carrier
        .submit(message("+447400720001", "Your code is 135790"))
        .await
        .expect_err("no answer");
    assert!(error.is_maybe_sent(), "{error}");
    assert!(!error.is_temporary(), "{error}");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(!error.message().contains("135790"), "{error}");
    // Three parts: the SMSC takes the first and refuses the second; the third is not sent.
    let long = format!("Your code is 135790. {}", "x".repeat(400));
    let error = carrier
        .submit(message("+447400720002", &long))
        .await
        .expect_err("second part refused");
    assert!(error.is_maybe_sent(), "{error}");
    assert!(!error.is_temporary(), "{error}");
    assert_eq!(error.kind(), ErrorKind::Rejected, "{error}");
    assert!(error.message().contains("part 2 of 3"), "{error}");
    assert!(!error.message().contains("135790"), "{error}");
    // The SMSC logs each submit_sm on its own output, which may reach this test after the
    // carrier got the answer: wait for the three (one to the first number, two parts here).
    let to_long: Vec<_> = smsc
        .wait_for_submits(3, Duration::from_secs(5))
        .await
        .into_iter()
        .filter(|s| s.destination == "447400720002")
        .collect();
    assert_eq!(to_long.len(), 2, "nothing sent after the refused part");
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmitter_receiver_binds_and_tlv_only_receipts() {
    let smsc = TestSmsc::start(serde_json::json!({ "receipts": "tlv" })).expect("SMSC");
    let (carrier, mut rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "bind_mode": "transmitter_receiver" }),
    )
    .await;
    let accepted = carrier
        .submit(message("+447400800001", "hello"))
        .await
        .expect("accepted");
    let receipt = next_receipt(&mut rx).await;
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.detail, "message_state:DELIVERED");
    let commands: Vec<String> = smsc
        .events_named("bind")
        .iter()
        .filter_map(|e| e["command"].as_str().map(String::from))
        .collect();
    assert!(
        commands.contains(&"bind_transmitter".to_string()),
        "{commands:?}"
    );
    assert!(
        commands.contains(&"bind_receiver".to_string()),
        "{commands:?}"
    );
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unavailable_and_never_logged() {
    let smsc = TestSmsc::start(serde_json::json!({ "password": "right" })).expect("SMSC");
    let (carrier, _rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "password": "wrong123", "connect_wait_ms": 400 }),
    )
    .await;
    let error = carrier
        .submit(message("+447400900001", "hello"))
        .await
        .expect_err("not bound");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.message().contains("ESME_RINVPASWD"), "{error}");
    assert!(!error.message().contains("wrong123"), "{error}");
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_starts_nothing() {
    let smsc = TestSmsc::start(serde_json::json!({})).expect("SMSC");
    let (receipts, _rx) = ReceiptSink::channel(1);
    let carrier = verify_carrier_smpp::build(
        &settings(smsc.port(), serde_json::json!({})),
        CarrierContext {
            name: "check".into(),
            receipts,
            callback_url: None,
        },
    )
    .expect("builds");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        smsc.events_named("bind").is_empty(),
        "no connection before start"
    );
    drop(carrier);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_pdus_get_generic_nack_and_the_bind_stays_up() {
    let smsc = TestSmsc::start(serde_json::json!({
        "raw_after_bind": [
            // An unknown command id, sequence 77.
            "0000001000000222000000000000004d",
            // A deliver_sm whose body stops inside source_addr, sequence 78.
            "0000001300000005000000000000004e000101",
        ],
    }))
    .expect("SMSC");
    let (carrier, _rx) = start_carrier(smsc.port(), serde_json::json!({})).await;
    let nacks = smsc.wait_for_events("generic_nack", 2, Duration::from_secs(3));
    let seen: Vec<(u64, u64)> = nacks
        .iter()
        .map(|e| {
            (
                e["sequence_number"].as_u64().unwrap_or(0),
                e["command_status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(seen, vec![(77, 0x03), (78, 0x02)]);
    carrier
        .submit(message("+447401000001", "still bound"))
        .await
        .expect("accepted on the same bind");
    assert_eq!(smsc.events_named("bind").len(), 1);
    carrier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_bind_rate_limit_spaces_submits() {
    let smsc = TestSmsc::start(serde_json::json!({ "default": "accept" })).expect("SMSC");
    let (carrier, _rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "max_messages_per_second": 20, "registered_delivery": 0 }),
    )
    .await;
    assert_eq!(
        carrier.capabilities().max_messages_per_second,
        Some(20),
        "one bind"
    );
    carrier
        .submit(message("+447401200000", "warm-up"))
        .await
        .expect("accepted");
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 1..=12 {
        let carrier = Arc::clone(&carrier);
        tasks.push(tokio::spawn(async move {
            carrier
                .submit(message(&format!("+4474012{n:05}"), "rate"))
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("accepted");
    }
    let elapsed = started.elapsed();
    // 20/s with a burst of 2: twelve submits need at least half a second.
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    carrier.shutdown().await;
}
