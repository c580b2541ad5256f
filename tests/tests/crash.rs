//! `kill -9` of verifyd in the middle of a Verify load, then a restart, through the real binary
//! on SQLite and PostgreSQL: every acknowledged verification exists, no message reaches a
//! carrier twice, and every acknowledged message reaches its carrier within seconds of the
//! restart (or, for a carrier that cannot recognise a repeat, is reported maybe sent).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use verify_carrier_smpp::test_smsc::TestSmsc;
use verify_carrier_webhook::test_peer::GatewayPeer;
use verify_client::VerifyOptions;
use verify_client::proto::v1::{DeliveryStatus, Verification};
use verify_e2e::{
    Backend, MANY_NUMBERS, ServerOptions, TestServer, on_both_backends, unique_mobile,
};

on_both_backends!(
    a_crash_under_load_loses_nothing_and_the_gateway_gets_each_message_once,
    a_crash_under_load_sends_nothing_twice_to_an_smsc,
);

/// Concurrent clients of the load.
const CLIENTS: usize = 16;
/// Verifications acknowledged before the kill.
const ACKNOWLEDGED_BEFORE_KILL: usize = 120;
/// How soon after the restart every acknowledged message must have reached its carrier.
const RECOVERY: Duration = Duration::from_secs(5);

/// Verify calls from `CLIENTS` clients until the server goes away; the verifications it
/// acknowledged (id, number).
struct Load {
    acknowledged: Arc<Mutex<Vec<(String, String)>>>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    async fn start(server: &TestServer) -> Load {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let client = server.client().await;
            let acknowledged = Arc::clone(&acknowledged);
            tasks.spawn(async move {
                loop {
                    let number = unique_mobile();
                    match client.verify(VerifyOptions::new(&number)).await {
                        Ok(response) => {
                            let id = response.verification.expect("verification").id;
                            acknowledged.lock().unwrap().push((id, number));
                        }
                        Err(_) => return, // The server died: unacknowledged, not counted.
                    }
                }
            });
        }
        Load {
            acknowledged,
            tasks,
        }
    }

    /// Waits until `count` verifications were acknowledged.
    async fn wait_for(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.acknowledged.lock().unwrap().len() < count {
            assert!(Instant::now() < deadline, "the load did not get going");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for every client to have seen the server die; the acknowledged verifications.
    async fn finish(mut self) -> Vec<(String, String)> {
        while self.tasks.join_next().await.is_some() {}
        self.acknowledged.lock().unwrap().clone()
    }
}

/// Kills the server mid-load and restarts it; the acknowledged verifications and the instant
/// the restarted server answered.
async fn crash_under_load(server: &mut TestServer) -> (Vec<(String, String)>, Instant) {
    let load = Load::start(server).await;
    load.wait_for(ACKNOWLEDGED_BEFORE_KILL).await;
    server.kill();
    let acknowledged = load.finish().await;
    server.restart();
    let restarted = Instant::now();
    eprintln!(
        "{} verifications acknowledged before kill -9",
        acknowledged.len()
    );
    (acknowledged, restarted)
}

/// Every acknowledged verification exists, with its one message; returned by id.
async fn stored(
    server: &TestServer,
    acknowledged: &[(String, String)],
) -> HashMap<String, Verification> {
    let client = server.client().await;
    let mut found = HashMap::new();
    for (id, number) in acknowledged {
        let verification = client
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("acknowledged verification {id} is lost: {e}"));
        assert_eq!(&verification.to, number);
        assert_eq!(verification.attempts.len(), 1, "{verification:?}");
        found.insert(id.clone(), verification);
    }
    found
}

/// What the restarted server said about taking over the dead process's messages.
fn takeover_line(server: &TestServer) -> String {
    server
        .log()
        .lines()
        .find(|line| line.contains("took over the messages of a dispatcher"))
        .map(|line| {
            line.rsplit_once("  ")
                .map_or(line, |(_, tail)| tail)
                .to_string()
        })
        .unwrap_or_else(|| "no dispatcher was taken over".into())
}

fn gateway_config(peer: &GatewayPeer) -> String {
    format!(
        "[callbacks]\nlisten = \"127.0.0.1:0\"\n\n[[carriers]]\nname = \"gateway\"\nkind = \"webhook\"\n\
         url = \"{}\"\nsecret = \"{}\"\ntimeout_ms = 5000\n\n[routes]\ndefault = [\"gateway\"]\n{MANY_NUMBERS}",
        peer.url(),
        peer.secret()
    )
}

