//! Throughput of the SMPP carrier against the test SMSC, as a ratio to the SMSC's own accept rate.
//!
//! Baseline: a minimal raw client writes pre-encoded submit_sm PDUs over one bind with a window
//! of 64 and counts submit_sm_resp. Carrier: `Carrier::submit` from many concurrent tasks over
//! one bind with a window of 64. Both run against the same SMSC (bench mode: no receipts), in
//! alternating rounds because the machine is shared and noisy.
//!
//! `cargo bench -p verify-carrier-smpp --bench submit` (env `SMPP_BENCH_MESSAGES`,
//! `SMPP_BENCH_ROUNDS` to change the size).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use verify_carrier::{CarrierContext, Channel, OneTimeCode, OutboundMessage, ReceiptSink};
use verify_carrier_smpp::pdu::{self, Address, Bind, PduCodec, ShortMessage, command};
use verify_carrier_smpp::test_smsc::TestSmsc;

const WINDOW: usize = 64;
const SUBMITTERS: usize = 256;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The raw client: bind, then keep `WINDOW` pre-encoded submit_sm outstanding until `total`
/// responses came back. Returns messages per second.
async fn baseline(port: u16, total: usize) -> f64 {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = FramedRead::new(read_half, PduCodec);
    let bind = Bind {
        command_id: command::BIND_TRANSCEIVER,
        system_id: "verifyd".into(),
        password: "secret".into(),
        system_type: String::new(),
        interface_version: pdu::INTERFACE_VERSION_34,
        addr_ton: 0,
        addr_npi: 0,
        address_range: String::new(),
    };
    write_half
        .write_all(&bind.encode(1).expect("bind"))
        .await
        .expect("write bind");
    let resp = reader.next().await.expect("bind resp").expect("frame");
    assert_eq!(resp.status, 0, "bind accepted");
    let pdus: Vec<Bytes> = (0..total)
        .map(|n| {
            ShortMessage {
                source: Address {
                    ton: 5,
                    npi: 0,
                    addr: "Verify".into(),
                },
                destination: Address {
                    ton: 1,
                    npi: 1,
                    addr: format!("4474{:08}", n % 100_000_000),
                },
                registered_delivery: 1,
                short_message: Bytes::from_static(
                    b"Your verification code is 424242. It expires in 10 minutes.",
                ),
                ..ShortMessage::default()
            }
            .encode(command::SUBMIT_SM, n as u32 + 2)
            .expect("encode")
        })
        .collect();
    let window = Arc::new(Semaphore::new(WINDOW));
    let counter = Arc::clone(&window);
    let started = Instant::now();
    let responses = tokio::spawn(async move {
        let mut seen = 0;
        while seen < total {
            match reader.next().await {
                Some(Ok(frame)) if frame.command_id == command::SUBMIT_SM_RESP => {
                    seen += 1;
                    counter.add_permits(1);
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        seen
    });
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut next = 0;
    while next < total {
        window.acquire().await.expect("window").forget();
        buffer.extend_from_slice(&pdus[next]);
        next += 1;
        while next < total {
            match window.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    buffer.extend_from_slice(&pdus[next]);
                    next += 1;
                }
                Err(_) => break,
            }
        }
        write_half.write_all(&buffer).await.expect("write");
        buffer.clear();
    }
    let seen = responses.await.expect("reader");
    let elapsed = started.elapsed();
    assert_eq!(seen, total, "every submit answered");
    let _ = write_half
        .write_all(&pdu::header_only(command::UNBIND, 0, 1))
        .await;
    total as f64 / elapsed.as_secs_f64()
}

/// The carrier: `SUBMITTERS` tasks call `submit` until `total` messages were accepted.
async fn carrier_rate(port: u16, total: usize) -> f64 {
    let (receipts, _rx) = ReceiptSink::channel(1);
    let carrier = verify_carrier_smpp::build(
        &serde_json::json!({
            "host": "127.0.0.1",
            "port": port,
            "system_id": "verifyd",
            "password": "secret",
            "window": WINDOW,
            "binds": 1,
            "source_addr": "Verify",
            "shutdown_receipt_wait_ms": 1,
        }),
        CarrierContext {
            name: "bench".into(),
            receipts,
            callback_url: None,
        },
    )
    .expect("carrier builds");
    carrier.start().await.expect("starts");
    // Bind first so connection set-up is not timed.
    carrier
        .submit(message(0))
        .await
        .expect("warm-up submit accepted");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(SUBMITTERS);
    for _ in 0..SUBMITTERS {
        let carrier = Arc::clone(&carrier);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                carrier.submit(message(n)).await.expect("accepted");
            }
        }));
    }
    for task in tasks {
        task.await.expect("submitter");
    }
    let elapsed = started.elapsed();
    carrier.shutdown().await;
    total as f64 / elapsed.as_secs_f64()
}

fn message(n: usize) -> OutboundMessage {
    OutboundMessage {
        message_id: format!("msg_{n}"),
        verification_id: format!("vf_{n}"),
        to: format!("+4474{:08}", n % 100_000_000),
        region_code: Some("GB".into()),
        channel: Channel::Sms,
        body: "Your verification code is 424242. It expires in 10 minutes.".into(),
        code: OneTimeCode::new("424242"),
        locale: "en".into(),
        sender: None,
        attributes: Default::default(),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let total = env_number("SMPP_BENCH_MESSAGES", 50_000);
    let rounds = env_number("SMPP_BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let smsc = TestSmsc::start(serde_json::json!({ "bench": true })).expect("test SMSC starts");
    let port = smsc.port();
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        // Warm the SMSC's JIT before measuring.
        baseline(port, 5_000).await;
        for round in 1..=rounds {
            let b = baseline(port, total).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let c = carrier_rate(port, total).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            println!(
                "round {round}: baseline {b:>9.0} submit_sm/s   carrier {c:>9.0} submit_sm/s   ratio {:.2}",
                c / b
            );
            base.push(b);
            ours.push(c);
        }
    });
    let (b, c) = (median(&mut base), median(&mut ours));
    println!(
        "median over {rounds} rounds of {total} messages, window {WINDOW}, one bind: baseline (raw client, SMSC accept rate) {b:.0} submit_sm/s, carrier {c:.0} submit_sm/s, ratio carrier/baseline {:.2}",
        c / b
    );
}
