//! End-to-end behaviour of verifyd through the real binary, on SQLite and on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use verify_client::proto::v1::{
    self, Channel, CheckResult, DeliveryStatus, EventType, VerificationStatus,
};
use verify_client::{VerifyClient, VerifyOptions};
use verify_e2e::{
    Backend, MANY_NUMBERS, ServerOptions, TestServer, events_until, on_both_backends, unique_mobile,
};

on_both_backends!(
    verify_then_check_approves,
    new_verify_resends_the_same_code_until_max_sends,
    idempotency_key_replays,
    verify_calls_that_arrive_together_each_get_their_own_answer,
    check_outcomes_are_distinct,
    expired_codes_are_refused_and_announced,
    landlines_get_voice_or_a_clear_refusal,
    bad_input_names_the_field,
    events_stream_live_and_resume_after_cursor,
    shutdown_is_graceful_and_restart_keeps_everything,
    failed_delivery_is_an_event,
    api_keys_guard_the_service_but_not_health,
    temporary_refusals_fail_over_and_permanent_ones_fail,
);

fn status_of(error: verify_client::ClientError) -> tonic::Status {
    error.status().cloned().expect("a gRPC status")
}

async fn verify(client: &VerifyClient, to: &str) -> v1::VerifyResponse {
    client.verify(VerifyOptions::new(to)).await.expect("verify")
}

async fn verify_then_check_approves(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client().await;
    let number = unique_mobile();
    let response = verify(&client, &number).await;
    let verification = response.verification.expect("verification");
    assert_eq!(verification.status(), VerificationStatus::Pending);
    assert_eq!(verification.channel(), Channel::Sms);
    assert_eq!(verification.to, number);
    assert_eq!(verification.checks_left, 5);
    assert_eq!(verification.code_length, 6);
    let classification = verification
        .classification
        .as_ref()
        .expect("classification");
    assert_eq!(classification.region_code, "GB");
    assert_eq!(classification.line_type(), v1::LineType::Mobile);

    let code = server.code_for(&verification.id).await;
    assert_eq!(code.len(), 6);
    let line = &server.outbox_lines()[0];
    assert!(line["body"].as_str().unwrap().contains(&code));
    assert_eq!(line["to"], number);
    assert_eq!(line["channel"], "sms");

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let check = client.check_by_id(&verification.id, wrong).await.unwrap();
    assert_eq!(check.result(), CheckResult::WrongCode);
    assert_eq!(check.checks_left, 4);

    let check = client.check_by_id(&verification.id, &code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);
    // Idempotent: the right code again stays approved and uses no check.
    let again = client.check_by_id(&verification.id, &code).await.unwrap();
    assert_eq!(again.result(), CheckResult::Approved);
    assert_eq!(again.checks_left, 3);

    let stored = client.get(&verification.id).await.unwrap();
    assert_eq!(stored.status(), VerificationStatus::Approved);
    assert_eq!(stored.attempts.len(), 1);
    let attempt = &stored.attempts[0];
    assert_eq!(attempt.delivery_status(), DeliveryStatus::Delivered);
    assert_eq!(attempt.carrier, "sim");
    assert!(attempt.carrier_message_id.starts_with("sim-"));

    // Nothing in the database or the log holds the code in clear.
    assert!(!server.log().contains(&code), "the code reached the log");
    if backend == Backend::Sqlite {
        let database = std::fs::read(server.directory.join("verifyd.db")).unwrap();
        let wal = std::fs::read(server.directory.join("verifyd.db-wal")).unwrap_or_default();
        for bytes in [database, wal] {
            assert!(
                !bytes.windows(code.len()).any(|w| w == code.as_bytes()),
                "the code is stored in clear"
            );
        }
    }

    // Check by number finds the latest verification of that number.
    let by_number = client.check_by_number(&number, &code).await.unwrap();
    assert_eq!(by_number.result(), CheckResult::Approved);
}