/// A gateway that recognises repeats by `Idempotency-Key` (as the webhook protocol asks):
/// after the crash every acknowledged message reaches it within seconds, and none is sent to a
/// handset twice, even one whose hand-off the crash interrupted (it is handed again).
async fn a_crash_under_load_loses_nothing_and_the_gateway_gets_each_message_once(backend: Backend) {
    let peer = GatewayPeer::start().await.expect("the gateway starts");
    let mut server = TestServer::start_with_config(backend, gateway_config(&peer)).await;
    let (acknowledged, restarted) = crash_under_load(&mut server).await;
    let verifications = stored(&server, &acknowledged).await;
    let message_of: HashMap<&str, &str> = verifications
        .values()
        .map(|v| (v.attempts[0].message_id.as_str(), v.id.as_str()))
        .collect();

    let missing = loop {
        let taken: HashSet<String> = peer.taken().into_iter().collect();
        let missing: Vec<&str> = message_of
            .keys()
            .filter(|id| !taken.contains(**id))
            .copied()
            .collect();
        if missing.is_empty() || restarted.elapsed() > RECOVERY {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        missing.is_empty(),
        "{} acknowledged messages had not reached the gateway {RECOVERY:?} after the restart: {:?}\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        server.log()
    );
    // Each message was taken once; a repeat of the same key was answered, not sent again.
    let requests = peer.requests();
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        *per_key
            .entry(request.headers["idempotency-key"].clone())
            .or_default() += 1;
    }
    let repeated = per_key.values().filter(|&&n| n > 1).count();
    let taken = peer.taken();
    assert_eq!(
        taken.len(),
        taken.iter().collect::<HashSet<_>>().len(),
        "a key was taken twice"
    );
    for request in &requests {
        let key = &request.headers["idempotency-key"];
        assert_eq!(
            request.json()["message_id"].as_str(),
            Some(key.as_str()),
            "the key is the message id"
        );
    }
    eprintln!(
        "{} messages taken by the gateway; {repeated} handed again after the crash (recognised, not resent); {}",
        taken.len(),
        takeover_line(&server)
    );
}

/// An SMSC cannot recognise a repeat: a message whose hand-off the crash interrupted is
/// reported maybe sent, never sent again. Nothing reaches the SMSC twice, and every
/// acknowledged message is, within seconds of the restart, at the SMSC or maybe sent.
async fn a_crash_under_load_sends_nothing_twice_to_an_smsc(backend: Backend) {
    let smsc = TestSmsc::start(serde_json::json!({
        "system_id": "verifyd-crash",
        "password": "pw-crash",
        "receipt_delay_ms": 30,
    }))
    .expect("the test SMSC starts");
    let config = format!(
        "[[carriers]]\nname = \"operator\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"verifyd-crash\"\npassword = \"pw-crash\"\nwindow = 32\nresponse_timeout_ms = 5000\n\
         reconnect_min_ms = 50\nreconnect_max_ms = 500\n\n[routes]\ndefault = [\"operator\"]\n{MANY_NUMBERS}",
        smsc.port()
    );
    let mut server = TestServer::start_with(
        backend,
        ServerOptions {
            extra_config: config,
            ..ServerOptions::default()
        },
    )
    .await;
    let (acknowledged, restarted) = crash_under_load(&mut server).await;
    let verifications = stored(&server, &acknowledged).await;
    let client = server.client().await;

    let (unsettled, maybe_sent) = loop {
        let at_smsc: HashSet<String> = smsc
            .submits()
            .into_iter()
            .filter(|s| s.status == 0)
            .map(|s| format!("+{}", s.destination))
            .collect();
        let mut unsettled = Vec::new();
        let mut maybe_sent = 0;
        for (id, number) in &acknowledged {
            if at_smsc.contains(number) {
                continue;
            }
            let stored = client.get(id).await.unwrap();
            match stored.attempts[0].delivery_status() {
                DeliveryStatus::MaybeSent => maybe_sent += 1,
                _ => unsettled.push(id.clone()),
            }
        }
        if unsettled.is_empty() || restarted.elapsed() > RECOVERY {
            break (unsettled, maybe_sent);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        unsettled.is_empty(),
        "{} acknowledged messages neither at the SMSC nor maybe sent {RECOVERY:?} after the restart: {:?}\n{}",
        unsettled.len(),
        unsettled
            .iter()
            .take(5)
            .map(|id| &verifications[id])
            .collect::<Vec<_>>(),
        server.log()
    );
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for submit in smsc.submits() {
        *per_number.entry(submit.destination).or_default() += 1;
    }
    let doubled: Vec<_> = per_number.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice to the SMSC: {doubled:?}");
    eprintln!(
        "{} acknowledged: {} at the SMSC, {maybe_sent} maybe sent (handed over as verifyd died); {}",
        acknowledged.len(),
        acknowledged.len() - maybe_sent,
        takeover_line(&server)
    );
}
