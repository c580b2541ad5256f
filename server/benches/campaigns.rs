//! Campaigns at scale, through this build's verifyd (release, as a process of its own):
//!
//! - **Ingest**: a list of recipients across ten countries (valid mobiles, from
//!   `verify_numbers::engine::recipients`) written as a CSV file, read and streamed with
//!   CreateCampaign the way `verifyctl campaign create` does, until verifyd answers that every
//!   recipient is stored; the campaign starts an hour later, so nothing is sent meanwhile.
//!   Prints recipients/s, verifyd's peak resident memory for two list sizes (flat whatever the
//!   size), the database's growth per million recipients, and the ratio to the database's own
//!   rate for the same rows: the same table and indexes filled by a bare client in
//!   transactions of 2,000 rows (SQLite: WAL, synchronous=FULL, as verifyd runs it;
//!   PostgreSQL: multi-row INSERTs of 1,000 rows).
//! - **Dispatch**: a campaign of alerts to Great Britain, Germany and France through a route
//!   of configured capacity C, C = 1,000 to 10,000 messages/s: the rate messages reached the
//!   carrier from the first to the last, and its ratio to C. Twice for each C: through the sim
//!   carrier (which refuses what goes over its rate as a throttling SMSC does), and through the
//!   SMPP carrier to the local test SMSC (`carriers/smpp/smsc`, which answers every submit_sm
//!   and sends a delivery receipt for each), over one bind per 2,500 messages/s, each bind
//!   paced at its share of C; there the count is of the submit_sm the SMSC received.
//!
//! On SQLite, and on PostgreSQL when `VERIFYD_BENCH_DATABASE_URL` names a server it may create
//! databases on (`postgres://postgres@127.0.0.1:5432/test` is tried by default).
//!
//! Run: `cargo bench -p verify-server --bench campaigns` (1,000,000 recipients; `-- --quick`
//! for 100,000 and shorter dispatch runs; `-- --dispatch-only`, `-- --database postgres` and
//! `-- --rates 10000,20000` narrow a run to what is being looked at; `VERIFYD_BENCH_DIR` keeps
//! the run's files and verifyd's logs there, `VERIFYD_BENCH_LOG` is verifyd's `RUST_LOG`).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::Connection;
use verify_carrier_smpp::test_smsc::TestSmsc;
use verify_client::VerifyClient;
use verify_client::proto::Timestamp;
use verify_client::proto::v1::{
    CampaignRecipient, CampaignRecipients, CampaignSpec, MessageCategory,
};
use verify_numbers::engine::recipients::recipients;

mod common;
use common::{Process, drop_database, postgres_database, start};

/// Recipients per CreateCampaign chunk (as verifyctl sends them).
const CHUNK: usize = 2_000;

/// The database a run uses.
struct Database {
    url: String,
    /// PostgreSQL: the admin URL and database name, to drop it after.
    postgres: Option<(String, String)>,
}

/// The kinds of database this run has: SQLite, and PostgreSQL when a server answers.
async fn kinds() -> Vec<&'static str> {
    let mut kinds = vec!["SQLite"];
    if let Some((admin, name, _)) = postgres_database("probe").await {
        drop_database(&admin, &name).await;
        kinds.push("PostgreSQL");
    }
    kinds
}

/// A new, empty database of `kind` for one step (`tag` names it).
async fn fresh(kind: &'static str, directory: &Path, tag: &str) -> Database {
    if kind == "SQLite" {
        return Database {
            url: format!("sqlite://{}", directory.join(format!("{tag}.db")).display()),
            postgres: None,
        };
    }
    let (admin, name, url) = postgres_database(tag)
        .await
        .expect("the PostgreSQL server answered a moment ago");
    Database {
        url,
        postgres: Some((admin, name)),
    }
}

async fn drop(database: &Database) {
    if let Some((admin, name)) = &database.postgres {
        drop_database(admin, name).await;
    }
}

/// The carrier a run's campaigns go through.
enum Route<'a> {
    /// The sim carrier, at `Some(rate)` messages/s (none: unlimited).
    Sim(Option<u32>),
    /// The SMPP carrier to a local SMSC, at `rate` messages/s spread over its binds.
    Smpp { smsc: &'a TestSmsc, rate: u32 },
}

