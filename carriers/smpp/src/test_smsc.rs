//! The test SMSC: starts `smsc/smsc.js` (a real SMPP server from the npm `smpp` package) as a
//! child process, reads what it received, and can kill it mid-run.
//!
//! Used by this crate's tests and benchmark and by the end-to-end tests (feature `test-smsc`).
//! The Node modules are found through `VERIFYD_TEST_NODE_PATH`, else the workspace's
//! `.tools/npm/node_modules` (run `scripts/test --install-only` once).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One submit_sm the SMSC received, as it saw it on the wire.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ReceivedSubmit {
    /// system_id of the bind it came on.
    #[serde(default)]
    pub system_id: Option<String>,
    /// Which connection it came on (1, 2, ... in accept order).
    pub session: u32,
    /// sequence_number of the PDU.
    pub sequence_number: u32,
    /// destination_addr.
    pub destination: String,
    /// dest_addr_ton.
    pub dest_ton: u8,
    /// dest_addr_npi.
    pub dest_npi: u8,
    /// source_addr.
    pub source: String,
    /// source_addr_ton.
    pub source_ton: u8,
    /// source_addr_npi.
    pub source_npi: u8,
    /// data_coding.
    pub data_coding: u8,
    /// esm_class.
    pub esm_class: u8,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// The UDH in hex (with its length octet), when esm_class says there is one.
    pub udh: Option<String>,
    /// short_message in hex, UDH included.
    pub short_message_hex: String,
    /// The text after the UDH, decoded per data_coding.
    pub text: String,
    /// TLVs the SMSC's library does not know (operator tags such as 0x1400): tag as `0x1400`
    /// → value in hex.
    pub tlvs: BTreeMap<String, String>,
    /// The behaviour the SMSC applied.
    pub behaviour: String,
    /// command_status it answered (-1 generic_nack, -2 no answer, -3 connection closed instead).
    pub status: i64,
    /// The message id it gave, when accepted.
    pub message_id: Option<String>,
}

impl ReceivedSubmit {
    /// The value of TLV `tag` as text, without its terminating NUL.
    pub fn tlv_text(&self, tag: u16) -> Option<String> {
        let hex = self.tlvs.get(&format!("0x{tag:04x}"))?;
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}

#[derive(Default)]
struct Log {
    events: Vec<serde_json::Value>,
    closed: bool,
}

/// A running test SMSC. Killed when dropped.
pub struct TestSmsc {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    port: u16,
    config: serde_json::Value,
    log: Arc<(Mutex<Log>, Condvar)>,
}

impl std::fmt::Debug for TestSmsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSmsc")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// The `smsc.js` script.
pub fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("smsc")
        .join("smsc.js")
}

/// Where the npm `smpp` package is installed.
pub fn node_path() -> PathBuf {
    match std::env::var_os("VERIFYD_TEST_NODE_PATH") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/npm/node_modules"),
    }
}

impl TestSmsc {
    /// Starts an SMSC on a free port with `config` (see `smsc/smsc.js` for its keys, e.g.
    /// `{"destinations": {"+447400100004": "reject"}, "receipts": "text"}`).
    pub fn start(config: serde_json::Value) -> std::io::Result<TestSmsc> {
        Self::spawn(config, 0)
    }

    /// Starts an SMSC on `port` (to restart one that was killed at the same address).
    pub fn start_on_port(port: u16, config: serde_json::Value) -> std::io::Result<TestSmsc> {
        Self::spawn(config, port)
    }

    fn spawn(mut config: serde_json::Value, port: u16) -> std::io::Result<TestSmsc> {
        if !config.is_object() {
            config = serde_json::json!({});
        }
        config["port"] = port.into();
        let node = std::env::var_os("VERIFYD_TEST_NODE").unwrap_or_else(|| "node".into());
        let mut child = Command::new(node)
            .arg(script_path())
            .arg(config.to_string())
            .env("NODE_PATH", node_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout from the test SMSC"))?;
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let reader_log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(tx) = port_tx.take() {
                    let _ = tx.send(value.get("port").and_then(|p| p.as_u64()));
                    continue;
                }
                let (lock, changed) = &*reader_log;
                let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
                log.events.push(value);
                changed.notify_all();
            }
            let (lock, changed) = &*reader_log;
            lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            changed.notify_all();
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Some(port)) => port as u16,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "the test SMSC did not start (is the npm smpp package in {}? run scripts/test --install-only)",
                    node_path().display()
                )));
            }
        };
        Ok(TestSmsc {
            child: Some(child),
            stdin,
            port,
            config,
            log,
        })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The configuration it was started with (port included).
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// Kills it at once (connections drop without unbind), as an SMSC crash would.
    pub fn kill(&mut self) {
        self.stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts a new one on the same port with the same configuration.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let mut last = None;
        for _ in 0..20 {
            match Self::start_on_port(self.port, self.config.clone()) {
                Ok(fresh) => {
                    *self = fresh;
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("restart failed")))
    }

    /// Every event line it printed so far (`{"event": "bind" | "submit" | "enquire_link" |
    /// "unbind" | "receipt", ...}`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        let (lock, _) = &*self.log;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .clone()
    }

    /// Events of one kind.
    pub fn events_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e.get("event").and_then(|v| v.as_str()) == Some(name))
            .collect()
    }

    /// How many events named `name` it printed so far (without copying them).
    pub fn count_named(&self, name: &str) -> usize {
        let (lock, _) = &*self.log;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .iter()
            .filter(|e| e.get("event").and_then(|v| v.as_str()) == Some(name))
            .count()
    }

    /// Every submit_sm it received so far.
    pub fn submits(&self) -> Vec<ReceivedSubmit> {
        self.events_named("submit")
            .into_iter()
            .filter_map(|e| serde_json::from_value(e).ok())
            .collect()
    }

    /// Waits (blocking the thread) until at least `count` events named `name` arrived, or
    /// `timeout` passed; returns those seen.
    pub fn wait_for_events(
        &self,
        name: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.log;
        let mut log = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let seen: Vec<_> = log
                .events
                .iter()
                .filter(|e| e.get("event").and_then(|v| v.as_str()) == Some(name))
                .cloned()
                .collect();
            let now = Instant::now();
            if seen.len() >= count || log.closed || now >= deadline {
                return seen;
            }
            log = changed
                .wait_timeout(log, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Waits without blocking the async runtime until `count` submits arrived or `timeout`
    /// passed; returns those seen.
    pub async fn wait_for_submits(&self, count: usize, timeout: Duration) -> Vec<ReceivedSubmit> {
        let deadline = Instant::now() + timeout;
        loop {
            let submits = self.submits();
            if submits.len() >= count || Instant::now() >= deadline {
                return submits;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Tells it to close its stdin so it exits by itself.
    pub fn close_stdin(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
    }
}

impl Drop for TestSmsc {
    fn drop(&mut self) {
        self.kill();
    }
}
