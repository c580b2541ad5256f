//! What the server benchmarks share: a closed-loop load of concurrent callers, and PostgreSQL
//! databases made for a run. (Each benchmark uses part of it.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// Calls made: how long they ran for together, and each call's latency.
#[derive(Default)]
pub struct Load {
    /// Wall-clock seconds the callers ran.
    pub seconds: f64,
    /// The latency of each call.
    pub latencies: Vec<Duration>,
}

impl Load {
    /// Calls per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }

    /// Adds another round's calls to these.
    pub fn add(&mut self, other: Load) {
        self.seconds += other.seconds;
        self.latencies.extend(other.latencies);
    }
}

/// `call` from `concurrency` tasks, each calling in a loop for `budget`; `call(worker, n)` is
/// the `n`th call of task `worker`.
pub async fn run<F, Fut>(concurrency: usize, budget: Duration, call: F) -> Load
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    run_while(concurrency, budget, move |worker, n| {
        let call = call(worker, n);
        async move {
            call.await;
            true
        }
    })
    .await
}

/// As [`run`], but a task also stops when its call answers `false` (it had nothing left to
/// call with); that call is not counted.
pub async fn run_while<F, Fut>(concurrency: usize, budget: Duration, call: F) -> Load
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < budget {
                let begun = Instant::now();
                if !call(worker, latencies.len()).await {
                    break;
                }
                latencies.push(begun.elapsed());
            }
            latencies
        });
    }
    let mut load = Load::default();
    while let Some(latencies) = tasks.join_next().await {
        load.latencies.extend(latencies.expect("client task"));
    }
    load.seconds = started.elapsed().as_secs_f64();
    load
}

/// Calls per second of `call` from `concurrency` tasks for `budget` (see [`run`]).
pub async fn measure<F, Fut>(concurrency: usize, budget: Duration, call: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    run(concurrency, budget, call).await.rate()
}

/// A PostgreSQL database for the run (admin URL, name, URL), or `None` when no server answers.
pub async fn postgres_database(suffix: &str) -> Option<(String, String, String)> {
    let admin = std::env::var("VERIFYD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut connection = sqlx::PgConnection::connect(&admin).await.ok()?;
    let name = format!("verifyd_bench_{}_{suffix}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .ok()?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some((admin.clone(), name.clone(), format!("{base}/{name}")))
}

/// Drops a database made by [`postgres_database`].
pub async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut connection) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut connection)
        .await;
    }
}

/// A server process, killed when dropped.
pub struct Process {
    /// The process.
    pub child: Child,
    /// The address it said it listens on.
    pub address: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and waits for the line `<prefix><address>` on its standard output.
pub fn start(mut command: Command, prefix: &str) -> Process {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(address) = line.strip_prefix(prefix) {
                    break address.to_string();
                }
            }
            _ => panic!("the server stopped before listening"),
        }
    };
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Process { child, address }
}