impl Route<'_> {
    /// Its `[[carriers]]` table and the route to it, as verifyd's configuration.
    fn config(&self, directory: &Path) -> String {
        match self {
            Route::Sim(rate) => {
                let limit = rate
                    .map(|r| format!("max_messages_per_second = {r}\n"))
                    .unwrap_or_default();
                format!(
                    "[[carriers]]\nname = \"sim\"\nkind = \"sim\"\noutbox = \"{}\"\nlatency_ms = 50\n{limit}\
                     [routes]\ndefault = [{{ carrier = \"sim\" }}]\n",
                    directory.join("outbox.jsonl").display(),
                )
            }
            Route::Smpp { smsc, rate } => {
                let binds = smpp_binds(*rate);
                format!(
                    "[[carriers]]\nname = \"smsc\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
                     system_id = \"verifyd\"\npassword = \"secret\"\nsource_addr = \"VERIFYD\"\n\
                     binds = {binds}\nwindow = 256\nmax_messages_per_second = {}\n\
                     [routes]\ndefault = [{{ carrier = \"smsc\" }}]\n",
                    smsc.port(),
                    rate / binds as u32,
                )
            }
        }
    }
}

/// Binds to the local SMSC for a route of `rate` messages/s: one per 2,500 messages/s.
fn smpp_binds(rate: u32) -> usize {
    (rate as usize).div_ceil(2_500).max(1)
}

/// verifyd on `database` with `route` as its only route.
fn start_verifyd(database: &Database, directory: &Path, route: &Route) -> Process {
    let config = directory.join("verifyd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\ndata_dir = \"{}\"\n{}\
             [abuse.pumping]\nlevel = \"off\"\n{}",
            database.url,
            directory.display(),
            route.config(directory),
            std::env::var("VERIFYD_BENCH_EXTRA")
                .unwrap_or_default()
                .replace("\\n", "\n"),
        ),
    )
    .expect("config");
    // Each start writes a log of its own (with VERIFYD_BENCH_DIR set, they stay there).
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let start_number = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let log =
        std::fs::File::create(directory.join(format!("verifyd-{start_number}.log"))).expect("log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_verifyd"));
    command
        .arg("--config")
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .envs(std::env::var("VERIFYD_BENCH_LOG").map(|filter| ("RUST_LOG", filter)))
        .stderr(log);
    start(command, "verifyd listening on ")
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Writes `count` recipients as the CSV `verifyctl campaign create` reads.
fn write_list(path: &Path, count: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("list"));
    writeln!(out, "to,locale,name,link").expect("write");
    for (index, r) in recipients(count, 20_261_207, &[]).iter().enumerate() {
        writeln!(
            out,
            "{},{},Customer {},https://example.com/r/{index:08x}",
            r.number,
            r.locale,
            index + 1
        )
        .expect("write");
    }
}

fn spec(name: &str, start_in: Duration) -> CampaignSpec {
    let start = std::time::SystemTime::now() + start_in;
    let seconds = start
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    CampaignSpec {
        name: name.into(),
        category: MessageCategory::Alert as i32,
        bodies: [(
            "en".to_string(),
            "Hi {name}, we reset your password. If it was not you: {link}".to_string(),
        )]
        .into(),
        default_locale: "en".into(),
        variable_names: vec!["name".into(), "link".into()],
        start_time: (start_in > Duration::ZERO).then_some(Timestamp { seconds, nanos: 0 }),
        ..CampaignSpec::default()
    }
}

