//! Abuse defense end to end: rate limits refuse what is over them with RESOURCE_EXHAUSTED, a
//! `RetryInfo` saying when to retry and a `QuotaFailure` naming the limit and what it counts,
//! through the real server on both databases.

use std::time::Duration;

use tonic::Code;
use verify_client::proto::v1::RequestContext;
use verify_client::{VerifyClient, VerifyOptions};
use verify_e2e::{Backend, TestServer, on_both_backends, refusal, unique_mobile};

on_both_backends!(
    a_number_gets_five_codes_in_ten_minutes_then_a_refusal_that_says_when,
    an_address_is_limited_across_numbers_and_its_network_too,
    configured_limits_replace_the_defaults,
    a_bad_context_names_its_field,
);

async fn connect(server: &TestServer) -> VerifyClient {
    VerifyClient::connect(server.url()).await.expect("connect")
}

fn from_ip(to: &str, ip: &str) -> VerifyOptions {
    VerifyOptions {
        context: Some(RequestContext {
            client_ip: ip.into(),
            ..RequestContext::default()
        }),
        ..VerifyOptions::new(to)
    }
}

async fn a_number_gets_five_codes_in_ten_minutes_then_a_refusal_that_says_when(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = connect(&server).await;
    let number = unique_mobile();
    // A new verification and four resends of its code.
    let mut id = String::new();
    for _ in 0..5 {
        let response = client.verify(VerifyOptions::new(&number)).await.unwrap();
        id = response.verification.unwrap().id;
    }
    let error = client
        .verify(VerifyOptions::new(&number))
        .await
        .unwrap_err();
    let (code, message, retry, subject) = refusal(&error);
    assert_eq!(code, Code::ResourceExhausted);
    let masked = format!("{}*******{}", &number[..4], &number[11..]);
    assert_eq!(subject, format!("per-number: number {masked}"));
    assert!(
        message.starts_with(&format!(
            "rate limit `per-number`: 5 requests for number {masked} in the last 10m (at most 5); retry in "
        )),
        "{message}"
    );
    // Full until the slot (10 s) of the first request leaves the window.
    assert!(
        retry > Duration::from_secs(9 * 60) && retry <= Duration::from_secs(10 * 60 + 10),
        "{retry:?}"
    );
    // Other numbers are not affected, and nothing was sent for the refused call.
    client
        .verify(VerifyOptions::new(unique_mobile()))
        .await
        .unwrap();
    server.wait_for_messages(&id, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server
            .outbox_lines()
            .iter()
            .filter(|line| line["to"] == number.as_str())
            .count(),
        5
    );
    assert!(server.log().contains("request refused by a rate limit"));
    assert!(
        !server.log().contains(&number),
        "numbers are masked in logs"
    );
}

async fn an_address_is_limited_across_numbers_and_its_network_too(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = connect(&server).await;
    for _ in 0..10 {
        client
            .verify(from_ip(&unique_mobile(), "203.0.113.7"))
            .await
            .unwrap();
    }
    let error = client
        .verify(from_ip(&unique_mobile(), "203.0.113.7"))
        .await
        .unwrap_err();
    let (code, message, retry, subject) = refusal(&error);
    assert_eq!(code, Code::ResourceExhausted);
    assert_eq!(subject, "per-client-ip: client_ip 203.0.113.7");
    assert!(message.contains("10 requests"), "{message}");
    assert!(retry > Duration::from_secs(50 * 60), "{retry:?}");
    // Another address of the same /24 passes (the network allows 50 an hour), and an IPv4
    // address written as IPv4-mapped IPv6 is the same address.
    client
        .verify(from_ip(&unique_mobile(), "203.0.113.8"))
        .await
        .unwrap();
    let mapped = client
        .verify(from_ip(&unique_mobile(), "::ffff:203.0.113.7"))
        .await
        .unwrap_err();
    assert_eq!(refusal(&mapped).3, "per-client-ip: client_ip 203.0.113.7");
}

async fn configured_limits_replace_the_defaults(backend: Backend) {
    let config = r#"
[[abuse.rate_limits.limits]]
name = "per-number"
key = "number"
max = 2
per = "1m"

[[abuse.rate_limits.limits]]
name = "per-device"
key = "device"
max = 1
per = "1h"
enabled = false

[[abuse.rate_limits.limits]]
name = "per-user-burst"
key = "user"
max = 1
per = "30s"
"#;
    let server = TestServer::start_with_config(backend, config).await;
    let client = connect(&server).await;
    let number = unique_mobile();
    client.verify(VerifyOptions::new(&number)).await.unwrap();
    client.verify(VerifyOptions::new(&number)).await.unwrap();
    let error = client
        .verify(VerifyOptions::new(&number))
        .await
        .unwrap_err();
    let (_, message, retry, _) = refusal(&error);
    assert!(message.contains("in the last 1m (at most 2)"), "{message}");
    // Counted in slots of a second: up to one slot more than the window.
    assert!(retry <= Duration::from_secs(61), "{retry:?}");
    // An added limit keyed on the user; the device limit is off.
    let as_user = |to: String| VerifyOptions {
        context: Some(RequestContext {
            user_id: "account-42".into(),
            device_id: "same-device".into(),
            ..RequestContext::default()
        }),
        ..VerifyOptions::new(to)
    };
    client.verify(as_user(unique_mobile())).await.unwrap();
    let error = client.verify(as_user(unique_mobile())).await.unwrap_err();
    assert_eq!(refusal(&error).3, "per-user-burst: user account-42");
}

async fn a_bad_context_names_its_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = connect(&server).await;
    let error = client
        .verify(from_ip(&unique_mobile(), "203.0.113.300"))
        .await
        .unwrap_err();
    let status = error.status().expect("a gRPC status");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "context.client_ip: `203.0.113.300` is not an IPv4 or IPv6 address"
    );
}
