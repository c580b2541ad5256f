//! Write-path throughput: Verify (a new verification and its message, committed before the
//! answer, then sent by the dispatcher through the `sim` carrier), Check of an approved
//! verification, and Classify, each against a bare tonic unary call (gRPC health `Check`)
//! served by the same verifyd in the same run, from 64 concurrent calls over 4 connections.
//! On SQLite, and on PostgreSQL when `VERIFYD_BENCH_DATABASE_URL` names a server it may create
//! databases on (`postgres://postgres@127.0.0.1:5432/test` is tried by default).
//!
//! Run: `cargo bench -p verify-server --bench verify_load` (`-- --quick` for a short run).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use verify_client::proto::v1::check_request::Target;
use verify_client::proto::v1::verify_service_client::VerifyServiceClient;
use verify_client::proto::v1::{CheckRequest, ClassifyRequest, VerifyRequest};
use verify_server::config::Config;

const CONCURRENCY: usize = 64;
const CONNECTIONS: usize = 4;

mod common;

/// Calls per second of `call(worker)` from `CONCURRENCY` tasks for `budget`.
async fn measure<F, Fut>(budget: Duration, call: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    common::measure(CONCURRENCY, budget, move |worker, _| call(worker)).await
}

/// A PostgreSQL database for the run, or `None` when no server answers.
async fn postgres_database() -> Option<(String, String, String)> {
    let admin = std::env::var("VERIFYD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut connection = sqlx::PgConnection::connect(&admin).await.ok()?;
    let name = format!("verifyd_bench_{}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .ok()?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some((admin.clone(), name.clone(), format!("{base}/{name}")))
}

async fn run(label: &str, database_url: String, budget: Duration) {
    let directory = tempfile::tempdir().expect("temp dir");
    let config = Config {
        database_url,
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
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            Endpoint::from_shared(format!("http://{address}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect"),
        );
    }
    let channels = Arc::new(channels);
    let channel_of = {
        let channels = Arc::clone(&channels);
        move |worker: usize| channels[worker % CONNECTIONS].clone()
    };

    let echo = {
        let channel_of = channel_of.clone();
        move |worker: usize| {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel_of(worker));
            async move {
                health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .expect("health check");
            }
        }
    };
    // Every Verify is a new number: a new verification and message, none a resend.
    let next_number = Arc::new(AtomicU64::new(0));
    let verify = {
        let channel_of = channel_of.clone();
        move |worker: usize| {
            let mut client = VerifyServiceClient::new(channel_of(worker));
            let n = next_number.fetch_add(1, Ordering::Relaxed) % 1_000_000;
            async move {
                client
                    .verify(VerifyRequest {
                        to: format!("+447400{n:06}"),
                        ..VerifyRequest::default()
                    })
                    .await
                    .expect("verify");
            }
        }
    };
    // Check of an approved verification: the code is right, nothing changes.
    let approved = {
        let mut client = VerifyServiceClient::new(channel_of(0));
        let id = client
            .verify(VerifyRequest {
                to: "+447911123456".into(),
                ..VerifyRequest::default()
            })
            .await
            .expect("verify")
            .into_inner()
            .verification
            .expect("verification")
            .id;
        let outbox = directory.path().join("outbox.jsonl");
        let code = loop {
            let text = std::fs::read_to_string(&outbox).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(&id)) {
                let line: serde_json::Value = serde_json::from_str(line).expect("outbox line");
                break line["code"].as_str().expect("code").to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let request = CheckRequest {
            target: Some(Target::VerificationId(id)),
            code,
        };
        client.check(request.clone()).await.expect("approve");
        request
    };
    let check = {
        let channel_of = channel_of.clone();
        move |worker: usize| {
            let mut client = VerifyServiceClient::new(channel_of(worker));
            let request = approved.clone();
            async move {
                client.check(request).await.expect("check");
            }
        }
    };
    let classify = {
        let channel_of = channel_of.clone();
        move |worker: usize| {
            let mut client = VerifyServiceClient::new(channel_of(worker));
            async move {
                client
                    .classify(ClassifyRequest {
                        number: "+447400123456".into(),
                        region_hint: String::new(),
                    })
                    .await
                    .expect("classify");
            }
        }
    };
    measure(Duration::from_millis(300), echo.clone()).await;
    let echo_rate =
        (measure(budget, echo.clone()).await + measure(budget, echo.clone()).await) / 2.0;
    let verify_rate = measure(budget, verify).await;
    let check_rate = measure(budget, check).await;
    let classify_rate = measure(budget, classify).await;
    println!("{label}: {CONCURRENCY} concurrent calls over {CONNECTIONS} connections");
    println!(
        "  {:<44} {:>9.0} calls/s",
        "bare unary (grpc.health.v1.Health/Check)", echo_rate
    );
    for (name, rate) in [
        ("Verify (new number each call)", verify_rate),
        ("Check (approved, right code)", check_rate),
        ("Classify", classify_rate),
    ] {
        println!(
            "  {name:<44} {rate:>9.0} calls/s  {:>5.1}% of bare",
            100.0 * rate / echo_rate
        );
    }
    let _ = stop.send(());
    let _ = server.await;
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
        let sqlite = format!("sqlite://{}", directory.path().join("bench.db").display());
        run("SQLite", sqlite, budget).await;
        match postgres_database().await {
            Some((admin, name, url)) => {
                run("PostgreSQL", url, budget).await;
                if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut connection)
                    .await;
                }
            }
            None => println!("PostgreSQL: not measured (no server at VERIFYD_BENCH_DATABASE_URL)"),
        }
    });
}