/// Reads the CSV at `path` and streams it to CreateCampaign in chunks, as verifyctl does.
async fn create_from(client: &VerifyClient, path: &Path, spec: CampaignSpec) -> (String, u64) {
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let path = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let mut csv = csv::Reader::from_path(&path).expect("list");
        let mut record = csv::StringRecord::new();
        let mut chunk = Vec::with_capacity(CHUNK);
        while csv.read_record(&mut record).expect("record") {
            chunk.push(CampaignRecipient {
                line: record.position().map_or(0, |p| p.line()),
                to: record[0].to_string(),
                locale: record[1].to_string(),
                values: vec![record[2].to_string(), record[3].to_string()],
            });
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if sender
                    .blocking_send(CampaignRecipients {
                        recipients: full,
                        region_hint: String::new(),
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
        let _ = sender.blocking_send(CampaignRecipients {
            recipients: chunk,
            region_hint: String::new(),
        });
    });
    let created = client
        .create_campaign(spec, tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("create campaign");
    reader.await.expect("reader");
    let campaign = created.campaign.expect("campaign");
    (campaign.id, campaign.accepted)
}

/// Bytes the database holds now.
async fn database_bytes(database: &Database) -> u64 {
    match &database.postgres {
        None => {
            let path = database.url.trim_start_matches("sqlite://");
            ["", "-wal", "-shm"]
                .iter()
                .filter_map(|suffix| {
                    std::fs::metadata(format!("{path}{suffix}"))
                        .ok()
                        .map(|m| m.len())
                })
                .sum()
        }
        Some(_) => {
            let mut connection = sqlx::PgConnection::connect(&database.url)
                .await
                .expect("connect");
            let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut connection)
                .await
                .expect("size");
            size as u64
        }
    }
}

/// Stores `count` recipients of a list through verifyd; returns (seconds, peak RSS MiB,
/// bytes per million recipients).
async fn ingest(
    database: &Database,
    directory: &Path,
    list: &Path,
    count: usize,
) -> (f64, f64, f64) {
    let server = start_verifyd(database, directory, &Route::Sim(None));
    let client = VerifyClient::connect(server.address.clone())
        .await
        .expect("connect");
    let before = database_bytes(database).await;
    let started = Instant::now();
    let (_, accepted) = create_from(&client, list, spec("ingest", Duration::from_secs(3600))).await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(accepted as usize, count, "every recipient accepted");
    let rss = peak_rss_mib(server.child.id());
    let after = database_bytes(database).await;
    let per_million = (after.saturating_sub(before)) as f64 * 1_000_000.0 / count as f64;
    (seconds, rss, per_million)
}

/// The database's own rate for the recipients' rows: the same table and indexes, filled by a
/// bare client in transactions of 2,000 rows. Rows per second.
async fn raw_insert_rate(database: &Database, directory: &Path, count: usize) -> f64 {
    let rows: Vec<(String, String)> = recipients(count, 20_261_207, &[])
        .into_iter()
        .map(|r| (r.number, r.region.to_string()))
        .collect();
    let schema = "CREATE TABLE raw_recipients (campaign_id TEXT NOT NULL, line BIGINT NOT NULL, \
        to_e164 TEXT NOT NULL, region_code TEXT NOT NULL, channel TEXT NOT NULL, route TEXT NOT NULL, \
        locale TEXT NOT NULL, vars TEXT NOT NULL, state TEXT NOT NULL, not_before_ms BIGINT NOT NULL, \
        detail TEXT NOT NULL, message_id TEXT, confirmed_at_ms BIGINT, PRIMARY KEY (campaign_id, line))";
    let indexes = [
        "CREATE INDEX raw_due ON raw_recipients (campaign_id, route, not_before_ms, line) WHERE state = 'pending'",
        "CREATE UNIQUE INDEX raw_number ON raw_recipients (campaign_id, to_e164)",
    ];
    let started;
    match &database.postgres {
        None => {
            let path = directory.join("raw.db");
            let _ = std::fs::remove_file(&path);
            let mut db = rusqlite::Connection::open(&path).expect("open");
            db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
                .expect("pragmas");
            db.execute_batch(&format!("{schema} WITHOUT ROWID;"))
                .expect("schema");
            for index in indexes {
                db.execute_batch(index).expect("index");
            }
            started = Instant::now();
            for (chunk_index, chunk) in rows.chunks(CHUNK).enumerate() {
                let tx = db.transaction().expect("tx");
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO raw_recipients VALUES (?1, ?2, ?3, ?4, 'sms', 'sim', 'en', ?5, 'pending', 0, '', NULL, NULL)",
                        )
                        .expect("prepare");
                    for (i, (number, _region)) in chunk.iter().enumerate() {
                        let line = (chunk_index * CHUNK + i) as i64;
                        insert
                            .execute(rusqlite::params![
                                "cmp_raw",
                                line,
                                number,
                                "GB",
                                "[\"Customer\",\"https://example.com/r/00000000\"]"
                            ])
                            .expect("insert");
                    }
                }
                tx.commit().expect("commit");
            }
        }
        Some(_) => {
            let mut connection = sqlx::PgConnection::connect(&database.url)
                .await
                .expect("connect");
            sqlx::raw_sql(sqlx::AssertSqlSafe(schema.to_string()))
                .execute(&mut connection)
                .await
                .expect("schema");
            for index in indexes {
                sqlx::raw_sql(sqlx::AssertSqlSafe(index.to_string()))
                    .execute(&mut connection)
                    .await
                    .expect("index");
            }
            started = Instant::now();
            for (chunk_index, chunk) in rows.chunks(CHUNK).enumerate() {
                let mut tx = connection.begin().await.expect("tx");
                for (part_index, part) in chunk.chunks(CHUNK / 2).enumerate() {
                    let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                        "INSERT INTO raw_recipients (campaign_id, line, to_e164, region_code, channel, route, locale, vars, state, not_before_ms, detail) ",
                    );
                    builder.push_values(
                        part.iter().enumerate(),
                        |mut row, (i, (number, region))| {
                            let line = (chunk_index * CHUNK + part_index * (CHUNK / 2) + i) as i64;
                            row.push_bind("cmp_raw")
                                .push_bind(line)
                                .push_bind(number.clone())
                                .push_bind(region.clone())
                                .push_bind("sms")
                                .push_bind("sim")
                                .push_bind("en")
                                .push_bind("[\"Customer\",\"https://example.com/r/00000000\"]")
                                .push_bind("pending")
                                .push_bind(0i64)
                                .push_bind("");
                        },
                    );
                    builder.build().execute(&mut *tx).await.expect("insert");
                }
                tx.commit().await.expect("commit");
            }
        }
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Sends a campaign of `seconds` × `rate` recipients through `route` (of `rate` messages/s);
/// returns the messages/s from the first hand-over to the last.
async fn dispatch(
    database: &Database,
    directory: &Path,
    route: &Route<'_>,
    rate: u32,
    seconds: u32,
) -> f64 {
    let server = start_verifyd(database, directory, route);
    let client = VerifyClient::connect(server.address.clone())
        .await
        .expect("connect");
    let count = (rate * seconds) as usize;
    let list = directory.join(format!("dispatch-{rate}.csv"));
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&list).expect("list"));
        writeln!(out, "to,locale,name,link").expect("write");
        for (index, r) in recipients(count, u64::from(rate), &["GB", "DE", "FR"])
            .iter()
            .enumerate()
        {
            writeln!(
                out,
                "{},{},Customer {index},https://example.com/r/{index}",
                r.number, r.locale
            )
            .expect("write");
        }
    }
    let outbox = directory.join("outbox.jsonl");
    let _ = std::fs::remove_file(&outbox);
    // What reached the carrier: the sim carrier writes a line per message it took, the SMSC
    // an event per submit_sm.
    let mut offset = 0u64;
    let smsc_before = match route {
        Route::Smpp { smsc, .. } => smsc.count_named("submit"),
        Route::Sim(_) => 0,
    };
    let mut handed_over = || match route {
        Route::Sim(_) => new_lines(&outbox, &mut offset),
        Route::Smpp { smsc, .. } => {
            let total = smsc.count_named("submit") - smsc_before;
            let new = total - offset as usize;
            offset = total as u64;
            new
        }
    };
    let (id, _) = create_from(&client, &list, spec("dispatch", Duration::ZERO)).await;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut handed = 0usize;
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds) * 10 + 60);
    while Instant::now() < deadline && handed < count {
        let new = handed_over();
        if new > 0 {
            first.get_or_insert_with(Instant::now);
            handed += new;
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.cancel_campaign(&id).await;
    let elapsed = last.duration_since(first.unwrap_or(last)).as_secs_f64();
    // The first lines came up to one poll after the first message went.
    handed as f64 / (elapsed + 0.02)
}

/// Newlines in `path` after `offset`, moving `offset` to its end.
fn new_lines(path: &Path, offset: &mut u64) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return 0;
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return 0;
    }
    // Only whole lines: a line being written is counted the next time.
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return 0;
    };
    *offset += end as u64 + 1;
    bytes[..=end].iter().filter(|&&b| b == b'\n').count()
}

