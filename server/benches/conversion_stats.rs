//! Conversion statistics at scale, on SQLite and PostgreSQL (when a server answers at
//! `VERIFYD_BENCH_DATABASE_URL`, by default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! 1. **The event log rolled up.** Generates a month of raw history in the real schema (by
//!    default 1,000,000 verifications, `VERIFYD_BENCH_STATS_RAW`: their messages, with a call
//!    after one SMS in ten, and about 5.4 events each), runs the real rollup follower over the
//!    whole log and prints events and verifications rolled up per second.
//! 2. **The answer.** A week by country from the rollups (GetConversionStats' query) against the
//!    same question asked of the raw tables (the join the `adaptive` strategy runs), each timed
//!    in the same run: milliseconds and their ratio.
//! 3. **10 million.** Folds 10,000,000 generated verifications (`VERIFYD_BENCH_STATS_MILLIONS`)
//!    over 30 days, 40 countries, 3 carriers and 2 channels into the rollups, 5,000 events per
//!    transaction as the follower writes them, and times the queries again: the answer does not
//!    grow with the number of verifications, only with countries × carriers × hours.
//!
//! Run: `cargo bench -p verify-server --bench conversion_stats`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;

mod common;
use common::{drop_database, postgres_database};
use tokio::sync::watch;
use verify_carrier::Channel;
use verify_policy::routing::RoutePlan;
use verify_server::domain::conversion::{
    DAY_MS, Dimension, HOUR_MS, MessageRecord, Rollup, StatsQuery, VerificationRecord,
};
use verify_server::domain::{
    DeliveryStatus, Event, EventKind, MessageFacts, Subject, SubjectStatus, VerificationStatus,
};
use verify_server::store::SqlStore;

