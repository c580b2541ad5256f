//! What an operator sees of a running verifyd, through the real binary: Prometheus metrics on
//! the HTTP listener, parsed by the official Python client's OpenMetrics parser; one access-log
//! line per RPC (refusals with their reason, numbers masked); receipts in the log; JSON logs.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use verify_client::proto::v1::CheckResult;
use verify_client::{VerifyClient, VerifyOptions};
use verify_e2e::{
    Backend, ServerOptions, TestServer, on_both_backends, operator_config, tool, unique_mobile,
    workspace_root,
};

on_both_backends!(
    metrics_count_calls_messages_and_state,
    logs_say_each_call_once_and_hide_numbers,
);

const ADMIN_KEY: &str = "ops-key-5e6f7a";
const SHOP_KEY: &str = "shop-key-8b9c0d";

fn config() -> String {
    operator_config(ADMIN_KEY, SHOP_KEY)
}

/// One sample of a scrape.
#[derive(Debug, Clone, serde::Deserialize)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Scrapes `/metrics` with the Python parser; `Err` with its output when it refuses.
fn scrape(server: &TestServer, key: Option<&str>) -> Result<Vec<Sample>, String> {
    let address = server.callbacks_address.expect("the HTTP listener");
    let mut command = Command::new(tool("python", ".tools/venv/bin/python"));
    command
        .arg(workspace_root().join("tests/python/scrape_metrics.py"))
        .arg(format!("http://{address}/metrics"));
    if let Some(key) = key {
        command.arg(key);
    }
    let output = command.output().expect("run the scraper");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a sample"))
        .collect())
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Two codes sent, one approved after a wrong try, a bad number and an unauthenticated call.
async fn traffic(server: &TestServer) -> (VerifyClient, String) {
    let admin = server.client().await.with_api_key(ADMIN_KEY).unwrap();
    let number = unique_mobile();
    let first = admin
        .verify(VerifyOptions::new(&number))
        .await
        .unwrap()
        .verification
        .unwrap();
    admin
        .verify(VerifyOptions::new(unique_mobile()))
        .await
        .unwrap();
    let code = server.code_for(&first.id).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let checked = admin.check_by_id(&first.id, wrong).await.unwrap();
    assert_eq!(checked.result(), CheckResult::WrongCode);
    let checked = admin.check_by_id(&first.id, &code).await.unwrap();
    assert_eq!(checked.result(), CheckResult::Approved);
    admin
        .verify(VerifyOptions::new("+4474001234567890"))
        .await
        .unwrap_err();
    server
        .client()
        .await
        .verify(VerifyOptions::new(unique_mobile()))
        .await
        .unwrap_err();
    (admin, number)
}

async fn metrics_count_calls_messages_and_state(backend: Backend) {
    let server = TestServer::start_with_config(backend, config()).await;
    traffic(&server).await;

    // The approval reaches the statistics in the background; so do the receipts.
    let started = Instant::now();
    let samples = loop {
        let samples = scrape(&server, Some(ADMIN_KEY)).unwrap();
        let converted = value(&samples, "verifyd_verifications_24h", &[("country", "GB")]);
        let delivered = value(
            &samples,
            "verifyd_messages_total",
            &[("outcome", "delivered")],
        );
        if converted == 1.0 && delivered == 2.0 {
            break samples;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "metrics did not settle: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let calls = |method, code| {
        value(
            &samples,
            "verifyd_rpc_requests_total",
            &[("method", method), ("code", code)],
        )
    };
    assert_eq!(calls("Verify", "OK"), 2.0);
    assert_eq!(calls("Verify", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(calls("Verify", "UNAUTHENTICATED"), 1.0);
    assert_eq!(calls("Check", "OK"), 2.0);
    assert_eq!(
        value(
            &samples,
            "verifyd_rpc_duration_seconds_count",
            &[("method", "Verify"), ("code", "OK")]
        ),
        2.0
    );
    let sms = [("carrier", "sim"), ("channel", "sms")];
    let messages = |outcome| {
        let mut labels = sms.to_vec();
        labels.push(("outcome", outcome));
        value(&samples, "verifyd_messages_total", &labels)
    };
    assert_eq!((messages("queued"), messages("submitted")), (2.0, 2.0));
    assert_eq!(messages("delivered"), 2.0);
    assert_eq!(
        value(
            &samples,
            "verifyd_events_total",
            &[("event", "verification_approved")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "verifyd_carrier_submit_duration_seconds_count",
            &[("carrier", "sim"), ("outcome", "accepted")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "verifyd_receipt_lag_seconds_count",
            &[("carrier", "sim")]
        ),
        2.0
    );
    assert_eq!(
        value(&samples, "verifyd_outbox_messages", &[("status", "queued")]),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "verifyd_breaker_state",
            &[("carrier", "sim"), ("region", "GB"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "verifyd_conversion_24h", &[("country", "GB")]),
        1.0
    );
    assert!(
        samples
            .iter()
            .any(|s| s.name == "verifyd_stats_rollup_lag_events")
    );

    // Only an admin key reads them.
    let refused = scrape(&server, None).unwrap_err();
    assert!(
        refused.starts_with("HTTP 401: missing API key"),
        "{refused}"
    );
    let refused = scrape(&server, Some(SHOP_KEY)).unwrap_err();
    assert!(
        refused.starts_with("HTTP 403: API key `shop-backend` belongs to a service"),
        "{refused}"
    );
}

async fn logs_say_each_call_once_and_hide_numbers(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        ServerOptions {
            extra_config: config(),
            env: vec![("VERIFYD_LOG_FORMAT".into(), "json".into())],
            ..ServerOptions::default()
        },
    )
    .await;
    let (_, number) = traffic(&server).await;
    // The receipts are logged once they come.
    let started = Instant::now();
    let lines: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = server
            .log()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
            })
            .collect();
        let receipts = lines
            .iter()
            .filter(|l| l["fields"]["message"] == "receipt")
            .count();
        if receipts >= 2 {
            break lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no receipts logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "verifyd::access")
        .collect();
    let calls = |method: &str, code: &str| {
        access
            .iter()
            .filter(|l| l["fields"]["method"] == method && l["fields"]["code"] == code)
            .count()
    };
    assert_eq!(calls("Verify", "OK"), 2, "{access:?}");
    assert_eq!(calls("Check", "OK"), 2);
    let ok = access
        .iter()
        .find(|l| l["fields"]["method"] == "Verify" && l["fields"]["code"] == "OK")
        .unwrap();
    assert_eq!(ok["fields"]["key"], "ops");
    assert_eq!(ok["fields"]["service"], "*");
    assert!(ok["fields"]["duration_ms"].as_f64().unwrap() > 0.0);
    let refused = access
        .iter()
        .find(|l| l["fields"]["code"] == "INVALID_ARGUMENT")
        .expect("the refusal is logged");
    let reason = refused["fields"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("to: "), "{reason}");
    assert!(!reason.contains("4001234567890"), "{reason}");
    let unauthenticated = access
        .iter()
        .find(|l| l["fields"]["code"] == "UNAUTHENTICATED")
        .expect("the unauthenticated call is logged");
    assert_eq!(unauthenticated["fields"]["key"], "-");
    assert!(
        unauthenticated["fields"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("missing API key")
    );
    // No access or event line carries a full number.
    let digits = number.trim_start_matches('+');
    for line in lines
        .iter()
        .filter(|l| l["target"] == "verifyd::access" || l["target"] == "verifyd::events")
    {
        assert!(!line.to_string().contains(digits), "{line}");
    }
}