async fn new_verify_resends_the_same_code_until_max_sends(backend: Backend) {
    let server = TestServer::start_with_config(backend, "[codes]\nmax_sends = 3\n").await;
    let client = server.client().await;
    let number = unique_mobile();
    let first = verify(&client, &number).await;
    let id = first.verification.unwrap().id;
    assert!(!first.resent);
    let code = server.code_for(&id).await;

    let second = verify(&client, &number).await;
    assert!(second.resent);
    let resent = second.verification.unwrap();
    assert_eq!(resent.id, id, "same verification");
    assert_eq!(resent.sends_left, 1);
    let lines = server.wait_for_messages(&id, 2).await;
    assert!(
        lines.iter().all(|line| line["code"] == code.as_str()),
        "same code"
    );

    // A resend may switch channel.
    let third = client
        .verify(VerifyOptions {
            channel: Some(Channel::Voice),
            ..VerifyOptions::new(&number)
        })
        .await
        .unwrap();
    assert_eq!(third.verification.unwrap().channel(), Channel::Voice);
    let lines = server.wait_for_messages(&id, 3).await;
    assert_eq!(lines[2]["channel"], "voice");
    let spoken: String = code.chars().map(|c| format!("{c}, ")).collect();
    assert!(
        lines[2]["body"]
            .as_str()
            .unwrap()
            .contains(spoken.trim_end_matches(", "))
    );

    let status = status_of(
        client
            .verify(VerifyOptions::new(&number))
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("all 3 sends"),
        "{}",
        status.message()
    );

    // The code still works after all that.
    let check = client.check_by_id(&id, &code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);
    // A new Verify after approval starts a new verification with a new code.
    let fresh = verify(&client, &number).await.verification.unwrap();
    assert_ne!(fresh.id, id);
}

