//! The example gateway of the README, run with `python3` against the carrier: the documented
//! protocol and the example cannot drift apart. Skipped where `python3` is missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use verify_carrier::{
    CarrierContext, CarrierRegistry, Channel, OneTimeCode, OutboundMessage, ReceiptSink,
    ReceiptStatus,
};

const README: &str = include_str!("../README.md");
const SECRET: &str = "readme-example-secret-0123456789";

/// The Python code between the example markers of the README.
fn example_gateway() -> String {
    let start = README
        .find("<!-- example-gateway:start -->")
        .expect("start marker");
    let end = README
        .find("<!-- example-gateway:end -->")
        .expect("end marker");
    let block = &README[start..end];
    let code_start = block.find("```python\n").expect("python block") + "```python\n".len();
    let code_end = block[code_start..].find("```").expect("block end") + code_start;
    block[code_start..code_end].to_string()
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn readme_python_gateway_works() {
    let has_python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_python {
        eprintln!("python3 not found: README example not run");
        return;
    }
    let dir = std::env::temp_dir().join(format!("verifyd-webhook-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("gateway.py");
    std::fs::write(&script, example_gateway()).unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let _gateway = KillOnDrop(
        std::process::Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .env("VERIFYD_WEBHOOK_SECRET", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 starts"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the example gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_url = format!(
        "http://{}/callbacks/inhouse",
        listener.local_addr().unwrap()
    );
    let (sink, mut receipts) = ReceiptSink::channel(16);
    let mut registry = CarrierRegistry::new();
    verify_carrier_webhook::register(&mut registry);
    let settings = serde_json::json!({
        "url": format!("http://127.0.0.1:{port}/messages"),
        "secret": SECRET,
    });
    let context = CarrierContext {
        name: "inhouse".into(),
        receipts: sink,
        callback_url: Some(callback_url),
    };
    let carrier = registry
        .build(verify_carrier_webhook::KIND, &settings, context)
        .unwrap();
    let targets = Arc::new(BTreeMap::from([(
        "inhouse".to_string(),
        Arc::clone(&carrier),
    )]));
    tokio::spawn(verify_carrier::callback::serve(
        listener,
        targets,
        std::future::pending(),
    ));

    let accepted = carrier
        .submit(OutboundMessage {
            message_id: "msg_readme".into(),
            verification_id: "vf_readme".into(),
            to: "+919812345678".into(),
            region_code: Some("IN".into()),
            channel: Channel::Sms,
            body: "आपका कोड 493817 है".into(),
            code: OneTimeCode::new("493817"),
            locale: "hi-IN".into(),
            sender: None,
            attributes: Default::default(),
        })
        .await
        .expect("the example gateway accepts a signed message");
    let receipt = tokio::time::timeout(Duration::from_secs(10), receipts.recv())
        .await
        .expect("receipt in time")
        .unwrap();
    assert_eq!(receipt.carrier_message_id, accepted.carrier_message_id);
    assert_eq!(receipt.status, ReceiptStatus::Delivered);

    // A carrier with the wrong secret is refused by the example, as the protocol says.
    let (sink, _receipts) = ReceiptSink::channel(16);
    let mut wrong = settings.clone();
    wrong["secret"] = "another-secret-0123456789".into();
    let context = CarrierContext {
        name: "inhouse".into(),
        receipts: sink,
        callback_url: None,
    };
    let carrier = registry
        .build(verify_carrier_webhook::KIND, &wrong, context)
        .unwrap();
    let refused = carrier
        .submit(OutboundMessage {
            message_id: "msg_readme_2".into(),
            verification_id: "vf_readme".into(),
            to: "+919812345678".into(),
            region_code: None,
            channel: Channel::Sms,
            body: "code 493817".into(),
            code: OneTimeCode::new("493817"),
            locale: "en".into(),
            sender: None,
            attributes: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        verify_carrier::ErrorKind::Config,
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
