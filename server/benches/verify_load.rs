//! Verify at database speed. Starts verifyd (this build's binary, default settings, the `sim`
//! carrier) and a bare tonic unary server (gRPC health `Check`, nothing else) as processes of
//! their own, and calls them from 64 concurrent callers over 4 connections, in alternating
//! rounds: bare, Verify (a new number each call: a new verification and its message, committed
//! before the answer, then sent by the dispatcher), the first Check of each verification the
//! Verify round made (with its right code, from the sim carrier's outbox: a write that
//! approves it, as long as the round's verifications last), Check of an approved verification,
//! Classify. Each Verify round is followed by one against a second verifyd with abuse defense
//! off (rate limits, pumping guard, guessing cool-off), for what checking the rules costs.
//! Prints calls/s, p50/p99 latency and the ratio to the bare call; whether the
//! dispatcher kept pace (messages handed to the carrier while Verify ran, and when the last
//! was); Verify's latency at a steady 1,000 calls/s; and the database's own commit rates on
//! the same machine: SQLite (WAL, synchronous=FULL) one transaction at a time and 64 writes
//! per commit, PostgreSQL from 32 connections, 64 writes per commit a row at a time, and 64
//! writes per commit a statement per table.
//!
//! On SQLite, and on PostgreSQL when `VERIFYD_BENCH_DATABASE_URL` names a server it may create
//! databases on (`postgres://postgres@127.0.0.1:5432/test` is tried by default).
//!
//! Run: `cargo bench -p verify-server --bench verify_load` (`-- --quick` for a short run). For
//! profiling, `VERIFYD_BENCH_VERIFY_ONLY=1` runs only the Verify rounds, on SQLite (`=postgres`:
//! on PostgreSQL), and prints verifyd's process id.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};
use tonic::transport::{Channel, Endpoint};
use verify_client::proto::v1::check_request::Target;
use verify_client::proto::v1::verify_service_client::VerifyServiceClient;
use verify_client::proto::v1::{CheckRequest, CheckResult, ClassifyRequest, VerifyRequest};

const CONCURRENCY: usize = 64;

mod common;
use common::{Load, Process, drop_database, postgres_database, start};
const CONNECTIONS: usize = 4;

/// The bare server: gRPC health and nothing else, on a tokio runtime like verifyd's.
fn serve_bare() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!(
            "bare listening on {}",
            listener.local_addr().expect("address")
        );
        let (_reporter, health) = tonic_health::server::health_reporter();
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("serve");
    });
}

/// Abuse defense as the benchmark's two servers run it.
#[derive(Clone, Copy, PartialEq)]
enum Defense {
    /// As it ships: no `[abuse]` configuration.
    Defaults,
    /// Every rate limit, the pumping guard and the guessing cool-off switched off (the
    /// baseline of what checking the rules costs).
    Off,
}

/// The `[abuse]` configuration of `defense`. `VERIFYD_BENCH_ABUSE` replaces the defaults' (to
/// measure one part of abuse defense at a time).
fn abuse_config(defense: Defense) -> String {
    if defense == Defense::Defaults {
        return std::env::var("VERIFYD_BENCH_ABUSE").unwrap_or_default();
    }
    let mut config: String = verify_policy::abuse::limits::default_limits()
        .iter()
        .map(|default| {
            format!(
                "[[abuse.rate_limits.limits]]\nname = \"{}\"\nkey = \"{}\"\nmax = 1\nper = \"1h\"\nenabled = false\n",
                default.name,
                default.key.as_str()
            )
        })
        .collect();
    config.push_str("[abuse.pumping]\nlevel = \"off\"\n[abuse.guessing]\nenabled = false\n");
    config
}

/// The `k`-th number the benchmark verifies: GB mobiles +44 74xx xxxxxx, 1,001 apart, so that
/// each call is in another number prefix (a prefix gets its next number 100,000 calls later),
/// as people verifying their own numbers are. Codes to consecutive numbers, never checked,
/// are SMS pumping, which the defaults refuse.
fn bench_number(k: u64) -> String {
    format!("+4474{:08}", k * 1001 % 100_000_000)
}

/// verifyd with default settings (abuse defense as `defense` says) on `database_url`, its data
/// in `directory`.
fn start_verifyd(database_url: &str, directory: &Path, defense: Defense) -> Process {
    let config = directory.join("verifyd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\ndata_dir = \"{}\"\nsim_outbox = \"{}\"\n{}",
            directory.display(),
            directory.join("outbox.jsonl").display(),
            abuse_config(defense)
        ),
    )
    .expect("config");
    let log = std::fs::File::create(directory.join("verifyd.log")).expect("log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_verifyd"));
    command
        .arg("--config")
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .stderr(log);
    start(command, "verifyd listening on ")
}