/// Verify calls that arrive together are stored together; each still gets the answer it would
/// get alone: new numbers a verification each, several calls for one number one verification
/// (the others resend its code, up to the limit), retries with one idempotency key one
/// verification and one message, and a key used for two numbers refused for the second.
async fn verify_calls_that_arrive_together_each_get_their_own_answer(backend: Backend) {
    let server = TestServer::start_with_config(backend, "[codes]\nmax_sends = 3\n").await;
    let client = server.client().await;
    let shared = unique_mobile();
    let keyed = unique_mobile();
    let mut calls = Vec::new();
    let new_numbers: Vec<String> = (0..20).map(|_| unique_mobile()).collect();
    for number in &new_numbers {
        calls.push(VerifyOptions::new(number));
    }
    for _ in 0..5 {
        calls.push(VerifyOptions::new(&shared));
    }
    for _ in 0..4 {
        calls.push(VerifyOptions {
            idempotency_key: Some("together-1".into()),
            ..VerifyOptions::new(&keyed)
        });
    }
    let answers =
        futures::future::join_all(calls.into_iter().map(|options| client.verify(options))).await;

    let (fresh, rest) = answers.split_at(new_numbers.len());
    let mut ids = HashSet::new();
    for (answer, number) in fresh.iter().zip(&new_numbers) {
        let verification = answer
            .as_ref()
            .expect("verify")
            .verification
            .clone()
            .unwrap();
        assert_eq!(&verification.to, number);
        assert!(ids.insert(verification.id), "one verification per number");
    }
    let (shared_answers, keyed_answers) = rest.split_at(5);
    let shared_ids: HashSet<String> = shared_answers
        .iter()
        .filter_map(|answer| answer.as_ref().ok())
        .map(|answer| answer.verification.clone().unwrap().id)
        .collect();
    assert_eq!(
        shared_ids.len(),
        1,
        "one verification for the shared number"
    );
    let created = shared_answers
        .iter()
        .filter(|answer| matches!(answer, Ok(a) if !a.resent))
        .count();
    let resent = shared_answers
        .iter()
        .filter(|answer| matches!(answer, Ok(a) if a.resent))
        .count();
    let refused = shared_answers
        .iter()
        .filter(|answer| {
            matches!(answer, Err(e) if e.status().map(|s| s.code()) == Some(Code::ResourceExhausted))
        })
        .count();
    assert_eq!(
        (created, resent, refused),
        (1, 2, 2),
        "one created, resends up to max_sends = 3, the rest refused: {shared_answers:?}"
    );
    let shared_id = shared_ids.into_iter().next().unwrap();
    server.wait_for_messages(&shared_id, 3).await;

    let keyed_ids: HashSet<String> = keyed_answers
        .iter()
        .map(|answer| {
            answer
                .as_ref()
                .expect("verify")
                .verification
                .clone()
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(keyed_ids.len(), 1, "one verification for one key");
    let replayed = keyed_answers
        .iter()
        .filter(|answer| answer.as_ref().unwrap().replayed)
        .count();
    assert_eq!(replayed, 3, "every retry but the first replays");
    let keyed_id = keyed_ids.into_iter().next().unwrap();
    assert_eq!(client.get(&keyed_id).await.unwrap().attempts.len(), 1);

    // Every new number's message goes out.
    for id in &ids {
        server.wait_for_messages(id, 1).await;
    }
}

async fn idempotency_key_replays(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client().await;
    let number = unique_mobile();
    let options = VerifyOptions {
        idempotency_key: Some("signup-42".into()),
        ..VerifyOptions::new(&number)
    };
    let first = client.verify(options.clone()).await.unwrap();
    let id = first.verification.unwrap().id;
    let second = client.verify(options).await.unwrap();
    assert!(second.replayed);
    assert!(!second.resent);
    assert_eq!(second.verification.unwrap().id, id);
    // Verify answers once its writes are committed: a replay that queued a message would show
    // it in the verification's attempts now.
    assert_eq!(
        client.get(&id).await.unwrap().attempts.len(),
        1,
        "a replay sends nothing"
    );
    server.wait_for_messages(&id, 1).await;

    // A new key on a resend is remembered too: its retry replays instead of sending again.
    let resend = VerifyOptions {
        idempotency_key: Some("signup-42-resend".into()),
        ..VerifyOptions::new(&number)
    };
    let first_resend = client.verify(resend.clone()).await.unwrap();
    assert!(first_resend.resent);
    let retried = client.verify(resend).await.unwrap();
    assert!(retried.replayed, "a retried resend must not send again");
    assert_eq!(retried.verification.unwrap().sends_left, 3);
    assert_eq!(client.get(&id).await.unwrap().attempts.len(), 2);
    server.wait_for_messages(&id, 2).await;

    let other = client
        .verify(VerifyOptions {
            idempotency_key: Some("signup-42".into()),
            ..VerifyOptions::new(unique_mobile())
        })
        .await
        .unwrap_err();
    let status = status_of(other);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().starts_with("idempotency_key:"),
        "{}",
        status.message()
    );
}

async fn check_outcomes_are_distinct(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client().await;

    // Too many attempts: the fifth wrong code uses the last check; then nothing approves.
    let id = verify(&client, &unique_mobile())
        .await
        .verification
        .unwrap()
        .id;
    let code = server.code_for(&id).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        let check = client.check_by_id(&id, wrong).await.unwrap();
        assert_eq!(check.result(), CheckResult::WrongCode);
        assert_eq!(check.checks_left, left);
    }
    let after = client.check_by_id(&id, &code).await.unwrap();
    assert_eq!(after.result(), CheckResult::TooManyAttempts);
    assert_eq!(
        after.verification.unwrap().status(),
        VerificationStatus::MaxAttemptsReached
    );

    // Canceled: the code no longer approves; canceling twice is fine; cancel after approval is not.
    let id = verify(&client, &unique_mobile())
        .await
        .verification
        .unwrap()
        .id;
    let code = server.code_for(&id).await;
    let canceled = client.cancel(&id).await.unwrap();
    assert_eq!(canceled.status(), VerificationStatus::Canceled);
    assert_eq!(
        client.cancel(&id).await.unwrap().status(),
        VerificationStatus::Canceled
    );
    let check = client.check_by_id(&id, &code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Canceled);

    let id = verify(&client, &unique_mobile())
        .await
        .verification
        .unwrap()
        .id;
    let code = server.code_for(&id).await;
    client.check_by_id(&id, &code).await.unwrap();
    let status = status_of(client.cancel(&id).await.unwrap_err());
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Not found, by id and by number.
    let status = status_of(
        client
            .check_by_id("vf_doesnotexist", "123456")
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().starts_with("verification_id:"),
        "{}",
        status.message()
    );
    let status = status_of(
        client
            .check_by_number("+447400999999", "123456")
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code(), Code::NotFound);
    let status = status_of(client.get("vf_doesnotexist").await.unwrap_err());
    assert_eq!(status.code(), Code::NotFound);
    let status = status_of(client.cancel("vf_doesnotexist").await.unwrap_err());
    assert_eq!(status.code(), Code::NotFound);
}

