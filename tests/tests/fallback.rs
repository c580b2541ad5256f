//! Fallback workflows end to end: Honduras, where SMS converts poorly, runs
//! `sms(30s) -> voice(60s)`; a code not checked in time, or an SMS whose receipt fails, is called
//! by voice with the same code, and each step is explained on the event stream. With
//! `adaptive`, once measured SMS conversion for HN is below voice's, verifications start on voice.

use std::time::{Duration, Instant};

use verify_client::proto::v1::{Channel, CheckResult, DeliveryStatus, EventType};
use verify_client::{VerifyClient, VerifyOptions};
use verify_e2e::{Backend, TestServer, events_until, on_both_backends};

on_both_backends!(
    an_unchecked_sms_is_followed_by_a_call_with_the_same_code,
    a_failed_sms_receipt_calls_at_once,
    a_failing_route_is_set_aside_by_its_breaker,
    adaptive_starts_on_voice_once_sms_converts_worse,
);

/// Two simulators, one per channel, so an SMS can fail while calls go through; Honduras runs
/// the issue's workflow.
const HONDURAS: &str = r#"
[[carriers]]
name = "hn-sms"
kind = "sim"
channels = ["sms"]
latency_ms = 20
destinations."+50491234002" = "fail"

[[carriers]]
name = "hn-voice"
kind = "sim"
channels = ["voice"]
latency_ms = 20

[routes]
default = ["hn-sms", "hn-voice"]

[fallback.countries.HN]
strategy = "ordered"
workflow = "sms(30s) -> voice(60s)"
"#;

/// A code left unchecked past the SMS step's wait (shortened by the request to 2 s) is called
/// with the same code, with a FALLBACK_STEP event saying why; the call's code approves.
async fn an_unchecked_sms_is_followed_by_a_call_with_the_same_code(backend: Backend) {
    let server = TestServer::start_with_config(backend, HONDURAS).await;
    let client = server.client().await;
    let response = client
        .verify(VerifyOptions {
            workflow: Some("sms(2s) -> voice(60s)".into()),
            ..VerifyOptions::new("+504 9123 4001")
        })
        .await
        .expect("verify");
    let verification = response.verification.unwrap();
    assert_eq!(verification.channel(), Channel::Sms);
    assert_eq!(verification.workflow, "sms(2s) -> voice(1m)");
    assert_eq!(verification.workflow_step, 1);
    assert_eq!(verification.strategy, "ordered");
    assert!(
        response.decision.contains("hn-sms"),
        "the decision names the route: {}",
        response.decision
    );

    let mut events = client.watch(Some(&verification.id), 0).await.unwrap();
    let seen = events_until(&mut events, EventType::FallbackStep).await;
    let step = seen.last().unwrap();
    assert!(
        step.detail.contains("voice") && step.detail.contains("hn-voice"),
        "{}",
        step.detail
    );
    let lines = server.wait_for_messages(&verification.id, 2).await;
    assert_eq!(lines[0]["channel"], "sms");
    assert_eq!(lines[1]["channel"], "voice");
    assert_eq!(
        lines[0]["code"], lines[1]["code"],
        "the same code on both steps"
    );

    let stored = client.get(&verification.id).await.unwrap();
    assert_eq!(stored.workflow_step, 2);
    assert_eq!(stored.channel(), Channel::Voice);
    assert_eq!(stored.attempts.len(), 2);
    let code = lines[1]["code"].as_str().unwrap();
    let check = client.check_by_id(&verification.id, code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);
}

/// An SMS whose receipt fails does not wait out its 30 s: the call goes at once, and the
/// FALLBACK_STEP event carries the carrier's failure.
async fn a_failed_sms_receipt_calls_at_once(backend: Backend) {
    let server = TestServer::start_with_config(backend, HONDURAS).await;
    let client = server.client().await;
    let started = Instant::now();
    let verification = client
        .verify(VerifyOptions::new("+504 9123 4002"))
        .await
        .expect("verify")
        .verification
        .unwrap();
    assert_eq!(verification.workflow, "sms(30s) -> voice(1m)");
    let mut events = client.watch(Some(&verification.id), 0).await.unwrap();
    let seen = events_until(&mut events, EventType::FallbackStep).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the call did not wait for the SMS step's 30 s"
    );
    assert!(
        seen.iter().any(|e| e.r#type() == EventType::MessageFailed),
        "{seen:?}"
    );
    let step = seen.last().unwrap();
    assert!(step.detail.contains("voice"), "{}", step.detail);
    let lines = server.wait_for_messages(&verification.id, 1).await;
    assert_eq!(lines[0]["channel"], "voice");
    let code = lines[0]["code"].as_str().unwrap();
    let check = client.check_by_id(&verification.id, code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);
}