/// `CONCURRENCY` callers calling `call(worker)` in a loop for `budget`.
async fn round<F, Fut>(budget: Duration, call: F) -> Load
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    common::run(CONCURRENCY, budget, move |worker, _| call(worker)).await
}

fn percentile(latencies: &mut [Duration], fraction: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort_unstable();
    let index = ((latencies.len() as f64 * fraction).ceil() as usize).clamp(1, latencies.len());
    latencies[index - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Lines (messages handed to the sim carrier) in its outbox file.
fn sent(outbox: &Path) -> u64 {
    std::fs::read(outbox)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
        .unwrap_or(0)
}

/// The verification id and code of each message the sim carrier took, from line `from` of
/// its outbox file on; and the line count read.
fn codes_sent(outbox: &Path, from: usize) -> (Vec<(String, String)>, usize) {
    let text = std::fs::read_to_string(outbox).unwrap_or_default();
    let mut codes = Vec::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        if lines <= from {
            continue;
        }
        let line: serde_json::Value = serde_json::from_str(line).expect("outbox line");
        if let (Some(id), Some(code)) = (line["verification_id"].as_str(), line["code"].as_str()) {
            codes.push((id.to_string(), code.to_string()));
        }
    }
    (codes, lines)
}

/// The first Check of pending verifications, each with its right code (a write: the
/// verification is approved), from [`CONCURRENCY`] callers for `budget` or until every one
/// is checked. Panics on any answer but approved.
async fn first_checks(
    budget: Duration,
    channels: &[Channel],
    pending: Vec<(String, String)>,
) -> Load {
    let pending = Arc::new(pending);
    let next = Arc::new(AtomicUsize::new(0));
    let channels = channels.to_vec();
    common::run_while(CONCURRENCY, budget, move |worker, _| {
        let mut client = VerifyServiceClient::new(channels[worker % CONNECTIONS].clone());
        let pending = Arc::clone(&pending);
        let next = Arc::clone(&next);
        async move {
            let Some((id, code)) = pending.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return false;
            };
            let answer = client
                .check(CheckRequest {
                    target: Some(Target::VerificationId(id.clone())),
                    code: code.clone(),
                    service_id: String::new(),
                })
                .await
                .expect("check")
                .into_inner();
            assert_eq!(
                answer.result,
                CheckResult::Approved as i32,
                "first check of {id}"
            );
            true
        }
    })
    .await
}

async fn connect(address: &str) -> Vec<Channel> {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            Endpoint::from_shared(format!("http://{address}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect"),
        );
    }
    channels
}