/// Countries of the generated traffic (two letters each).
const REGIONS: &str = "GBUSDEFRESITNLSEPLPTHNSVGTNIMXBRARCOPECLINIDPHVNTHMYNGKEGHZAEGMAAETRSAPKBD";
/// How many countries `REGIONS` holds.
const REGION_COUNT: i64 = (REGIONS.len() / 2) as i64;
/// The month of history.
const SPAN_MS: i64 = 30 * DAY_MS;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The statements that generate `count` verifications from `start_ms` on (one in ten with a
/// fallback call), their messages and their events, for a dialect: `numbers` is a subquery
/// of `i` from 0 to count - 1, `blob` a one-byte blob literal.
fn generation(count: i64, start_ms: i64, numbers: &str, blob: &str) -> Vec<String> {
    let step = (SPAN_MS / count).max(1);
    let created = format!("({start_ms} + i * {step})");
    let region = format!("substr('{REGIONS}', CAST(1 + 2 * (i % {REGION_COUNT}) AS INTEGER), 2)");
    // Conversion differs by country: 45% to 97%.
    let approved = format!(
        "((i / {REGION_COUNT}) * 7919) % 100 < 45 + 52 * (i % {REGION_COUNT}) / {REGION_COUNT}"
    );
    let delivered = "(i * 31) % 100 < 92";
    let carrier = "'c' || (i % 3)";
    let status = format!("CASE WHEN {approved} THEN 'approved' ELSE 'expired' END");
    let ended = format!(
        "CASE WHEN {approved} THEN {created} + 8000 + (i % 50) * 1000 ELSE {created} + 600000 END"
    );
    let event = |cursor: i64, columns: &str| {
        format!(
            "INSERT INTO events (cursor, event_type, subject_kind, subject_id, message_id, channel, carrier, \
             delivery_status, previous_delivery_status, subject_status, created_at_ms, service_id) \
             SELECT i * 8 + {cursor}, {columns}, 'default' FROM {numbers}"
        )
    };
    vec![
        format!(
            "INSERT INTO verifications (id, to_e164, region_code, status, channel, locale, code_length, code_nonce, \
             code_check, max_checks, max_sends, classification, created_at_ms, expires_at_ms, updated_at_ms) \
             SELECT 'vf_' || i, '+1' || i, {region}, {status}, 'sms', 'en', 6, {blob}, {blob}, 5, 5, '{{}}', \
             {created}, {created} + 600000, {ended} FROM {numbers}"
        ),
        format!(
            "INSERT INTO messages (id, subject_kind, subject_id, channel, carrier, step, status, due_at_ms, \
             created_at_ms, updated_at_ms) \
             SELECT 'msg_' || i, 'verification', 'vf_' || i, 'sms', {carrier}, 0, \
             CASE WHEN {delivered} THEN 'delivered' ELSE 'failed' END, {created}, {created}, {created} + 3000 \
             FROM {numbers}"
        ),
        format!(
            "INSERT INTO messages (id, subject_kind, subject_id, channel, carrier, step, status, due_at_ms, \
             created_at_ms, updated_at_ms) \
             SELECT 'msg_' || i || 'v', 'verification', 'vf_' || i, 'voice', 'c0', 1, 'delivered', \
             {created} + 30000, {created} + 30000, {created} + 35000 FROM {numbers} WHERE i % 10 = 0"
        ),
        event(
            0,
            &format!(
                "'verification_created', 'verification', 'vf_' || i, NULL, NULL, NULL, NULL, NULL, 'pending', {created}"
            ),
        ),
        event(
            1,
            &format!(
                "'message_submitted', 'verification', 'vf_' || i, 'msg_' || i, 'sms', {carrier}, 'submitted', \
                 'sending', 'pending', {created} + 100"
            ),
        ),
        event(
            2,
            &format!(
                "CASE WHEN {delivered} THEN 'message_delivered' ELSE 'message_failed' END, 'verification', \
                 'vf_' || i, 'msg_' || i, 'sms', {carrier}, CASE WHEN {delivered} THEN 'delivered' ELSE 'failed' END, \
                 'submitted', 'pending', {created} + 3000"
            ),
        ),
        format!(
            "{} WHERE i % 10 = 0",
            event(
                3,
                &format!(
                    "'message_submitted', 'verification', 'vf_' || i, 'msg_' || i || 'v', 'voice', 'c0', 'submitted', \
                     'sending', 'pending', {created} + 30100"
                ),
            )
        ),
        format!(
            "{} WHERE i % 10 = 0",
            event(
                4,
                &format!(
                    "'message_delivered', 'verification', 'vf_' || i, 'msg_' || i || 'v', 'voice', 'c0', 'delivered', \
                     'submitted', 'pending', {created} + 35000"
                ),
            )
        ),
        event(
            5,
            &format!(
                "CASE WHEN {approved} THEN 'verification_approved' ELSE 'verification_expired' END, 'verification', \
                 'vf_' || i, NULL, NULL, NULL, NULL, NULL, {status}, {ended}"
            ),
        ),
    ]
}

/// Runs the generating statements on SQLite (its own connection beside the store's).
fn generate_sqlite(path: &str, count: i64, start_ms: i64) {
    let connection = rusqlite::Connection::open(path).expect("sqlite");
    connection
        .busy_timeout(Duration::from_secs(60))
        .expect("busy timeout");
    let numbers = format!(
        "(WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {count}) SELECT i FROM n)"
    );
    connection.execute_batch("BEGIN").unwrap();
    for statement in generation(count, start_ms, &numbers, "X'00'") {
        connection.execute_batch(&statement).expect("generate");
    }
    connection.execute_batch("COMMIT").unwrap();
}

async fn generate_postgres(url: &str, count: i64, start_ms: i64) {
    let mut connection = sqlx::PgConnection::connect(url).await.expect("postgres");
    let numbers = format!("generate_series(0::bigint, {}) AS n(i)", count - 1);
    for statement in generation(count, start_ms, &numbers, "'\\x00'::bytea") {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await
            .expect("generate");
    }
    sqlx::raw_sql("ANALYZE")
        .execute(&mut connection)
        .await
        .expect("analyze");
}

/// The median of `runs` timings of `work`, in milliseconds.
async fn median_ms<F, Fut, T>(runs: usize, mut work: F) -> (f64, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(work().await);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last.expect("one run"))
}

fn week_by(now: i64, group_by: Vec<Dimension>) -> StatsQuery {
    let to_ms = (now / HOUR_MS + 1) * HOUR_MS;
    StatsQuery {
        from_ms: to_ms - 7 * DAY_MS,
        to_ms,
        group_by,
        service_id: None,
        countries: Vec::new(),
        channel: None,
    }
}

fn month_by(now: i64, group_by: Vec<Dimension>) -> StatsQuery {
    StatsQuery {
        from_ms: week_by(now, Vec::new()).to_ms - 31 * DAY_MS,
        ..week_by(now, group_by)
    }
}

