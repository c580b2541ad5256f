//! The dashboard through the real binary and a real browser: `verifyctl simulate` plays people in
//! Great Britain and Honduras against two sim carriers (Honduras loses half its SMS and half its
//! calls), then headless Chromium opens `/dashboard` with the admin key as HTTP Basic's password.
//! The page must show Honduras converting worse than Great Britain, with the same figures as
//! `verifyctl stats` and GetConversionStats, draw its charts with the embedded uPlot, list the
//! fallback calls and the routes, receive a live event, and load nothing from anywhere else.
//! The screenshot is kept at `target/test-artifacts/dashboard.png`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use verify_client::proto::v1::{GetConversionStatsRequest, StatsDimension};
use verify_client::{VerifyClient, VerifyOptions};
use verify_e2e::{Backend, TestServer, operator_config, tool, unique_mobile, workspace_root};

const ADMIN_KEY: &str = "ops-key-1a2b3c";
const SHOP_KEY: &str = "shop-key-4d5e6f";
const PEOPLE: u64 = 120;

fn config() -> String {
    operator_config(ADMIN_KEY, SHOP_KEY)
        + r#"
[[carriers]]
name = "sim"
kind = "sim"
channels = ["sms"]
delivery_probability = 0.99
latency_ms = 300

[carriers.countries.HN]
delivery_probability = 0.45
latency_ms = 1500

[[carriers]]
name = "sim-voice"
kind = "sim"
channels = ["voice"]
delivery_probability = 0.95
latency_ms = 1000

[carriers.countries.HN]
delivery_probability = 0.45
latency_ms = 2000

[routes]
default = [{ carrier = "sim", cost = 0.04 }, { carrier = "sim-voice", cost = 0.09 }]

[fallback.countries.HN]
strategy = "ordered"
workflow = "sms(4s) -> voice(60s)"
"#
}

