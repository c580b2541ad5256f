//! Status webhooks through the real binary, to an HTTPS receiver in Python that verifies every
//! request with the `standardwebhooks` package: the receiver is down (connections refused),
//! then answers 500, then too slowly, then recovers; it still gets every event of its service,
//! signed, each verification's in order, and no other service's. Failures show in
//! ListWebhookDeliveries while they last.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair};
use tokio_stream::StreamExt;
use verify_client::proto::v1::{self, WebhookDeliveryStatus};
use verify_client::{VerifyClient, VerifyOptions};
use verify_e2e::{
    Backend, ServerOptions, TestServer, on_both_backends, tool, unique_mobile, workspace_root,
};

on_both_backends!(a_receiver_down_for_a_while_gets_every_event_signed_and_in_order);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A port nobody listens on now (the receiver takes it later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Receiver {
    child: Child,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_receiver(dir: &Path, port: u16) -> Receiver {
    let mut child = Command::new(tool("python", ".tools/venv/bin/python"))
        .arg(workspace_root().join("tests/python/webhook_receiver.py"))
        .args(["--port", &port.to_string(), "--secret", SECRET])
        .arg("--cert")
        .arg(dir.join("receiver.pem"))
        .arg("--key")
        .arg(dir.join("receiver.key"))
        .arg("--mode")
        .arg(dir.join("mode"))
        .arg("--out")
        .arg(dir.join("received.jsonl"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the receiver");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    Receiver { child }
}

fn received(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("received.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn deliveries(client: &VerifyClient) -> v1::ListWebhookDeliveriesResponse {
    client
        .raw()
        .list_webhook_deliveries(v1::ListWebhookDeliveriesRequest {
            service_id: "acme".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the deliveries that failed show `wanted` in their last error.
async fn failing_with(client: &VerifyClient, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = deliveries(client).await;
        let retrying: Vec<_> = state
            .deliveries
            .iter()
            .filter(|d| d.status() == WebhookDeliveryStatus::Retrying)
            .collect();
        if retrying.iter().any(|d| d.last_error.contains(wanted)) {
            assert!(
                retrying
                    .iter()
                    .all(|d| d.attempts >= 1 && d.next_attempt_at.is_some())
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery failed with `{wanted}`: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_receiver_down_for_a_while_gets_every_event_signed_and_in_order(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("receiver.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("receiver.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("mode"), "fail").unwrap();
    let port = free_port();
    // Retries every few hundred milliseconds here, so the outage of a few seconds fits.
    let config = format!(
        r#"
[[services]]
id = "acme"
friendly_name = "Acme"
webhook_url = "https://localhost:{port}/hooks/verifyd"
webhook_secret_env = "ACME_WEBHOOK_SECRET"

[webhooks]
timeout_ms = 1000
retry_delays_ms = [200, 300, 400, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500]
ca = "{}"
"#,
        dir.path().join("receiver.pem").display()
    );
    let server = TestServer::start_with(
        backend,
        ServerOptions {
            extra_config: config,
            env: vec![("ACME_WEBHOOK_SECRET".into(), SECRET.into())],
            ..ServerOptions::default()
        },
    )
    .await;
    let client = server.client().await;

    // The receiver is down: connections are refused.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v = client
            .verify(VerifyOptions {
                service_id: Some("acme".into()),
                ..VerifyOptions::new(unique_mobile())
            })
            .await
            .unwrap()
            .verification
            .unwrap();
        ids.push(v.id);
    }
    let code = server.code_for(&ids[0]).await;
    client.check_by_id(&ids[0], &code).await.unwrap();
    // Another service's events never go to acme's webhook.
    client
        .verify(VerifyOptions::new(unique_mobile()))
        .await
        .unwrap();
    failing_with(&client, "could not connect").await;
    let state = deliveries(&client).await;
    assert!(
        state
            .deliveries
            .iter()
            .any(|d| d.status() == WebhookDeliveryStatus::Waiting),
        "later events wait behind the first of their verification: {state:?}"
    );

    // Up, but failing; then answering too slowly; then well.
    let _receiver = start_receiver(dir.path(), port);
    failing_with(&client, "HTTP 500").await;
    std::fs::write(dir.path().join("mode"), "slow").unwrap();
    failing_with(&client, "no answer in time").await;
    // More events while it is down.
    let late = client
        .verify(VerifyOptions {
            service_id: Some("acme".into()),
            ..VerifyOptions::new(unique_mobile())
        })
        .await
        .unwrap()
        .verification
        .unwrap();
    ids.push(late.id);
    std::fs::write(dir.path().join("mode"), "ok").unwrap();

    // Every event of acme, as the event log has it.
    let mut expected = BTreeMap::new();
    let mut stream = client
        .raw()
        .watch_events(v1::WatchEventsRequest {
            service_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(800), stream.next()).await
    {
        let event = item.unwrap().event.unwrap();
        expected.insert(format!("evt_{}", event.cursor), event);
    }
    assert!(expected.len() >= 4 * 4, "{} events", expected.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    let arrived = loop {
        let arrived = received(dir.path());
        let ids_seen: BTreeSet<String> = arrived
            .iter()
            .filter_map(|line| line["id"].as_str().map(str::to_string))
            .collect();
        if expected.keys().all(|id| ids_seen.contains(id)) {
            break arrived;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events arrived; deliveries: {:?}",
            ids_seen.len(),
            expected.len(),
            deliveries(&client).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Every one verified by standardwebhooks, of acme, as recorded, in order per subject.
    assert!(
        arrived.iter().all(|line| line.get("bad").is_none()),
        "a signature did not verify: {arrived:?}"
    );
    let mut last_of_subject: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_seen = BTreeSet::new();
    for line in &arrived {
        let id = line["id"].as_str().unwrap().to_string();
        if !first_seen.insert(id.clone()) {
            continue; // At least once: a repeat carries the same id.
        }
        let data = &line["data"];
        assert_eq!(data["service_id"], "acme", "{line}");
        let event = &expected[&id];
        assert_eq!(data["cursor"], event.cursor.to_string(), "{line}");
        let subject = format!(
            "{}{}",
            data["verification_id"].as_str().unwrap(),
            data["notification_id"].as_str().unwrap()
        );
        let cursor = event.cursor;
        if let Some(previous) = last_of_subject.insert(subject.clone(), cursor) {
            assert!(
                previous < cursor,
                "{subject}: evt_{cursor} came after evt_{previous}"
            );
        }
        assert!(line["type"].as_str().unwrap().contains('.'), "{line}");
    }
    assert!(
        arrived
            .iter()
            .any(|line| line["type"] == "verification.approved"),
        "{arrived:?}"
    );
    // Nothing left to retry, and the cursor is past the last event.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = deliveries(&client).await;
        if state.deliveries.is_empty() {
            let last = expected.values().map(|e| e.cursor).max().unwrap();
            assert!(state.delivered_through_cursor >= last, "{state:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !server.log().contains(SECRET),
        "the webhook secret reached the log"
    );
}