async fn expired_codes_are_refused_and_announced(backend: Backend) {
    let server = TestServer::start_with_config(backend, "[codes]\nttl_seconds = 1\n").await;
    let client = server.client().await;
    let number = unique_mobile();
    let id = verify(&client, &number).await.verification.unwrap().id;
    let code = server.code_for(&id).await;
    // The sweeper expires it and says so on the event stream.
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let expired = events_until(&mut events, EventType::VerificationExpired)
        .await
        .pop()
        .unwrap();
    assert_eq!(expired.verification_status(), VerificationStatus::Expired);
    let check = client.check_by_id(&id, &code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Expired);
    // The state answers before the code's length is judged.
    let check = client.check_by_id(&id, "12345").await.unwrap();
    assert_eq!(check.result(), CheckResult::Expired);
    // A new Verify for the number starts a new verification.
    let fresh = verify(&client, &number).await;
    assert!(!fresh.resent);
    assert_ne!(fresh.verification.unwrap().id, id);
}

async fn landlines_get_voice_or_a_clear_refusal(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client().await;
    let landline = "+44 20 7946 0123";
    let classification = client.classify(landline, None).await.unwrap();
    assert!(classification.valid);
    assert_eq!(classification.line_type(), v1::LineType::FixedLine);
    assert_eq!(classification.recommended_channel(), Channel::Voice);
    assert_eq!(classification.time_zones, ["Europe/London"]);

    let verification = verify(&client, landline).await.verification.unwrap();
    assert_eq!(verification.channel(), Channel::Voice);
    let lines = server.wait_for_messages(&verification.id, 1).await;
    assert_eq!(lines[0]["channel"], "voice");
    assert!(lines[0]["body"].as_str().unwrap().contains("Again"));

    let refused = client
        .verify(VerifyOptions {
            channel: Some(Channel::Sms),
            ..VerifyOptions::new("+44 20 7946 0999")
        })
        .await
        .unwrap_err();
    let status = status_of(refused);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("mobile number"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("voice"), "{}", status.message());

    // National input with a region hint.
    let india = client.classify("098123 45678", Some("IN")).await.unwrap();
    assert_eq!(india.e164, "+919812345678");
    assert_eq!(india.region_code, "IN");
}

async fn bad_input_names_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client().await;
    let mut raw = client.raw();
    let request = |to: &str| v1::VerifyRequest {
        to: to.to_string(),
        ..Default::default()
    };
    let cases: Vec<(v1::VerifyRequest, &str)> = vec![
        (request(""), "to"),
        (request("call me maybe"), "to"),
        (request(&"1".repeat(40)), "to"),
        (request(&format!("+{}", "4".repeat(40))), "to"),
        (request(&"9".repeat(300)), "to"),
        (
            v1::VerifyRequest {
                channel: 7,
                ..request(&unique_mobile())
            },
            "channel",
        ),
        (
            v1::VerifyRequest {
                code_length: 3,
                ..request(&unique_mobile())
            },
            "code_length",
        ),
        (
            v1::VerifyRequest {
                code_length: 11,
                ..request(&unique_mobile())
            },
            "code_length",
        ),
        (
            v1::VerifyRequest {
                locale: "en US; drop".into(),
                ..request(&unique_mobile())
            },
            "locale",
        ),
        (
            v1::VerifyRequest {
                region_hint: "Atlantis".into(),
                ..request("098123 45678")
            },
            "region_hint",
        ),
        (
            v1::VerifyRequest {
                idempotency_key: "k".repeat(256),
                ..request(&unique_mobile())
            },
            "idempotency_key",
        ),
    ];
    for (request, field) in cases {
        let shown = format!("{:?}", request.to.get(..20).unwrap_or(&request.to));
        let status = raw.verify(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{shown}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{shown}: expected the field {field} named, got {:?}",
            status.message()
        );
    }

    let id = verify(&client, &unique_mobile())
        .await
        .verification
        .unwrap()
        .id;
    for (code, reason) in [
        ("123", "4 to 10 digits"),
        ("12345", "has 6 digits, got 5"),
        ("12a456", "digits only"),
        ("", "must not be empty"),
    ] {
        let status = status_of(client.check_by_id(&id, code).await.unwrap_err());
        assert_eq!(status.code(), Code::InvalidArgument, "{code:?}");
        assert!(
            status.message().starts_with("code: "),
            "{}",
            status.message()
        );
        assert!(status.message().contains(reason), "{}", status.message());
    }
    // None of that used a check.
    assert_eq!(client.get(&id).await.unwrap().checks_left, 5);

    let status = raw
        .check(v1::CheckRequest {
            target: None,
            code: "123456".into(),
            service_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("verification_id: "));
    let status = status_of(client.get("").await.unwrap_err());
    assert_eq!(status.code(), Code::InvalidArgument);

    // Garbage never kills the server and Classify answers invalid input with a reason.
    for junk in [
        "",
        "+",
        "++44",
        "💥💥💥",
        "+44 (0) 20 ----",
        "tel:+1-800-FLOWERS",
        &"٣".repeat(12),
    ] {
        let classification = client.classify(junk, None).await.unwrap();
        if !classification.valid {
            assert_ne!(
                classification.invalid_reason(),
                v1::InvalidReason::Unspecified,
                "{junk}"
            );
            assert!(!classification.detail.is_empty(), "{junk}");
        }
    }
    assert!(client.classify("+14155550123", None).await.unwrap().valid);
}