/// What `tests/browser/dashboard.js` reports of the page.
#[derive(Debug, serde::Deserialize)]
struct PageReport {
    status: u16,
    title: String,
    countries: Vec<CountryRow>,
    tiles: HashMap<String, String>,
    charts: Vec<ChartReport>,
    fallback: Vec<Vec<String>>,
    routes: Vec<Vec<String>>,
    events: Vec<EventRow>,
    requests: Vec<String>,
    console: Vec<String>,
    page_errors: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct CountryRow {
    country: String,
    conversion_rate: Option<f64>,
    cells: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct ChartReport {
    id: String,
    canvas: usize,
    series: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct EventRow {
    event: String,
    cells: Vec<String>,
}

/// `verifyctl stats`'s table as rows of cells keyed by their first `key_columns` cells.
fn table(printed: &str, key_columns: usize) -> HashMap<String, Vec<String>> {
    let mut lines = printed.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(header[0], "country", "{printed}");
    lines
        .filter(|line| !line.starts_with("total") && !line.starts_with("verifications created"))
        .map(|line| {
            let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            (cells[..key_columns].join(" "), cells)
        })
        .collect()
}

/// Waits until every simulated person's verification is counted and no message waits.
async fn settled(admin: &VerifyClient) {
    let started = Instant::now();
    loop {
        let total = admin
            .conversion_stats(GetConversionStatsRequest::default())
            .await
            .unwrap()
            .total
            .unwrap();
        if total.verifications == PEOPLE && total.delivered + total.failed == total.sent {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "statistics stuck at {total:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_honduras_converting_worse_than_great_britain() {
    let server = TestServer::start_with_config(Backend::Sqlite, config()).await;
    let base = format!(
        "http://{}",
        server.callbacks_address.expect("the HTTP listener")
    );
    let http = verify_carrier::http_client(Duration::from_secs(10)).unwrap();

    // Without a key the browser is asked for one; a service's key is not enough.
    let refused = http.get(format!("{base}/dashboard")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        r#"Basic realm="verifyd", charset="UTF-8""#
    );
    let refused = http
        .get(format!("{base}/dashboard/api/stats"))
        .basic_auth("shop", Some(SHOP_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("API key `shop-backend` belongs to a service")
    );
    let bad = http
        .get(format!("{base}/dashboard/api/stats?by=planet"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.text().await.unwrap(),
        r#"{"field":"by","error":"`planet` is not one of country, carrier, channel, service, day, hour"}"#
    );

    // Simulated people verify their numbers; some Hondurans never get a code.
    let outbox = server.outbox.display().to_string();
    let simulated = server.verifyctl(&[
        "simulate",
        "--api-key",
        ADMIN_KEY,
        "--count",
        &PEOPLE.to_string(),
        "--country",
        "GB,HN",
        "--concurrency",
        "40",
        "--give-up-after",
        "8",
        "--outbox",
        &outbox,
    ]);
    println!("{simulated}");
    let admin = server.client().await.with_api_key(ADMIN_KEY).unwrap();
    settled(&admin).await;
    let by_country = server.verifyctl(&["stats", "--api-key", ADMIN_KEY, "--by", "country"]);
    let by_country_channel =
        server.verifyctl(&["stats", "--api-key", ADMIN_KEY, "--by", "country,channel"]);
    println!("{by_country}\n{by_country_channel}");
    let stats = admin
        .conversion_stats(GetConversionStatsRequest {
            group_by: vec![StatsDimension::Country as i32],
            ..Default::default()
        })
        .await
        .unwrap();

    // The browser: log in, wait for the figures, see a live event arrive.
    let screenshot = workspace_root().join("target/test-artifacts/dashboard.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let mut browser = Command::new("node")
        .arg(workspace_root().join("tests/browser/dashboard.js"))
        .arg(format!("{base}/dashboard"))
        .arg(ADMIN_KEY)
        .arg(&screenshot)
        .env("NODE_PATH", tool("node_path", ".tools/npm/node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (Node.js is needed for the browser test)");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let first = lines.next();
        (first, lines)
    });
    let (first, lines) = tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .expect("the page did not load in 2 minutes")
        .unwrap();
    let first = first.map(Result::unwrap).unwrap_or_default();
    if !first.starts_with("READY ") {
        let output = browser.wait_with_output().unwrap();
        panic!(
            "the browser script failed before the page was ready: {first}\n{}\n\
             (it needs Chromium: apt-get install chromium, or VERIFYD_TEST_CHROMIUM; and \
             playwright-core, which scripts/test installs)",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let number = unique_mobile();
    let live = admin
        .verify(VerifyOptions::new(&number))
        .await
        .unwrap()
        .verification
        .unwrap();
    let rest: Vec<String> =
        tokio::task::spawn_blocking(move || lines.map(Result::unwrap).collect())
            .await
            .unwrap();
    let output = browser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the browser script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report_line = rest.last().expect("the page's report");
    let page: PageReport = serde_json::from_str(report_line).expect("the report's JSON");
    println!("screenshot: {}", screenshot.display());

    assert_eq!(page.status, 200);
    assert_eq!(page.title, "verifyd dashboard");
    assert!(page.page_errors.is_empty(), "{:?}", page.page_errors);
    assert!(
        page.console.is_empty(),
        "console messages (errors, CSP violations): {:?}",
        page.console
    );
    for request in &page.requests {
        assert!(
            request.starts_with(&base),
            "the page loaded {request} from elsewhere than {base}"
        );
    }
    assert!(
        page.requests
            .iter()
            .any(|r| r.ends_with("/dashboard/assets/uPlot.iife.min.js"))
    );

    // Honduras converts worse, and the page says what the API and verifyctl say.
    let row = |country: &str| {
        page.countries
            .iter()
            .find(|row| row.country == country)
            .unwrap_or_else(|| panic!("no row for {country}: {:?}", page.countries))
    };
    let (gb, hn) = (row("GB"), row("HN"));
    assert!(
        hn.conversion_rate.unwrap() < gb.conversion_rate.unwrap(),
        "HN {hn:?} GB {gb:?}"
    );
    assert_eq!(page.countries[0].country, "HN", "worst conversion first");
    let printed = table(&by_country, 1);
    for country in [gb, hn] {
        let api = stats
            .rows
            .iter()
            .find(|r| r.region_code == country.country)
            .unwrap();
        // serde_json reads floats to within one unit in the last place.
        let shown = country.conversion_rate.unwrap();
        assert!(
            (shown - api.conversion_rate).abs() < 1e-12,
            "page {shown} API {}",
            api.conversion_rate
        );
        let cli = &printed[&country.country];
        // country verifications approved conversion sent delivered failed delivery
        assert_eq!(
            country.cells[..8]
                .iter()
                .map(|cell| cell.replace(',', ""))
                .collect::<Vec<_>>(),
            cli[..8],
            "page {:?} verifyctl {cli:?}",
            country.cells
        );
    }
    assert_eq!(
        page.tiles["verifications"],
        PEOPLE.to_string(),
        "{:?}",
        page.tiles
    );

    // The Honduran calls after failed SMS, as verifyctl counts them.
    let printed = table(&by_country_channel, 2);
    let calls = &printed["HN voice"];
    let fallback = page
        .fallback
        .iter()
        .find(|cells| cells[0] == "HN" && cells[1] == "voice")
        .unwrap_or_else(|| panic!("no fallback row for HN voice: {:?}", page.fallback));
    // country channel ... fallback yield cost: the fallback count and yield are the last but two
    let yield_column = calls.len() - 2;
    assert_eq!(fallback[2], calls[yield_column - 1], "{calls:?}");
    assert_eq!(fallback[4], calls[yield_column], "{calls:?}");

    // Charts drawn by uPlot, one line per carrier or channel.
    let chart = |id: &str| {
        page.charts
            .iter()
            .find(|chart| chart.id == id)
            .unwrap_or_else(|| panic!("no chart {id}: {:?}", page.charts))
    };
    for chart in &page.charts {
        assert_eq!(chart.canvas, 1, "{chart:?}");
    }
    assert_eq!(chart("chart-carrier-delivery").series, ["sim", "sim-voice"]);
    assert_eq!(chart("chart-channel-sent").series, ["sms", "voice"]);
    assert_eq!(chart("chart-carrier-conversion").series, ["sim"]);

    // Routes with their breakers; the live event of the Verify made while the page was open.
    assert!(
        page.routes
            .iter()
            .any(|cells| cells[..4] == ["sim", "HN", "sms", "closed"]),
        "{:?}",
        page.routes
    );
    assert!(
        page.events
            .iter()
            .any(|e| e.event == "verification_created" && e.cells[2] == live.id),
        "{:?}",
        page.events.first()
    );
    let digits = number.trim_start_matches('+');
    assert!(
        !report_line.contains(digits),
        "the page shows a whole number"
    );
    let size = std::fs::metadata(&screenshot).unwrap().len();
    assert!(size > 20_000, "screenshot of {size} bytes");
}
