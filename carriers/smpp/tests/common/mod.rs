//! Helpers the SMPP carrier's test binaries share: settings for a carrier bound to a test SMSC,
//! starting it, and messages.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc::Receiver;
use verify_carrier::test_support;
use verify_carrier::{Carrier, Channel, DeliveryReceipt, OneTimeCode, OutboundMessage};

pub fn settings(port: u16, extra: serde_json::Value) -> serde_json::Value {
    let mut settings = serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "system_id": "verifyd",
        "password": "secret",
        "connect_wait_ms": 3000,
        "reconnect_min_ms": 50,
        "reconnect_max_ms": 200,
        "response_timeout_ms": 2000,
        "throttle_retry_delay_ms": 20,
        "shutdown_receipt_wait_ms": 3000,
    });
    if let (Some(base), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    settings
}

pub async fn start_carrier(
    port: u16,
    extra: serde_json::Value,
) -> (Arc<dyn Carrier>, Receiver<DeliveryReceipt>) {
    let (carrier, rx) = test_support::build(
        verify_carrier_smpp::register,
        verify_carrier_smpp::KIND,
        "test-smpp",
        settings(port, extra),
        None,
    )
    .into_parts();
    carrier.start().await.expect("starts");
    (carrier, rx)
}

pub fn message(to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: format!("msg_{}", body.len()),
        verification_id: "vf_1".into(),
        to: to.into(),
        region_code: Some("IN".into()),
        channel: Channel::Sms,
        body: body.into(),
        code: OneTimeCode::new("123456"),
        locale: "en".into(),
        sender: None,
        attributes: BTreeMap::new(),
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
