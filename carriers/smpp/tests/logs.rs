//! The SMPP carrier's logs, in a test binary of their own: the log capture is the thread's
//! default subscriber, and tests running beside it in one process could settle the `tracing`
//! callsites' interest (never logged) before it is set.

mod common;

use std::sync::{Arc, Mutex};

use common::{message, start_carrier};
use verify_carrier::test_support::next_receipt;
use verify_carrier_smpp::test_smsc::TestSmsc;

/// Collects log output of the current thread.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Single-threaded runtime: every task logs through the thread's default subscriber.
#[tokio::test]
async fn logs_never_show_the_password_the_body_or_the_number() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let smsc = TestSmsc::start(serde_json::json!({ "password": "right" })).expect("SMSC");
    let (wrong, _rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "password": "wrong123", "connect_wait_ms": 300 }),
    )
    .await;
    let _ = wrong.submit(message("+447401100001", "Code 246810")).await;
    wrong.shutdown().await;
    let (right, mut rx) = start_carrier(
        smsc.port(),
        serde_json::json!({ "password": "right", "throttle_retries": 0 }),
    )
    .await;
    right
        .submit(message("+447401100002", "Your code is 246810"))
        .await
        .expect("accepted");
    next_receipt(&mut rx).await;
    right.shutdown().await;

    let text = String::from_utf8_lossy(&logs.0.lock().expect("lock")).into_owned();
    assert!(text.contains("SMPP bind refused"), "{text}");
    assert!(text.contains("ESME_RINVPASWD"), "{text}");
    assert!(text.contains("SMPP bind up"), "{text}");
    assert!(text.contains("reconnecting"), "{text}");
    for secret in ["wrong123", "\"right\"", "=right", "246810", "7401100002"] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into the logs:\n{text}"
        );
    }
}
