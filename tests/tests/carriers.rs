//! End-to-end tests of verifyd with real carriers: the callback endpoint, an SMPP bind to a
//! real SMSC, the Twilio-style carrier against a local server speaking Twilio's API, and
//! failover when a carrier's peer dies mid-run.

use std::time::Duration;

use verify_carrier::conformance::PeerBehaviour;
use verify_carrier_smpp::test_smsc::TestSmsc;
use verify_carrier_twilio::test_peer::TwilioPeer;
use verify_client::VerifyOptions;
use verify_client::proto::v1::{Channel, CheckResult, DeliveryStatus, EventType};
use verify_e2e::{
    Backend, ServerOptions, TestServer, events_until, on_both_backends, unique_mobile,
};

on_both_backends!(
    twilio_sends_sms_and_calls_landlines_with_twiml,
    smpp_for_one_country_twilio_for_voice_and_failover_when_the_smsc_dies,
    receipts_in_decimal_for_hex_ids_are_matched_with_no_setting,
);

/// The digits of the first code a text reads, digit by digit (`"4, 9, 3, 8"`) or in one run.
fn code_in(text: &str) -> String {
    let digits: String = text
        .split(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
        .map(|part| {
            part.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        })
        .find(|digits| digits.len() >= 4)
        .expect("a code in the text");
    digits
}

/// The callback endpoint answers 404 for a carrier it does not know and for one that takes no
/// callbacks, and logs the refusal with the carrier's name but not the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_endpoint_refuses_unknown_and_callbackless_carriers() {
    let server =
        TestServer::start_with_config(Backend::Sqlite, "[callbacks]\nlisten = \"127.0.0.1:0\"\n")
            .await;
    let address = server
        .callbacks_address
        .expect("verifyd printed its callback address");
    let http = verify_carrier::http_client(Duration::from_secs(5)).expect("client");
    let secret_body = "MessageSid=SM1&MessageStatus=delivered&Body=424242";

    let unknown = http
        .post(format!("http://{address}/callbacks/nobody"))
        .body(secret_body)
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status().as_u16(), 404);

    let simulator = http
        .post(format!("http://{address}/callbacks/sim"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(secret_body)
        .send()
        .await
        .expect("answer");
    assert_eq!(simulator.status().as_u16(), 404);
    assert!(
        simulator
            .text()
            .await
            .unwrap()
            .contains("takes no callbacks")
    );

    let too_big = http
        .post(format!("http://{address}/callbacks/sim"))
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .expect("answer");
    assert_eq!(too_big.status().as_u16(), 413);

    let log = server.log();
    assert!(log.contains("callback refused"), "{log}");
    assert!(log.contains("sim"), "{log}");
    assert!(!log.contains("424242"), "the body reached the log:\n{log}");
}

/// With the Twilio-style carrier (a local server speaking Twilio's API): a mobile gets an SMS
/// through the Messages API, a landline a call through the Calls API whose TwiML reads the code
/// digit by digit twice in the request's language; the signed status callbacks come back to
/// verifyd's callback endpoint and become delivered or failed events.
async fn twilio_sends_sms_and_calls_landlines_with_twiml(backend: Backend) {
    let peer = TwilioPeer::start_default().await;
    let config = format!(
        "[callbacks]\nlisten = \"127.0.0.1:0\"\n\n[[carriers]]\nname = \"twilio\"\nkind = \"twilio\"\n{}\n[routes]\ndefault = [\"twilio\"]\n",
        peer.carrier_settings_toml()
    );
    let server = TestServer::start_with_config(backend, config).await;
    let client = server.client().await;

    // A mobile: SMS, its code in the body, a delivered receipt by callback.
    let mobile = unique_mobile();
    let sms = client
        .verify(VerifyOptions::new(&mobile))
        .await
        .expect("verify")
        .verification
        .unwrap();
    assert_eq!(sms.channel(), Channel::Sms);
    let mut events = client.watch(Some(&sms.id), 0).await.unwrap();
    let delivered = events_until(&mut events, EventType::MessageDelivered)
        .await
        .pop()
        .unwrap();
    assert_eq!(delivered.carrier, "twilio");
    let message = peer
        .messages()
        .into_iter()
        .find(|m| m.param("To") == Some(mobile.as_str()))
        .expect("a Messages request for the mobile");
    let callback_base = format!(
        "http://{}/callbacks/twilio",
        server.callbacks_address.unwrap()
    );
    assert!(
        message
            .param("StatusCallback")
            .is_some_and(|url| url.starts_with(&callback_base)),
        "{:?}",
        message.param("StatusCallback")
    );
    let code = code_in(message.param("Body").unwrap());
    let check = client.check_by_id(&sms.id, &code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);

    // A landline, in Spanish: a call whose TwiML reads the code twice, digit by digit.
    let landline = "+44 20 7946 0456";
    let call = client
        .verify(VerifyOptions {
            locale: Some("es".into()),
            ..VerifyOptions::new(landline)
        })
        .await
        .expect("verify")
        .verification
        .unwrap();
    assert_eq!(call.channel(), Channel::Voice);
    let mut events = client.watch(Some(&call.id), 0).await.unwrap();
    events_until(&mut events, EventType::MessageDelivered).await;
    let request = peer
        .calls()
        .into_iter()
        .find(|c| c.param("To") == Some("+442079460456"))
        .expect("a Calls request for the landline");
    let twiml = request.param("Twiml").expect("inline TwiML");
    assert!(
        twiml.starts_with("<?xml") || twiml.starts_with("<Response"),
        "{twiml}"
    );
    assert!(twiml.contains("language=\"es-"), "{twiml}");
    let code = code_in(twiml);
    let spoken: Vec<String> = code.chars().map(String::from).collect();
    assert_eq!(twiml.matches(&spoken.join(", ")).count(), 2, "{twiml}");
    let check = client.check_by_id(&call.id, &code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);

    // An unanswered call is a failed receipt with Twilio's words.
    let unanswered = "+44 20 7946 0457";
    peer.set_behaviour("+442079460457", PeerBehaviour::FailDelivery);
    let id = client
        .verify(VerifyOptions::new(unanswered))
        .await
        .expect("verify")
        .verification
        .unwrap()
        .id;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let failed = events_until(&mut events, EventType::MessageFailed)
        .await
        .pop()
        .unwrap();
    assert_eq!(failed.delivery_status(), DeliveryStatus::Failed);
    assert!(failed.detail.contains("no-answer"), "{}", failed.detail);

    let log = server.log();
    assert!(
        !log.contains(&peer.auth_token()),
        "the auth token reached the log"
    );
    assert!(!log.contains(&code), "a code reached the log");
}

/// The issue's scenario: an SMPP bind to a real SMSC carries SMS to Great Britain, the
/// Twilio-style carrier carries voice, and a simulator is the next SMS route. A Verify goes out
/// as `submit_sm` and the SMSC's `deliver_sm` receipt becomes a delivered event; a landline gets
/// a call whose TwiML reads the code; then the SMSC is killed in the middle of a run of
/// verifications, and every verification still reaches a carrier: accepted by the SMSC before
/// it died, or rerouted to the next route.
async fn smpp_for_one_country_twilio_for_voice_and_failover_when_the_smsc_dies(backend: Backend) {
    let mut smsc = TestSmsc::start(serde_json::json!({
        "system_id": "verifyd-e2e",
        "password": "pw-e2e-1",
        "receipt_delay_ms": 30,
    }))
    .expect("the test SMSC starts");
    let twilio = TwilioPeer::start_default().await;
    let config = format!(
        r#"
[callbacks]
listen = "127.0.0.1:0"

[[carriers]]
name = "operator"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "verifyd-e2e"
password_env = "E2E_OPERATOR_PASSWORD"
source_addr = "VERIFYD"
window = 16
connect_wait_ms = 300
reconnect_min_ms = 100
reconnect_max_ms = 1000
response_timeout_ms = 2000
regions = ["GB"]

[[carriers]]
name = "twilio"
kind = "twilio"
{twilio}

[[carriers]]
name = "backup"
kind = "sim"
channels = ["sms"]
outbox = "backup-outbox.jsonl"

[routes]
default = ["twilio"]
countries.GB = ["operator", "backup", "twilio"]
"#,
        port = smsc.port(),
        twilio = twilio.carrier_settings_toml(),
    );
    let server = TestServer::start_with(
        backend,
        ServerOptions {
            extra_config: config,
            env: vec![("E2E_OPERATOR_PASSWORD".into(), "pw-e2e-1".into())],
            ..ServerOptions::default()
        },
    )
    .await;
    let client = server.client().await;

    // SMS to a British mobile: submit_sm over the bind, a deliver_sm receipt, delivered.
    let mobile = unique_mobile();
    let id = client
        .verify(VerifyOptions::new(&mobile))
        .await
        .expect("verify")
        .verification
        .unwrap()
        .id;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let seen = events_until(&mut events, EventType::MessageDelivered).await;
    let delivered = seen.last().unwrap();
    assert_eq!(delivered.carrier, "operator");
    assert!(
        seen.iter()
            .any(|e| e.r#type() == EventType::MessageSubmitted && e.carrier == "operator"),
        "{seen:?}"
    );
    let submit = smsc
        .submits()
        .into_iter()
        .find(|s| format!("+{}", s.destination) == mobile)
        .expect("the SMSC received the submit_sm");
    assert_eq!((submit.dest_ton, submit.dest_npi), (1, 1));
    assert_eq!((submit.source.as_str(), submit.source_ton), ("VERIFYD", 5));
    assert_eq!(submit.registered_delivery & 1, 1);
    let code = code_in(&submit.text);
    let check = client.check_by_id(&id, &code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);

    // A British landline: no SMS route can call, so Twilio places the call with TwiML.
    let call = client
        .verify(VerifyOptions::new("+44 20 7946 0789"))
        .await
        .expect("verify")
        .verification
        .unwrap();
    assert_eq!(call.channel(), Channel::Voice);
    twilio.wait_for_requests(1, Duration::from_secs(10)).await;
    let twiml = twilio
        .calls()
        .into_iter()
        .find(|c| c.param("To") == Some("+442079460789"))
        .and_then(|c| c.param("Twiml").map(str::to_string))
        .expect("a call with TwiML");
    let spoken: Vec<String> = code_in(&twiml).chars().map(String::from).collect();
    assert_eq!(twiml.matches(&spoken.join(", ")).count(), 2, "{twiml}");

    // A run of verifications, with the SMSC killed in the middle.
    let numbers: Vec<String> = (0..30).map(|_| unique_mobile()).collect();
    let mut ids = Vec::new();
    for (n, number) in numbers.iter().enumerate() {
        if n == 12 {
            smsc.wait_for_submits(1 + 10, Duration::from_secs(10)).await;
            smsc.kill();
        }
        let verification = client
            .verify(VerifyOptions::new(number))
            .await
            .expect("verify")
            .verification
            .unwrap();
        ids.push(verification.id);
    }
    // Nothing reached the SMSC twice: one accepted submit_sm at most per number.
    let submits = smsc.submits();
    let mut per_number: std::collections::HashMap<String, usize> = Default::default();
    for submit in submits.iter().filter(|s| s.status == 0) {
        *per_number
            .entry(format!("+{}", submit.destination))
            .or_default() += 1;
    }
    let doubled: Vec<_> = per_number.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice to the SMSC: {doubled:?}");
    // Every verification reaches a carrier: accepted by the SMSC before it died, rerouted, or
    // (handed over as the link dropped) maybe sent, which is never resent anywhere.
    let accepted_by_smsc: std::collections::HashSet<String> = per_number.into_keys().collect();
    let backup = server.directory.join("backup-outbox.jsonl");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rerouted: std::collections::HashSet<String> = verify_e2e::read_outbox(&backup)
            .iter()
            .filter_map(|line| line["to"].as_str().map(str::to_string))
            .collect();
        let mut lost = Vec::new();
        for (number, id) in numbers.iter().zip(&ids) {
            if accepted_by_smsc.contains(number) || rerouted.contains(number) {
                continue;
            }
            let stored = client.get(id).await.unwrap();
            let maybe_sent = stored.attempts.iter().any(|a| {
                a.delivery_status() == DeliveryStatus::MaybeSent && a.carrier == "operator"
            });
            if !maybe_sent {
                lost.push(number.clone());
            }
        }
        if lost.is_empty() {
            assert!(
                !rerouted.is_empty(),
                "messages after the kill went to the next route"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "verifications that reached no carrier: {lost:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut rerouted_events, mut set_aside) = (0, 0);
    for id in &ids {
        let stored = client.get(id).await.unwrap();
        assert!(
            stored
                .attempts
                .iter()
                .all(|a| a.delivery_status() != DeliveryStatus::Failed),
            "a message failed instead of failing over: {stored:?}"
        );
        let Some(attempt) = stored.attempts.iter().find(|a| a.carrier == "backup") else {
            continue;
        };
        // On the backup route because the operator refused it (rerouted), or because the
        // operator's breaker was already open when Verify chose the route (set aside).
        let mut events = client.watch(Some(id), 0).await.unwrap();
        let seen = events_until(&mut events, EventType::MessageSubmitted).await;
        let queued = seen
            .iter()
            .find(|e| e.r#type() == EventType::MessageQueued)
            .expect("a queued event");
        if let Some(rerouted) = seen
            .iter()
            .find(|e| e.r#type() == EventType::MessageRerouted)
        {
            assert_eq!(rerouted.carrier, "backup");
            assert!(rerouted.detail.contains("operator"), "{}", rerouted.detail);
            if rerouted_events == 0 {
                eprintln!("first reroute: {}", rerouted.detail);
            }
            rerouted_events += 1;
        } else {
            assert_eq!(queued.carrier, "backup", "{attempt:?}");
            assert!(
                queued.detail.contains("set aside: operator breaker open"),
                "{}",
                queued.detail
            );
            set_aside += 1;
        }
    }
    // Which of the two a message takes depends on whether the operator's breaker opened
    // before its Verify chose the route (a race with the link's death; refusals and their
    // reroutes are pinned by e2e.rs and fallback.rs).
    assert!(
        rerouted_events + set_aside > 0,
        "some verifications moved to the backup route"
    );
    eprintln!(
        "of {} verifications, {rerouted_events} rerouted after the kill and {set_aside} queued to the backup with the operator set aside",
        ids.len()
    );
    let log = server.log();
    assert!(
        !log.contains("pw-e2e-1"),
        "the SMPP password reached the log"
    );
    assert!(!log.contains(&code), "a code reached the log");
}

/// Many SMSCs give the message id in hexadecimal in `submit_sm_resp` and in decimal in their
/// receipts. With no setting, verifyd matches them: while it runs (the bind knows what it
/// submitted), and after a crash, when the receipt the SMSC kept comes on the new bind and the
/// server matches it by the id's other spelling.
async fn receipts_in_decimal_for_hex_ids_are_matched_with_no_setting(backend: Backend) {
    let smsc = TestSmsc::start(serde_json::json!({
        "system_id": "verifyd-ids",
        "password": "pw-ids",
        "id_format": "hex",
        "receipt_id_format": "decimal",
        "receipt_delay_ms": 300,
    }))
    .expect("the test SMSC starts");
    let config = format!(
        "[[carriers]]\nname = \"operator\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"verifyd-ids\"\npassword = \"pw-ids\"\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n\n\
         [routes]\ndefault = [\"operator\"]\n",
        smsc.port()
    );
    let mut server = TestServer::start_with_config(backend, config).await;
    let client = server.client().await;
    let delivered = |id: String| {
        let client = client.clone();
        async move {
            let mut events = client.watch(Some(&id), 0).await.unwrap();
            events_until(&mut events, EventType::MessageDelivered)
                .await
                .pop()
                .unwrap()
        }
    };

    // While verifyd runs.
    let id = client
        .verify(VerifyOptions::new(unique_mobile()))
        .await
        .expect("verify")
        .verification
        .unwrap()
        .id;
    let receipt = delivered(id.clone()).await;
    assert_eq!(receipt.carrier, "operator");
    let carrier_id = client.get(&id).await.unwrap().attempts[0]
        .carrier_message_id
        .clone();
    let receipt_ids: Vec<String> = smsc
        .events_named("receipt")
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    let as_decimal = u128::from_str_radix(&carrier_id, 16)
        .expect("a hex id")
        .to_string();
    assert!(
        receipt_ids.contains(&as_decimal) && !receipt_ids.contains(&carrier_id),
        "the SMSC answered {carrier_id} and receipted {receipt_ids:?}"
    );

    // Across a crash: submitted, then verifyd dies before the receipt; the SMSC keeps it and
    // sends it on the restarted process's bind, whose tracker never saw the message.
    let id = client
        .verify(VerifyOptions::new(unique_mobile()))
        .await
        .expect("verify")
        .verification
        .unwrap()
        .id;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    events_until(&mut events, EventType::MessageSubmitted).await;
    server.kill();
    let kept = tokio::task::block_in_place(|| {
        smsc.wait_for_events("receipt_kept", 1, Duration::from_secs(10))
    });
    assert_eq!(
        kept.len(),
        1,
        "the SMSC kept the receipt while verifyd was down"
    );
    server.restart();
    let client = server.client().await;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let receipt = events_until(&mut events, EventType::MessageDelivered)
        .await
        .pop()
        .unwrap();
    assert_eq!(receipt.carrier, "operator");
}