/// Runs the rounds against verifyd on `database_url` with abuse defense as it ships, and its
/// Verify rounds also against a second verifyd on `baseline_url` with abuse defense off.
async fn run(
    label: &str,
    database_url: &str,
    baseline_url: &str,
    directory: &Path,
    bare: &str,
    quick: bool,
) {
    let verifyd = start_verifyd(database_url, directory, Defense::Defaults);
    let baseline_dir = directory.join("baseline");
    std::fs::create_dir_all(&baseline_dir).expect("dir");
    let baseline = start_verifyd(baseline_url, &baseline_dir, Defense::Off);
    let outbox = directory.join("outbox.jsonl");
    let baseline_outbox = baseline_dir.join("outbox.jsonl");
    let bare_channels = Arc::new(connect(bare).await);
    let channels = Arc::new(connect(&verifyd.address).await);
    let baseline_channels = Arc::new(connect(&baseline.address).await);

    let echo = {
        let channels = Arc::clone(&bare_channels);
        move |worker: usize| {
            let mut health = tonic_health::pb::health_client::HealthClient::new(
                channels[worker % CONNECTIONS].clone(),
            );
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
    let verify_on = |channels: &Arc<Vec<Channel>>, next_number: &Arc<AtomicU64>| {
        let channels = Arc::clone(channels);
        let next_number = Arc::clone(next_number);
        move |worker: usize| {
            let mut client = VerifyServiceClient::new(channels[worker % CONNECTIONS].clone());
            let n = next_number.fetch_add(1, Ordering::Relaxed);
            async move {
                client
                    .verify(VerifyRequest {
                        to: bench_number(n),
                        ..VerifyRequest::default()
                    })
                    .await
                    .expect("verify");
            }
        }
    };
    let next_number = Arc::new(AtomicU64::new(0));
    let verify = verify_on(&channels, &next_number);
    let baseline_next = Arc::new(AtomicU64::new(0));
    let verify_baseline = verify_on(&baseline_channels, &baseline_next);
    // Check of an approved verification: the code is right, nothing changes.
    let approved = {
        let mut client = VerifyServiceClient::new(channels[0].clone());
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
            service_id: String::new(),
        };
        client.check(request.clone()).await.expect("approve");
        request
    };
    let check = {
        let channels = Arc::clone(&channels);
        move |worker: usize| {
            let mut client = VerifyServiceClient::new(channels[worker % CONNECTIONS].clone());
            let request = approved.clone();
            async move {
                client.check(request).await.expect("check");
            }
        }
    };
    let classify = {
        let channels = Arc::clone(&channels);
        move |worker: usize| {
            let mut client = VerifyServiceClient::new(channels[worker % CONNECTIONS].clone());
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

    let (rounds, budget) = if quick {
        (2, Duration::from_millis(1500))
    } else {
        (4, Duration::from_secs(3))
    };
    round(Duration::from_millis(500), echo.clone()).await;
    round(Duration::from_millis(500), classify.clone()).await;
    let mut totals: [Load; 5] = Default::default();
    let mut baseline_total = Load::default();
    // Outbox lines whose codes a first-check round has taken.
    let mut codes_taken = sent(&outbox) as usize;
    let mut verify_time = Duration::ZERO;
    let sent_before = sent(&outbox);
    let verified_before = next_number.load(Ordering::Relaxed);
    let mut sent_during_verify = 0;
    let mut longest_drain = Duration::ZERO;
    let mut all_sent = true;
    let verify_only = std::env::var_os("VERIFYD_BENCH_VERIFY_ONLY").is_some();
    if verify_only {
        println!("verifyd pid {}", verifyd.child.id());
    }
    for _ in 0..rounds {
        if !verify_only {
            totals[0].add(round(budget, echo.clone()).await);
        }
        let before = sent(&outbox);
        let begun = Instant::now();
        totals[1].add(round(budget, verify.clone()).await);
        verify_time += begun.elapsed();
        sent_during_verify += sent(&outbox) - before;
        // The dispatcher's backlog when Verify stopped: how long until it is all sent.
        let verified = next_number.load(Ordering::Relaxed) - verified_before;
        let drain_started = Instant::now();
        while sent(&outbox) - sent_before < verified && drain_started.elapsed().as_secs() < 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        longest_drain = longest_drain.max(drain_started.elapsed());
        all_sent &= sent(&outbox) - sent_before >= verified;
        // The same round against the server with abuse defense off, its backlog sent before
        // the next round.
        baseline_total.add(round(budget, verify_baseline.clone()).await);
        let baseline_verified = baseline_next.load(Ordering::Relaxed);
        let drain_started = Instant::now();
        while sent(&baseline_outbox) < baseline_verified && drain_started.elapsed().as_secs() < 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !verify_only {
            // The codes this round's Verify calls sent, each checked once.
            let (pending, lines) = codes_sent(&outbox, codes_taken);
            codes_taken = lines;
            totals[2].add(first_checks(budget, &channels, pending).await);
            totals[3].add(round(budget, check.clone()).await);
            totals[4].add(round(budget, classify.clone()).await);
        }
    }
    let defense_cost = format!(
        "abuse defense as it ships costs Verify {:.1}% ({:.0}/s with it, {:.0}/s on a second server with it off, alternating rounds)",
        100.0 * (1.0 - totals[1].rate() / baseline_total.rate()),
        totals[1].rate(),
        baseline_total.rate()
    );
    if verify_only {
        println!("Verify: {:.0}/s; {defense_cost}", totals[1].rate());
        return;
    }
    let verified = next_number.load(Ordering::Relaxed) - verified_before;

    println!(
        "{label}: {CONCURRENCY} concurrent calls over {CONNECTIONS} connections, {rounds} alternating rounds of {budget:?}"
    );
    println!(
        "  {:<42} {:>9} {:>10} {:>10} {:>9}",
        "call", "calls/s", "p50", "p99", "of bare"
    );
    let bare_rate = totals[0].rate();
    for (name, total) in [
        "bare unary (separate tonic server)",
        "Verify (new number each call)",
        "Check (first, pending, right code)",
        "Check (approved, right code)",
        "Classify",
    ]
    .iter()
    .zip(totals.iter_mut())
    {
        let rate = total.rate();
        let p50 = percentile(&mut total.latencies, 0.50);
        let p99 = percentile(&mut total.latencies, 0.99);
        println!(
            "  {name:<42} {rate:>9.0} {:>10} {:>10} {:>8.1}%",
            ms(p50),
            ms(p99),
            100.0 * rate / bare_rate
        );
    }
    println!(
        "  dispatcher: {:.0} messages/s handed to the carrier while Verify ran ({:.0} Verify/s); {}",
        sent_during_verify as f64 / verify_time.as_secs_f64(),
        verified as f64 / verify_time.as_secs_f64(),
        if all_sent {
            format!(
                "every round's backlog sent at most {} after its last Verify",
                ms(longest_drain)
            )
        } else {
            format!("NOT all sent 60 s after a round of Verify ({verified} verified)")
        }
    );
    println!("  {defense_cost}");

    // Verify at a steady 1,000 calls/s: latency from when each call was due (so a stall
    // counts against every call it delayed).
    let steady = Duration::from_secs(if quick { 2 } else { 5 });
    let rate = 1000u32;
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut due = started;
    let mut n = 0usize;
    while started.elapsed() < steady {
        ticker.tick().await;
        let call = verify.clone();
        let scheduled = due;
        tasks.spawn(async move {
            call(n).await;
            scheduled.elapsed()
        });
        n += 1;
        due += Duration::from_secs(1) / rate;
    }
    let mut latencies = Vec::new();
    while let Some(latency) = tasks.join_next().await {
        latencies.push(latency.expect("call"));
    }
    println!(
        "  Verify at a steady {rate}/s for {steady:?}: p50 {}, p99 {}, max {}",
        ms(percentile(&mut latencies, 0.50)),
        ms(percentile(&mut latencies, 0.99)),
        ms(percentile(&mut latencies, 1.0)),
    );
    drop(verifyd);
    drop(baseline);
}

/// SQLite's own commit rate on this disk (WAL, synchronous=FULL, as verifyd sets it), through
/// its C API in this thread: a verification-sized row and an event per transaction, one
/// transaction at a time; then 64 of those in one transaction.
fn sqlite_limits(directory: &Path, budget: Duration) {
    let connection = rusqlite::Connection::open(directory.join("limits.db")).expect("sqlite");
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             CREATE TABLE a (id TEXT PRIMARY KEY, body TEXT NOT NULL); \
             CREATE TABLE b (id INTEGER PRIMARY KEY AUTOINCREMENT, a_id TEXT NOT NULL, body TEXT NOT NULL);",
        )
        .expect("setup");
    let body = "x".repeat(300);
    let mut n = 0u64;
    let mut commits_per_second = |per_commit: u64| {
        let started = Instant::now();
        let mut commits = 0u64;
        while started.elapsed() < budget {
            connection.execute_batch("BEGIN").expect("begin");
            for _ in 0..per_commit {
                n += 1;
                let id = format!("row{n}");
                connection
                    .prepare_cached("INSERT INTO a (id, body) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute((&id, &body)))
                    .expect("insert");
                connection
                    .prepare_cached("INSERT INTO b (a_id, body) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute((&id, &body)))
                    .expect("insert");
            }
            connection.execute_batch("COMMIT").expect("commit");
            commits += 1;
        }
        commits as f64 / started.elapsed().as_secs_f64()
    };
    let single = commits_per_second(1);
    let batched = commits_per_second(64);
    println!(
        "SQLite itself (WAL, synchronous=FULL, this disk): {single:.0} two-row transactions/s one at a time; \
         {:.0} two-row writes/s at 64 per commit ({batched:.0} commits/s)",
        batched * 64.0
    );
}

/// PostgreSQL's own commit rate: four-row transactions from 32 connections at once, then 64 of
/// those writes per commit from one connection a row at a time, then 64 per commit set-based
/// (a statement per table) from four connections.
async fn postgres_limits(url: &str, budget: Duration) {
    let mut setup = sqlx::PgConnection::connect(url).await.expect("postgres");
    for statement in [
        "CREATE TABLE a (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TABLE b (id BIGSERIAL PRIMARY KEY, a_id TEXT NOT NULL, body TEXT NOT NULL)",
    ] {
        setup.execute(statement).await.expect("setup");
    }
    let next = Arc::new(AtomicU64::new(0));
    // Four-row writes per second from `clients` connections, `per_commit` writes in each
    // transaction: a statement per row, or (`set_based`) one per table, as verifyd writes a
    // group (two rows of `a` and two of `b` for each write).
    let run = |clients: usize, per_commit: u64, set_based: bool| {
        let next = Arc::clone(&next);
        async move {
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let next = Arc::clone(&next);
                let url = url.to_string();
                tasks.spawn(async move {
                    let mut connection = sqlx::PgConnection::connect(&url).await.expect("connect");
                    let body = "x".repeat(300);
                    let mut writes = 0u64;
                    while started.elapsed() < budget {
                        let first = next.fetch_add(per_commit, Ordering::Relaxed);
                        let ids: Vec<String> =
                            (first..first + per_commit).map(|n| format!("row{n}")).collect();
                        let mut tx = connection.begin().await.expect("begin");
                        if set_based {
                            let a_ids: Vec<String> = ids
                                .iter()
                                .flat_map(|id| [id.clone(), format!("{id}-2")])
                                .collect();
                            let b_ids: Vec<String> =
                                ids.iter().flat_map(|id| [id.clone(), id.clone()]).collect();
                            for (sql, ids) in [
                                (
                                    "INSERT INTO a (id, body) SELECT id, $2 FROM unnest($1::text[]) AS t(id)",
                                    &a_ids,
                                ),
                                (
                                    "INSERT INTO b (a_id, body) SELECT id, $2 FROM unnest($1::text[]) AS t(id)",
                                    &b_ids,
                                ),
                            ] {
                                sqlx::query(sql)
                                    .bind(ids)
                                    .bind(&body)
                                    .execute(&mut *tx)
                                    .await
                                    .expect("insert");
                            }
                        } else {
                            for id in &ids {
                                for sql in [
                                    "INSERT INTO a (id, body) VALUES ($1, $2)",
                                    "INSERT INTO a (id, body) VALUES ($1 || '-2', $2)",
                                    "INSERT INTO b (a_id, body) VALUES ($1, $2)",
                                    "INSERT INTO b (a_id, body) VALUES ($1, $2)",
                                ] {
                                    sqlx::query(sql)
                                        .bind(id)
                                        .bind(&body)
                                        .execute(&mut *tx)
                                        .await
                                        .expect("insert");
                                }
                            }
                        }
                        tx.commit().await.expect("commit");
                        writes += per_commit;
                    }
                    writes
                });
            }
            let mut total = 0;
            while let Some(writes) = tasks.join_next().await {
                total += writes.expect("client");
            }
            total as f64 / started.elapsed().as_secs_f64()
        }
    };
    let concurrent = run(32, 1, false).await;
    let batched = run(1, 64, false).await;
    let set_based = run(4, 64, true).await;
    println!(
        "PostgreSQL itself (this machine): {concurrent:.0} four-row transactions/s from 32 connections; \
         {batched:.0} four-row writes/s at 64 per commit from one connection, a statement per row; \
         {set_based:.0} four-row writes/s at 64 per commit from 4 connections, a statement per table"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--bare-server") {
        serve_bare();
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let limit_budget = Duration::from_secs(if quick { 1 } else { 3 });
    let mut bare_command = Command::new(std::env::current_exe().expect("this program"));
    bare_command.arg("--bare-server");
    let bare = start(bare_command, "bare listening on ");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let directory = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = directory.path().to_path_buf();
        if std::env::var_os("VERIFYD_BENCH_VERIFY_ONLY").is_none() {
            sqlite_limits(&path, limit_budget);
        }
        // The profiling mode: Verify alone, on SQLite, or on PostgreSQL when the variable says
        // `postgres`.
        let verify_only = std::env::var("VERIFYD_BENCH_VERIFY_ONLY").ok();
        if verify_only.as_deref() != Some("postgres") {
            let sqlite_dir = path.join("sqlite");
            std::fs::create_dir_all(&sqlite_dir).expect("dir");
            let sqlite_url = format!("sqlite://{}", sqlite_dir.join("verifyd.db").display());
            let baseline_url = format!(
                "sqlite://{}",
                sqlite_dir.join("baseline").join("verifyd.db").display()
            );
            run(
                "SQLite",
                &sqlite_url,
                &baseline_url,
                &sqlite_dir,
                &bare.address,
                quick,
            )
            .await;
            if verify_only.is_some() {
                return;
            }
        }
        match postgres_database("limits").await {
            Some((admin, name, url)) => {
                if verify_only.is_none() {
                    postgres_limits(&url, limit_budget).await;
                }
                drop_database(&admin, &name).await;
                let (admin, name, url) = postgres_database("verifyd").await.expect("database");
                let (_, baseline_name, baseline_url) =
                    postgres_database("baseline").await.expect("database");
                let pg_dir = path.join("postgres");
                std::fs::create_dir_all(&pg_dir).expect("dir");
                run(
                    "PostgreSQL",
                    &url,
                    &baseline_url,
                    &pg_dir,
                    &bare.address,
                    quick,
                )
                .await;
                drop_database(&admin, &name).await;
                drop_database(&admin, &baseline_name).await;
            }
            None => println!("PostgreSQL: no server; skipped"),
        }
    });
}