async fn events_stream_live_and_resume_after_cursor(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client().await;
    // A live watcher of everything, opened before anything happens.
    let mut live = client.watch(None, 0).await.unwrap();
    let id = verify(&client, &unique_mobile())
        .await
        .verification
        .unwrap()
        .id;
    let code = server.code_for(&id).await;

    let expected = [
        EventType::VerificationCreated,
        EventType::MessageQueued,
        EventType::MessageSubmitted,
        EventType::MessageDelivered,
        EventType::VerificationApproved,
    ];
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("live event within 10 s")
            .expect("stream open")
            .expect("event");
        // The code is typed once the SMS arrived, as a person would: the carrier hands the
        // code over before the dispatcher records the submission, so checking at once could
        // be recorded first.
        let delivered = event.r#type() == EventType::MessageDelivered;
        seen.push(event);
        if delivered {
            client.check_by_id(&id, &code).await.unwrap();
        }
    }
    let types: Vec<_> = seen.iter().map(|e| e.r#type()).collect();
    assert_eq!(types, expected);
    assert!(seen.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert!(seen.iter().all(|e| e.verification_id == id));
    let delivered = &seen[3];
    assert_eq!(delivered.delivery_status(), DeliveryStatus::Delivered);
    assert_eq!(delivered.carrier, "sim");
    assert_eq!(delivered.channel(), Channel::Sms);
    assert!(!delivered.message_id.is_empty());

    // Resuming after the second event yields exactly the rest.
    let mut resumed = client.watch(Some(&id), seen[1].cursor).await.unwrap();
    let mut rest = Vec::new();
    while rest.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), resumed.next())
            .await
            .expect("event within 10 s")
            .unwrap()
            .unwrap();
        rest.push(event.cursor);
    }
    assert_eq!(rest, seen[2..].iter().map(|e| e.cursor).collect::<Vec<_>>());

    // A filter shows only that verification.
    let other = verify(&client, &unique_mobile())
        .await
        .verification
        .unwrap()
        .id;
    server.code_for(&other).await;
    let mut filtered = client.watch(Some(&other), 0).await.unwrap();
    let first = filtered.next().await.unwrap().unwrap();
    assert_eq!(first.verification_id, other);
}

