//! Classify RPC throughput against a bare tonic unary call (gRPC health `Check`) served by the
//! same verifyd in the same process, over the same connection, from the same client tasks: the
//! ratio says how much the classification adds to gRPC's own cost.
//!
//! Run: `cargo bench -p verify-server --bench classify_rpc` (add `-- --quick` for a short run).

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use verify_client::proto::v1::{ClassifyRequest, verify_service_client::VerifyServiceClient};
use verify_server::config::Config;

mod common;

const CONCURRENCY: usize = 32;

async fn measure<F, Fut>(budget: Duration, call: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    common::measure(CONCURRENCY, budget, move |worker, n| {
        call(worker * 7919 + n)
    })
    .await
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 1500 } else { 5000 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let directory = tempfile::tempdir().expect("temp dir");
        let config = Config {
            database_url: format!("sqlite://{}", directory.path().join("bench.db").display()),
            data_dir: directory.path().to_path_buf(),
            sim_outbox: directory.path().join("outbox.jsonl"),
            ..Config::default()
        };
        let config = Config::finish(config).expect("config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(verify_server::app::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        let channel: Channel = Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");

        let engine = verify_policy::engine::Engine::embedded();
        let numbers: std::sync::Arc<Vec<String>> = std::sync::Arc::new(match std::env::var("BENCH_NUMBER") {
            Ok(number) => vec![number],
            Err(_) => verify_policy::engine::corpus::generate(engine, 7)
                .into_iter()
                .filter(|e| e.region_hint.is_none())
                .map(|e| e.input)
                .collect(),
        });

        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let echo = {
            let health = health.clone();
            move |_: usize| {
                let mut health = health.clone();
                async move {
                    health
                        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                        .await
                        .expect("health check");
                }
            }
        };
        let verify = VerifyServiceClient::new(channel.clone());
        let classify = {
            let numbers = numbers.clone();
            move |i: usize| {
                let mut verify = verify.clone();
                let number = numbers[i % numbers.len()].clone();
                async move {
                    verify
                        .classify(ClassifyRequest { number, region_hint: String::new() })
                        .await
                        .expect("classify");
                }
            }
        };
        // Warm both paths, then measure them alternately twice to even out machine noise.
        measure(Duration::from_millis(300), echo.clone()).await;
        measure(Duration::from_millis(300), classify.clone()).await;
        let mut echo_rates = Vec::new();
        let mut classify_rates = Vec::new();
        for _ in 0..2 {
            echo_rates.push(measure(budget / 2, echo.clone()).await);
            classify_rates.push(measure(budget / 2, classify.clone()).await);
        }
        let echo_rate = echo_rates.iter().sum::<f64>() / echo_rates.len() as f64;
        let classify_rate = classify_rates.iter().sum::<f64>() / classify_rates.len() as f64;
        println!("{CONCURRENCY} concurrent calls over one HTTP/2 connection, client and server in one process");
        println!("{:<42} {:>10.0} calls/s", "bare unary (grpc.health.v1.Health/Check)", echo_rate);
        println!("{:<42} {:>10.0} calls/s", "verify.v1.VerifyService/Classify", classify_rate);
        println!("Classify / bare unary: {:.0}%", 100.0 * classify_rate / echo_rate);
        let _ = stop.send(());
        let _ = server.await;
    });
}
