//! End-to-end tests of verifyd with real carriers: the callback endpoint, an SMPP bind to a
//! real SMSC, the Twilio-style carrier against a local server speaking Twilio's API, and
//! failover when a carrier's peer dies mid-run.

use std::time::Duration;

use verify_e2e::{Backend, TestServer};

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