async fn shutdown_is_graceful_and_restart_keeps_everything(backend: Backend) {
    let mut server = TestServer::start_with(
        backend,
        ServerOptions {
            // Slow receipts: some messages are in flight when the signal arrives.
            extra_config: "[[carriers]]\nname = \"sim\"\nkind = \"sim\"\nlatency_ms = 400\n".into(),
            ..Default::default()
        },
    )
    .await;
    let client = server.client().await;
    let mut watcher = client.watch(None, 0).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(
            verify(&client, &unique_mobile())
                .await
                .verification
                .unwrap()
                .id,
        );
    }
    let first_code = server.code_for(&ids[0]).await;
    let status = server.stop();
    assert!(status.success(), "verifyd exited with {status}");
    // The open event stream ended instead of holding the server up.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(item) = watcher.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the event stream did not end at shutdown");

    server.restart();
    let client = server.client().await;
    // Every verification survived; every message reached a final state exactly once.
    for id in &ids {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let verification = client.get(id).await.unwrap();
            assert_eq!(verification.attempts.len(), 1);
            let status = verification.attempts[0].delivery_status();
            if status == DeliveryStatus::Delivered {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} stuck at {status:?}: {}",
                verification.attempts[0].detail
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let lines = server.outbox_lines();
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        *per_message
            .entry(line["message_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_message.len(), ids.len());
    assert!(
        per_message.values().all(|&n| n == 1),
        "a message was sent twice"
    );
    // The secret persisted: a code issued before the restart still approves.
    let check = client.check_by_id(&ids[0], &first_code).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);
    assert!(server.log().contains("dispatcher stopped"));
}

async fn failed_delivery_is_an_event(backend: Backend) {
    let server = TestServer::start_with_config(backend, "[[carriers]]\nname = \"flaky\"\nkind = \"sim\"\n[carriers.countries.HN]\ndelivery_probability = 0.0\n")
    .await;
    let client = server.client().await;
    let honduras = "+504 9123 4567";
    let classification = client.classify(honduras, None).await.unwrap();
    assert!(classification.valid, "{classification:?}");
    let id = verify(&client, honduras).await.verification.unwrap().id;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let failed = events_until(&mut events, EventType::MessageFailed)
        .await
        .pop()
        .unwrap();
    assert_eq!(failed.delivery_status(), DeliveryStatus::Failed);
    assert_eq!(failed.carrier, "flaky");
    assert!(failed.detail.contains("UNDELIV"), "{}", failed.detail);
    let stored = client.get(&id).await.unwrap();
    assert_eq!(stored.attempts[0].delivery_status(), DeliveryStatus::Failed);
    assert_eq!(stored.status(), VerificationStatus::Pending);
}

async fn api_keys_guard_the_service_but_not_health(backend: Backend) {
    let key = "k3y-for-backend-7f9";
    let hash = verify_e2e::api_key_hash(key);
    let server = TestServer::start_with_config(
        backend,
        format!("[[api_keys]]\nname = \"backend\"\nsha256 = \"{hash}\"\n"),
    )
    .await;
    let anonymous = server.client().await;
    let status = status_of(anonymous.classify("+14155550123", None).await.unwrap_err());
    assert_eq!(status.code(), Code::Unauthenticated);
    let wrong = server.client().await.with_api_key("nope").unwrap();
    let status = status_of(wrong.classify("+14155550123", None).await.unwrap_err());
    assert_eq!(status.code(), Code::Unauthenticated);
    let right = server.client().await.with_api_key(key).unwrap();
    assert!(right.classify("+14155550123", None).await.unwrap().valid);
    assert!(!server.log().contains(key), "the API key reached the log");

    // Health answers without a key.
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "verify.v1.VerifyService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

/// Two verifyd processes on one PostgreSQL database never send one message twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_never_send_twice() {
    let database = verify_e2e::PostgresDatabase::create().await;
    let directory = tempfile::tempdir().unwrap();
    let options = |outbox: &str| ServerOptions {
        database_url: Some(database.url().to_string()),
        directory: Some(directory.path().to_path_buf()),
        outbox_name: Some(outbox.to_string()),
        extra_config: format!(
            "[dispatcher]\nbatch_size = 4\npoll_interval_ms = 5\nmax_in_flight = 8\nsubmit_timeout_ms = 30000\nlease_seconds = 5\n[[carriers]]\nname = \"sim\"\nkind = \"sim\"\nsubmit_latency_ms = 5\nlatency_ms = 1\n{MANY_NUMBERS}"
        ),
        ..ServerOptions::default()
    };
    let a = TestServer::start_with(Backend::Postgres, options("outbox-a.jsonl")).await;
    let b = TestServer::start_with(Backend::Postgres, options("outbox-b.jsonl")).await;
    let clients = [a.client().await, b.client().await];
    let mut ids = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = clients[i % 2].clone();
        tasks.spawn(async move {
            verify(&client, &unique_mobile())
                .await
                .verification
                .unwrap()
                .id
        });
    }
    while let Some(id) = tasks.join_next().await {
        ids.insert(id.unwrap());
    }
    // Once every message is delivered (its receipt came after the simulator wrote it), a
    // duplicate would have had to be claimed again, which a handed-over message never is: the
    // outboxes then show each message exactly once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let stored = clients[0].get(id).await.unwrap();
            if stored.attempts[0].delivery_status() == DeliveryStatus::Delivered {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} not delivered: {stored:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut lines = a.outbox_lines();
    let from_a = lines.len();
    lines.extend(b.outbox_lines());
    assert!(
        lines.len() >= ids.len(),
        "only {} of {} delivered",
        lines.len(),
        ids.len()
    );
    let mut seen = HashSet::new();
    for line in &lines {
        let message = line["message_id"].as_str().unwrap().to_string();
        assert!(
            seen.insert(message.clone()),
            "message {message} was sent twice"
        );
        assert!(ids.contains(line["verification_id"].as_str().unwrap()));
    }
    assert_eq!(seen.len(), ids.len());
    assert!(
        from_a > 0 && from_a < lines.len(),
        "both dispatchers should have sent some ({from_a} of {} by A)",
        lines.len()
    );
}

/// A watcher connected to one replica sees, as they happen, the events another replica records
/// (PostgreSQL LISTEN/NOTIFY wakes it); a watch on an id that names nothing is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_sees_what_another_records() {
    let database = verify_e2e::PostgresDatabase::create().await;
    let directory = tempfile::tempdir().unwrap();
    let options = |outbox: &str| ServerOptions {
        database_url: Some(database.url().to_string()),
        directory: Some(directory.path().to_path_buf()),
        outbox_name: Some(outbox.to_string()),
        ..ServerOptions::default()
    };
    let a = TestServer::start_with(Backend::Postgres, options("outbox-a.jsonl")).await;
    let b = TestServer::start_with(Backend::Postgres, options("outbox-b.jsonl")).await;
    let (on_a, on_b) = (a.client().await, b.client().await);
    let id = verify(&on_a, &unique_mobile())
        .await
        .verification
        .unwrap()
        .id;
    let mut events = on_b.watch(Some(&id), 0).await.unwrap();
    let seen = events_until(&mut events, EventType::MessageDelivered).await;
    assert_eq!(seen[0].r#type(), EventType::VerificationCreated);
    // Live: a check on A reaches the open stream on B.
    let code = if a
        .outbox_lines()
        .iter()
        .any(|l| l["verification_id"] == id.as_str())
    {
        a.code_for(&id).await
    } else {
        b.code_for(&id).await
    };
    on_a.check_by_id(&id, &code).await.unwrap();
    events_until(&mut events, EventType::VerificationApproved).await;

    let status = status_of(on_b.watch(Some("vf_nothing"), 0).await.err().unwrap());
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "verification_id: no verification vf_nothing"
    );
    let status = on_b
        .raw()
        .watch_events(v1::WatchEventsRequest {
            notification_id: "nt_nothing".into(),
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "notification_id: no notification nt_nothing"
    );
}

/// A replica configured with another code secret refuses a database already in use, since the
/// codes it would check were made under the first secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_secret_refuses_to_start() {
    let first = TestServer::start(Backend::Postgres).await;
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("verifyd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\ndata_dir = \"{}\"\n",
            first.database_url,
            directory.path().display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(verify_e2e::binary("verifyd"))
        .arg("--config")
        .arg(&config)
        .current_dir(directory.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("another code secret"), "{text}");
}

/// A watcher that stops reading does not keep the server from shutting down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_does_not_block_shutdown() {
    let mut server = TestServer::start_with_config(Backend::Sqlite, MANY_NUMBERS).await;
    let client = server.client().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..600 {
        let client = client.clone();
        tasks.spawn(async move { verify(&client, &unique_mobile()).await });
    }
    while tasks.join_next().await.is_some() {}
    // Open a stream over thousands of events and never read it.
    let stalled = client.watch(None, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = server.stop();
    assert!(status.success(), "verifyd exited with {status}");
    drop(stalled);
}

/// ClassifyBatch answers chunk by chunk, in order, one classification per number, and refuses
/// oversized chunks and unknown region hints by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_batch_streams_chunks_in_order() {
    let server = TestServer::start(Backend::Sqlite).await;
    let client = server.client().await;
    let chunks = vec![
        v1::ClassifyBatchRequest {
            numbers: vec![
                "+447400123456".into(),
                "+44 20 7946 0123".into(),
                "junk".into(),
            ],
            region_hint: String::new(),
        },
        v1::ClassifyBatchRequest {
            numbers: vec!["098123 45678".into()],
            region_hint: "IN".into(),
        },
        v1::ClassifyBatchRequest {
            numbers: (0..5000)
                .map(|i| format!("+1212555{:04}", i % 10_000))
                .collect(),
            region_hint: String::new(),
        },
    ];
    let mut answers = client
        .raw()
        .classify_batch(tokio_stream::iter(chunks))
        .await
        .expect("stream opens")
        .into_inner();
    let first = answers.next().await.unwrap().unwrap();
    assert_eq!(first.chunk_index, 0);
    let kinds: Vec<_> = first
        .classifications
        .iter()
        .map(|c| (c.valid, c.line_type()))
        .collect();
    assert_eq!(
        kinds,
        [
            (true, v1::LineType::Mobile),
            (true, v1::LineType::FixedLine),
            (false, v1::LineType::Unspecified)
        ]
    );
    assert_eq!(
        first.classifications[2].invalid_reason(),
        v1::InvalidReason::NotANumber
    );
    let second = answers.next().await.unwrap().unwrap();
    assert_eq!(second.chunk_index, 1);
    assert_eq!(second.classifications[0].e164, "+919812345678");
    let third = answers.next().await.unwrap().unwrap();
    assert_eq!(third.classifications.len(), 5000);
    assert_eq!(third.classifications[42].input, "+12125550042");
    assert!(
        answers.next().await.is_none(),
        "the stream ends after the last chunk"
    );

    for (chunk, field) in [
        (
            v1::ClassifyBatchRequest {
                numbers: vec!["+14155550123".into(); 10_001],
                region_hint: String::new(),
            },
            "numbers",
        ),
        (
            v1::ClassifyBatchRequest {
                numbers: vec!["0301234567".into()],
                region_hint: "Neverland".into(),
            },
            "region_hint",
        ),
    ] {
        let mut answers = client
            .raw()
            .classify_batch(tokio_stream::iter(vec![chunk]))
            .await
            .unwrap()
            .into_inner();
        let status = answers.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{}",
            status.message()
        );
    }
}