/// After three temporary failures in a row on one route, its breaker opens: the next message
/// is rerouted at once without the carrier being asked, and the reroute says why.
async fn a_failing_route_is_set_aside_by_its_breaker(backend: Backend) {
    let config = r#"
[[carriers]]
name = "flaky"
kind = "sim"
destinations."+447400201001" = "down"
destinations."+447400202001" = "down"
destinations."+447400203001" = "down"

[[carriers]]
name = "backup"
kind = "sim"

[routes]
default = ["backup"]
countries.GB = ["flaky", "backup"]

[routes.breaker]
consecutive_failures = 3
cool_down = "60s"
"#;
    let server = TestServer::start_with_config(backend, config).await;
    let client = server.client().await;
    for n in 1..=3 {
        let id = client
            // Numbers far apart: three neighbours unconverted would look like SMS pumping.
            .verify(VerifyOptions::new(format!("+4474002{n:02}001")))
            .await
            .expect("verify")
            .verification
            .unwrap()
            .id;
        let mut events = client.watch(Some(&id), 0).await.unwrap();
        let rerouted = events_until(&mut events, EventType::MessageRerouted)
            .await
            .pop()
            .unwrap();
        assert!(
            rerouted.detail.contains("unavailable"),
            "{}",
            rerouted.detail
        );
    }
    // A number the simulator would deliver: flaky is not asked, its breaker is open, so the
    // planner puts it last and the message goes to backup first, saying why.
    let id = client
        .verify(VerifyOptions::new("+447400200009"))
        .await
        .expect("verify")
        .verification
        .unwrap()
        .id;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let seen = events_until(&mut events, EventType::MessageDelivered).await;
    let queued = seen
        .iter()
        .find(|e| e.r#type() == EventType::MessageQueued)
        .expect("queued");
    assert_eq!(queued.carrier, "backup");
    assert!(
        queued.detail.contains("set aside") && queued.detail.contains("flaky breaker open"),
        "{}",
        queued.detail
    );
    assert!(
        seen.iter()
            .all(|e| e.r#type() != EventType::MessageRerouted),
        "{seen:?}"
    );
}

/// Honduras on `adaptive`, trusting 5 sends and reloading the counts every second.
const HONDURAS_ADAPTIVE: &str = r#"
# Codes to neighbouring numbers that nobody checks are what the pumping guard stops; this
# traffic is made up to measure conversion, so the guard only watches.
[abuse.pumping]
level = "monitor"

[[carriers]]
name = "hn-sms"
kind = "sim"
channels = ["sms"]
latency_ms = 20

[[carriers]]
name = "hn-voice"
kind = "sim"
channels = ["voice"]
latency_ms = 20

[routes]
default = ["hn-sms", "hn-voice"]

[fallback.adaptive]
min_samples = 5
stats_refresh = "1s"

[fallback.countries.HN]
strategy = "adaptive"
workflow = "sms(30s) -> voice(60s)"
"#;

/// Waits until the carrier has taken every message of `id` (submitted or delivered).
async fn wait_until_sent(client: &VerifyClient, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = client.get(id).await.expect("get");
        if !stored.attempts.is_empty()
            && stored.attempts.iter().all(|a| {
                matches!(
                    a.delivery_status(),
                    DeliveryStatus::Submitted | DeliveryStatus::Delivered
                )
            })
        {
            return;
        }
        assert!(Instant::now() < deadline, "{id} not sent: {stored:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Before 5 sends are measured, `adaptive` runs the workflow in order (SMS first). Then 6 SMS
/// codes go unchecked and 5 called codes are checked: at the next load of the counts, a new
/// verification starts with the call, and its decision gives the measured conversion.
async fn adaptive_starts_on_voice_once_sms_converts_worse(backend: Backend) {
    let server = TestServer::start_with_config(backend, HONDURAS_ADAPTIVE).await;
    let client = server.client().await;

    let first = client
        .verify(VerifyOptions::new("+504 9123 4100"))
        .await
        .expect("verify");
    let verification = first.verification.unwrap();
    assert_eq!(verification.channel(), Channel::Sms);
    assert_eq!(verification.strategy, "adaptive");
    assert_eq!(verification.workflow, "sms(30s) -> voice(1m)");
    assert!(
        first
            .decision
            .contains("fewer than 5 sends measured on every route to HN"),
        "{}",
        first.decision
    );
    let mut ids = vec![verification.id];

    // SMS that nobody checks: 6 sent, none verified.
    for n in 1..=5 {
        let verification = client
            .verify(VerifyOptions::new(format!("+504 9123 41{n:02}")))
            .await
            .expect("verify")
            .verification
            .unwrap();
        assert_eq!(verification.channel(), Channel::Sms);
        ids.push(verification.id);
    }
    // Calls (asked for by the client) whose codes are checked: 5 sent, 5 verified.
    for n in 1..=5 {
        let verification = client
            .verify(VerifyOptions {
                channel: Some(Channel::Voice),
                ..VerifyOptions::new(format!("+504 9123 42{n:02}"))
            })
            .await
            .expect("verify")
            .verification
            .unwrap();
        assert_eq!(verification.channel(), Channel::Voice);
        let code = server.code_for(&verification.id).await;
        let check = client.check_by_id(&verification.id, &code).await.unwrap();
        assert_eq!(check.result(), CheckResult::Approved);
        ids.push(verification.id);
    }
    for id in &ids {
        wait_until_sent(&client, id).await;
    }
    // The counts are reloaded every second: wait for two loads after the last send was
    // recorded, so that one started after it.
    let loaded = |log: String| log.matches("conversion counts loaded").count();
    let before = loaded(server.log());
    let deadline = Instant::now() + Duration::from_secs(15);
    while loaded(server.log()) < before + 2 {
        assert!(Instant::now() < deadline, "the counts were not reloaded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let adaptive = client
        .verify(VerifyOptions::new("+504 9123 4300"))
        .await
        .expect("verify");
    let verification = adaptive.verification.unwrap();
    assert_eq!(
        verification.channel(),
        Channel::Voice,
        "{}",
        adaptive.decision
    );
    assert_eq!(verification.strategy, "adaptive");
    assert_eq!(verification.workflow, "voice(1m) -> sms(30s)");
    assert!(
        adaptive.decision.contains(
            "adaptive: voice via hn-voice converts best for HN (100% of 5 sends; sms via hn-sms: 0% of 6)"
        ),
        "{}",
        adaptive.decision
    );
    let lines = server.wait_for_messages(&verification.id, 1).await;
    assert_eq!(lines[0]["channel"], "voice");
    let code = lines[0]["code"].as_str().unwrap();
    let check = client.check_by_id(&verification.id, code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);
}