/// The value after `--name` on the command line.
fn option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dispatch_only = std::env::args().any(|a| a == "--dispatch-only");
    let only_database = option("--database").map(|d| d.to_lowercase());
    let chosen_rates: Option<Vec<u32>> = option("--rates").map(|list| {
        list.split(',')
            .map(|r| {
                r.trim()
                    .parse()
                    .expect("--rates: messages/s, comma-separated")
            })
            .collect()
    });
    let (small, large) = if quick {
        (20_000, 100_000)
    } else {
        (200_000, 1_000_000)
    };
    let (rates, seconds): (&[u32], u32) = if quick {
        (&[1_000, 5_000], 5)
    } else {
        (&[1_000, 5_000, 10_000], 10)
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let directory = match std::env::var_os("VERIFYD_BENCH_DIR") {
            Some(parent) => tempfile::Builder::new()
                .prefix("campaigns-")
                .disable_cleanup(true)
                .tempdir_in(parent)
                .expect("temp dir"),
            None => tempfile::tempdir().expect("temp dir"),
        };
        let list_small = directory.path().join("small.csv");
        let list_large = directory.path().join("large.csv");
        if !dispatch_only {
            write_list(&list_small, small);
            write_list(&list_large, large);
        }
        let kinds: Vec<&str> = kinds()
            .await
            .into_iter()
            .filter(|kind| {
                only_database
                    .as_deref()
                    .is_none_or(|only| kind.to_lowercase() == only)
            })
            .collect();
        let ingest_kinds: &[&str] = if dispatch_only { &[] } else { &kinds };
        if !dispatch_only {
            println!("campaigns: {large} recipients across ten countries\n");
        }
        for &kind in ingest_kinds {
            let database = fresh(kind, directory.path(), "ingest_small").await;
            let (_, rss_small, _) = ingest(&database, directory.path(), &list_small, small).await;
            drop(&database).await;
            let database = fresh(kind, directory.path(), "ingest_large").await;
            let (seconds, rss, per_million) =
                ingest(&database, directory.path(), &list_large, large).await;
            drop(&database).await;
            let raw_database = fresh(kind, directory.path(), "raw").await;
            let raw = raw_insert_rate(&raw_database, directory.path(), large).await;
            drop(&raw_database).await;
            let rate = large as f64 / seconds;
            println!(
                "{kind:<10} ingest: {large} recipients in {seconds:.1} s = {rate:.0}/s; the database alone: {raw:.0} rows/s (ratio {:.2}); \
                 verifyd peak RSS {rss_small:.0} MiB for {small}, {rss:.0} MiB for {large}; database growth {:.0} MiB per million recipients",
                rate / raw,
                per_million / 1_048_576.0
            );
        }
        println!();
        for &rate in chosen_rates.as_deref().unwrap_or(rates) {
            for &kind in &kinds {
                let database = fresh(kind, directory.path(), &format!("dispatch{rate}")).await;
                let achieved =
                    dispatch(&database, directory.path(), &Route::Sim(Some(rate)), rate, seconds)
                        .await;
                drop(&database).await;
                println!(
                    "{kind:<10} dispatch (sim):  route capacity {rate}/s, campaign sent at {achieved:.0}/s (ratio {:.2})",
                    achieved / f64::from(rate)
                );
                let smsc = match TestSmsc::start(serde_json::json!({})) {
                    Ok(smsc) => smsc,
                    Err(error) => {
                        println!("{kind:<10} dispatch (SMPP): skipped, no local SMSC: {error}");
                        continue;
                    }
                };
                let database = fresh(kind, directory.path(), &format!("smpp{rate}")).await;
                let route = Route::Smpp { smsc: &smsc, rate };
                let achieved = dispatch(&database, directory.path(), &route, rate, seconds).await;
                drop(&database).await;
                println!(
                    "{kind:<10} dispatch (SMPP): route capacity {rate}/s over {} bind(s), campaign sent at {achieved:.0}/s (ratio {:.2})",
                    smpp_binds(rate),
                    achieved / f64::from(rate)
                );
            }
        }
    });
}