async fn temporary_refusals_fail_over_and_permanent_ones_fail(backend: Backend) {
    let down = "+447400100200";
    let refused = "+447400100300";
    let server = TestServer::start_with_config(backend, format!(
                "[[carriers]]\nname = \"flaky\"\nkind = \"sim\"\n[carriers.destinations]\n\"{down}\" = \"down\"\n\"{refused}\" = \"reject\"\n\n\
                 [[carriers]]\nname = \"backup\"\nkind = \"sim\"\n\n[routes]\ndefault = [\"flaky\", \"backup\"]\n"
            ))
    .await;
    let client = server.client().await;

    // The first route is down: the message moves to the next one and is delivered there.
    let id = verify(&client, down).await.verification.unwrap().id;
    let code = server.code_for(&id).await;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let seen = events_until(&mut events, EventType::MessageDelivered).await;
    let verification = client.get(&id).await.unwrap();
    assert_eq!(verification.attempts.len(), 1);
    let attempt = &verification.attempts[0];
    assert_eq!(attempt.carrier, "backup");
    assert_eq!(attempt.delivery_status(), DeliveryStatus::Delivered);
    let rerouted = seen
        .iter()
        .find(|e| e.r#type() == EventType::MessageRerouted)
        .expect("a rerouted event before delivery");
    assert_eq!(rerouted.carrier, "backup");
    assert!(
        rerouted.detail.contains("flaky: unavailable (temporary)"),
        "{}",
        rerouted.detail
    );
    assert_eq!(
        client.check_by_id(&id, &code).await.unwrap().result(),
        CheckResult::Approved
    );

    // A permanent refusal is not retried elsewhere: the message fails with the carrier's reason.
    let id = verify(&client, refused).await.verification.unwrap().id;
    let mut events = client.watch(Some(&id), 0).await.unwrap();
    let mut seen = events_until(&mut events, EventType::MessageFailed).await;
    assert!(
        seen.iter()
            .all(|e| e.r#type() != EventType::MessageRerouted),
        "a permanent error moved on: {seen:?}"
    );
    let failed = seen.pop().unwrap();
    assert_eq!(failed.carrier, "flaky");
    assert!(
        failed.detail.contains("simulated refusal"),
        "{}",
        failed.detail
    );
    assert!(failed.detail.contains("permanent"), "{}", failed.detail);
}