/// Part 1 and 2 on one database.
async fn raw_history(
    label: &str,
    store: Arc<SqlStore>,
    count: i64,
    generate: impl Future<Output = ()>,
) {
    let started = Instant::now();
    generate.await;
    let generated = started.elapsed();
    let latest = store.latest_event_cursor().await.unwrap();
    let events = latest; // cursors are 0..8 per verification, some unused
    println!(
        "{label}: generated {count} verifications of a month ({} messages, their events) in {:.1} s",
        count + count / 10,
        generated.as_secs_f64()
    );

    let (stop, stopping) = watch::channel(false);
    let started = Instant::now();
    let follower = verify_server::rollup::start(Arc::clone(&store), RoutePlan::default(), stopping);
    loop {
        if store.conversion_rollup_cursor().await.unwrap() >= latest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rolled = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = follower.await;
    let event_count = count * 4 + count / 10 * 2;
    println!(
        "{label}: rollup of the whole log: {:.0} events/s, {:.0} verifications/s ({:.1} s; cursor {events})",
        event_count as f64 / rolled,
        count as f64 / rolled,
        rolled
    );

    let now = now_ms();
    let week = week_by(now, vec![Dimension::Country]);
    let (rollup_ms, rows) = median_ms(21, || store.conversion_stats(&week)).await;
    let rows = rows.unwrap();
    let verifications: u64 = rows.iter().map(|r| r.tally.verifications).sum();
    let since = now - 7 * DAY_MS;
    let (raw_ms, counts) = median_ms(3, || store.conversion_counts(since)).await;
    let sent: u64 = counts.unwrap().iter().map(|c| c.sent).sum();
    println!(
        "{label}: a week by country ({} countries, {verifications} verifications): rollups {rollup_ms:.2} ms, \
         raw tables {raw_ms:.0} ms ({sent} messages joined): the rollups answer {:.0}x faster",
        rows.len(),
        raw_ms / rollup_ms
    );
}

/// One generated verification `i` of `count` from `start_ms`: its record and events.
fn generated(i: i64, count: i64, start_ms: i64) -> (VerificationRecord, Vec<Event>) {
    let created = start_ms + i * (SPAN_MS / count).max(1);
    let r = (i % REGION_COUNT) as usize;
    let region = REGIONS[2 * r..2 * r + 2].to_string();
    let approved = ((i / REGION_COUNT) * 7919) % 100 < 45 + 52 * (i % REGION_COUNT) / REGION_COUNT;
    let delivered = (i * 31) % 100 < 92;
    let carrier = format!("c{}", i % 3);
    let id = format!("vf_{i}");
    let sms = MessageRecord {
        id: format!("msg_{i}"),
        channel: Channel::Sms,
        carrier: carrier.clone(),
        step: 0,
        status: if delivered {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Failed
        },
        due_at_ms: created,
        created_at_ms: created,
    };
    let mut messages = vec![sms];
    if i % 10 == 0 {
        messages.push(MessageRecord {
            id: format!("msg_{i}v"),
            channel: Channel::Voice,
            carrier: "c0".into(),
            step: 1,
            status: DeliveryStatus::Delivered,
            due_at_ms: created + 30_000,
            created_at_ms: created + 30_000,
        });
    }
    let subject = Subject::Verification(id);
    let pending = SubjectStatus::Verification(VerificationStatus::Pending);
    let message_event = |m: &MessageRecord, kind, status, previous, at_ms| Event {
        kind,
        service_id: "default".into(),
        subject: subject.clone(),
        message: Some(MessageFacts {
            id: m.id.clone(),
            channel: m.channel,
            carrier: m.carrier.clone(),
            status,
            previous_status: Some(previous),
        }),
        subject_status: pending,
        detail: String::new(),
        at_ms,
    };
    let mut events = Vec::with_capacity(6);
    for m in &messages {
        events.push(message_event(
            m,
            EventKind::MessageSubmitted,
            DeliveryStatus::Submitted,
            DeliveryStatus::Sending,
            m.created_at_ms + 100,
        ));
        let (kind, status) = if m.status == DeliveryStatus::Delivered {
            (EventKind::MessageDelivered, DeliveryStatus::Delivered)
        } else {
            (EventKind::MessageFailed, DeliveryStatus::Failed)
        };
        events.push(message_event(
            m,
            kind,
            status,
            DeliveryStatus::Submitted,
            m.created_at_ms + 3000,
        ));
    }
    let (kind, status, at_ms) = if approved {
        (
            EventKind::VerificationApproved,
            VerificationStatus::Approved,
            created + 8000 + (i % 50) * 1000,
        )
    } else {
        (
            EventKind::VerificationExpired,
            VerificationStatus::Expired,
            created + 600_000,
        )
    };
    events.push(Event {
        kind,
        service_id: "default".into(),
        subject,
        message: None,
        subject_status: SubjectStatus::Verification(status),
        detail: String::new(),
        at_ms,
    });
    let record = VerificationRecord {
        service_id: "default".into(),
        region,
        created_at_ms: created,
        messages,
    };
    (record, events)
}

/// Part 3 on one database.
async fn ten_million(label: &str, store: Arc<SqlStore>, count: i64) {
    let start_ms = now_ms() - SPAN_MS;
    let routes = RoutePlan::default();
    let started = Instant::now();
    let mut cursor = 0i64;
    let mut folding = Duration::ZERO;
    let mut events_total = 0u64;
    let per_batch = 900; // about 5,000 events
    let mut i = 0;
    while i < count {
        let fold_started = Instant::now();
        let mut rollup = Rollup::new();
        let mut batch_events = 0;
        for n in i..(i + per_batch).min(count) {
            let (record, events) = generated(n, count, start_ms);
            for event in &events {
                rollup.count(event, &record, |region, carrier| {
                    routes.declared_cost(region, carrier)
                });
            }
            batch_events += events.len() as i64;
        }
        folding += fold_started.elapsed();
        events_total += batch_events as u64;
        let from = cursor;
        cursor += batch_events;
        let to = cursor;
        let moved = store
            .write(move |tx| {
                Box::pin(async move { tx.add_conversion_rollup(from, to, &rollup).await })
            })
            .await
            .unwrap();
        assert!(moved);
        i += per_batch;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{label}: {count} verifications ({events_total} events) folded and written in {elapsed:.1} s: \
         {:.0} verifications/s, {:.0} events/s (folding alone {:.0} events/s)",
        count as f64 / elapsed,
        events_total as f64 / elapsed,
        events_total as f64 / folding.as_secs_f64()
    );
    let now = now_ms();
    for (name, query) in [
        ("a week by country", week_by(now, vec![Dimension::Country])),
        (
            "30 days by country",
            month_by(now, vec![Dimension::Country]),
        ),
        (
            "30 days by country, carrier, channel",
            month_by(
                now,
                vec![Dimension::Country, Dimension::Carrier, Dimension::Channel],
            ),
        ),
        ("30 days by day", month_by(now, vec![Dimension::Day])),
        ("a week by hour", week_by(now, vec![Dimension::Hour])),
    ] {
        let (ms, rows) = median_ms(11, || store.conversion_stats(&query)).await;
        let rows = rows.unwrap();
        let verifications: u64 = rows.iter().map(|r| r.tally.verifications).sum();
        println!(
            "{label}: {name}: {ms:.1} ms ({} rows, {verifications} verifications)",
            rows.len()
        );
    }
}

fn main() {
    let raw = env_number("VERIFYD_BENCH_STATS_RAW", 1_000_000);
    let millions = env_number("VERIFYD_BENCH_STATS_MILLIONS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        // SQLite.
        let path = dir.path().join("raw.db");
        let url = format!("sqlite://{}", path.display());
        let store = Arc::new(SqlStore::connect(&url).await.expect("sqlite"));
        let start_ms = now_ms() - SPAN_MS;
        let file = path.display().to_string();
        raw_history("sqlite", Arc::clone(&store), raw, async move {
            tokio::task::spawn_blocking(move || generate_sqlite(&file, raw, start_ms))
                .await
                .unwrap()
        })
        .await;
        store.close().await;
        drop(store);
        std::fs::remove_file(&path).ok();
        let url = format!("sqlite://{}", dir.path().join("scale.db").display());
        let store = Arc::new(SqlStore::connect(&url).await.expect("sqlite"));
        ten_million("sqlite", Arc::clone(&store), millions * 1_000_000).await;
        store.close().await;

        // PostgreSQL.
        match postgres_database("stats").await {
            Some((admin, name, url)) => {
                let store = Arc::new(SqlStore::connect(&url).await.expect("postgres"));
                let generating = url.clone();
                raw_history("postgres", Arc::clone(&store), raw, async move {
                    generate_postgres(&generating, raw, start_ms).await
                })
                .await;
                store.close().await;
                drop_database(&admin, &name).await;
                let (admin, name, url) = postgres_database("scale").await.expect("database");
                let store = Arc::new(SqlStore::connect(&url).await.expect("postgres"));
                ten_million("postgres", Arc::clone(&store), millions * 1_000_000).await;
                store.close().await;
                drop_database(&admin, &name).await;
            }
            None => println!("postgres: no server at VERIFYD_BENCH_DATABASE_URL; skipped"),
        }
    });
}
