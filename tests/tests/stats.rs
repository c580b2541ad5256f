//! Conversion statistics through the real binary: Great Britain converts every code, Honduras
//! half of them, some only after the SMS failed and the call went out. GetConversionStats,
//! `verifyctl stats` and grpcurl show the same counts, exactly, after a kill -9 in the middle.

use std::process::Command;
use std::time::{Duration, Instant};

use tonic::Code;
use verify_client::VerifyClient;
use verify_client::proto::v1::{
    Channel, CheckResult, ConversionStats, GetConversionStatsRequest, StatsDimension,
};
use verify_e2e::{Backend, TestServer, on_both_backends, tool, unique_mobile};

on_both_backends!(conversion_is_counted_once_per_country_channel_and_step,);

/// SMS and voice on two simulators; four Honduran numbers' SMS fail, so their call goes at once.
/// Routes declare a cost for SMS only.
const CONFIG: &str = r#"
[[carriers]]
name = "sms"
kind = "sim"
channels = ["sms"]
latency_ms = 20
destinations."+50491234000" = "fail"
destinations."+50491234001" = "fail"
destinations."+50491234002" = "fail"
destinations."+50491234003" = "fail"

[[carriers]]
name = "voice"
kind = "sim"
channels = ["voice"]
latency_ms = 20

[routes]
default = [{ carrier = "sms", cost = 0.05 }, "voice"]
countries.GB = [{ carrier = "sms", cost = 0.04 }, "voice"]

[fallback.countries.HN]
strategy = "ordered"
workflow = "sms(30s) -> voice(60s)"

# Ten neighbouring numbers with codes not approved would be a pumping walk.
[abuse.pumping]
level = "off"
"#;

fn by(dimensions: &[StatsDimension]) -> GetConversionStatsRequest {
    GetConversionStatsRequest {
        group_by: dimensions.iter().map(|&d| d as i32).collect(),
        ..GetConversionStatsRequest::default()
    }
}

/// The counts of a row, without the rates derived from them.
fn counts(stats: &ConversionStats) -> [u64; 7] {
    [
        stats.verifications,
        stats.approved,
        stats.sent,
        stats.delivered,
        stats.failed,
        stats.fallback_sent,
        stats.fallback_approved,
    ]
}

/// Asks until the totals reach `verifications` ended and `delivered` receipts (the rollup
/// follows the event log in the background).
async fn settled(client: &VerifyClient, verifications: u64, delivered: u64) {
    let started = Instant::now();
    loop {
        let total = client
            .conversion_stats(GetConversionStatsRequest::default())
            .await
            .unwrap()
            .total
            .unwrap();
        if total.verifications == verifications && total.delivered + total.failed >= delivered {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "statistics stuck at {total:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn conversion_is_counted_once_per_country_channel_and_step(backend: Backend) {
    let mut server = TestServer::start_with_config(backend, CONFIG).await;
    let client = server.client().await;

    // Great Britain: six codes sent, six approved.
    for _ in 0..6 {
        let id = client
            .verify(verify_client::VerifyOptions::new(unique_mobile()))
            .await
            .unwrap()
            .verification
            .unwrap()
            .id;
        let code = server.code_for(&id).await;
        let checked = client.check_by_id(&id, &code).await.unwrap();
        assert_eq!(checked.result(), CheckResult::Approved);
    }
    settled(&client, 6, 6).await;

    // Killed and started again: what was rolled up stays counted once.
    server.kill();
    server.restart();
    let client = server.client().await;

    // Honduras: ten codes; four SMS fail and are followed by a call at once. Two of the calls
    // and three of the delivered SMS are approved; the rest are canceled.
    for n in 0..10 {
        let to = format!("+5049123400{n}");
        let id = client
            .verify(verify_client::VerifyOptions::new(&to))
            .await
            .unwrap()
            .verification
            .unwrap()
            .id;
        let code = server.code_for(&id).await;
        let approve = matches!(n, 0 | 1 | 4 | 5 | 6);
        if approve {
            let checked = client.check_by_id(&id, &code).await.unwrap();
            assert_eq!(checked.result(), CheckResult::Approved);
        } else {
            client.cancel(&id).await.unwrap();
        }
    }
    settled(&client, 16, 16 + 4).await;

    let by_country = client
        .conversion_stats(GetConversionStatsRequest::default())
        .await
        .unwrap();
    let rows: Vec<(&str, [u64; 7])> = by_country
        .rows
        .iter()
        .map(|row| (row.region_code.as_str(), counts(row)))
        .collect();
    // [verifications, approved, sent, delivered, failed, fallback sent, fallback approved]
    assert_eq!(
        rows,
        [
            ("GB", [6, 6, 6, 6, 0, 0, 0]),
            ("HN", [10, 5, 14, 10, 4, 4, 2])
        ]
    );
    let gb = &by_country.rows[0];
    let hn = &by_country.rows[1];
    assert_eq!(gb.conversion_rate, 1.0);
    assert_eq!(hn.conversion_rate, 0.5);
    assert!((gb.cost - 0.24).abs() < 1e-9, "{}", gb.cost);
    assert!((hn.cost - 0.5).abs() < 1e-9, "{}", hn.cost);
    assert_eq!((gb.sent_without_cost, hn.sent_without_cost), (0, 4));
    assert!(gb.approval_time_p50_ms > 0 && gb.approval_time_p50_ms <= gb.approval_time_p90_ms);
    assert_eq!(
        counts(by_country.total.as_ref().unwrap()),
        [16, 11, 20, 16, 4, 4, 2]
    );

    // By country and channel: the calls are fallback steps, credited with the approvals that
    // came after them; verifications belong to the channel they started on.
    let by_channel = client
        .conversion_stats(by(&[StatsDimension::Country, StatsDimension::Channel]))
        .await
        .unwrap();
    let rows: Vec<(&str, Channel, [u64; 7])> = by_channel
        .rows
        .iter()
        .map(|row| (row.region_code.as_str(), row.channel(), counts(row)))
        .collect();
    assert_eq!(
        rows,
        [
            ("GB", Channel::Sms, [6, 6, 6, 6, 0, 0, 0]),
            ("HN", Channel::Sms, [10, 5, 10, 6, 4, 0, 0]),
            ("HN", Channel::Voice, [0, 0, 4, 4, 0, 4, 2]),
        ]
    );
    assert_eq!(by_channel.rows[2].fallback_yield, 0.5);
    assert!(by_channel.counted_through_cursor > 0);

    // By carrier and day; by hour; filtered to Honduras.
    let by_day = client
        .conversion_stats(by(&[StatsDimension::Day, StatsDimension::Carrier]))
        .await
        .unwrap();
    assert!(by_day.rows.iter().all(|row| row.period_start.is_some()));
    let carriers: Vec<&str> = by_day.rows.iter().map(|r| r.carrier.as_str()).collect();
    assert!(
        carriers.contains(&"sms") && carriers.contains(&"voice"),
        "{carriers:?}"
    );
    let honduras = client
        .conversion_stats(GetConversionStatsRequest {
            region_codes: vec!["hn".into()],
            ..by(&[StatsDimension::Hour])
        })
        .await
        .unwrap();
    assert_eq!(
        counts(honduras.total.as_ref().unwrap()),
        [10, 5, 14, 10, 4, 4, 2]
    );

    // Bad questions name the field.
    let refused = client
        .conversion_stats(by(&[StatsDimension::Day, StatsDimension::Hour]))
        .await
        .unwrap_err();
    let status = refused.status().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "group_by: group by day or by hour, not both"
    );
    let refused = client
        .conversion_stats(GetConversionStatsRequest {
            group_by: vec![0],
            ..GetConversionStatsRequest::default()
        })
        .await
        .unwrap_err();
    assert!(
        refused
            .status()
            .unwrap()
            .message()
            .starts_with("group_by: 0 is not a dimension"),
        "{refused}"
    );

    // verifyctl prints the same figures; grpcurl's empty request answers by country.
    let ctl = |args: &[&str]| server.verifyctl(args);
    let text = ctl(&["stats", "--by", "country,channel"]);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0][..6],
        [
            "country",
            "channel",
            "verifications",
            "approved",
            "conversion",
            "sent"
        ]
    );
    assert_eq!(
        lines[2][..7],
        ["HN", "sms", "10", "5", "50.0%", "10", "6"],
        "{text}"
    );
    assert_eq!(lines[3][..4], ["HN", "voice", "0", "0"], "{text}");
    assert_eq!(lines[3][11..13], ["4", "50.0%"], "{text}");
    assert_eq!(
        lines[4][..5],
        ["total", "16", "11", "68.8%", "20"],
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(ctl(&["--json", "stats", "--last", "24h"]).trim()).unwrap();
    assert_eq!(json["rows"][1]["region_code"], "HN");
    assert_eq!(json["rows"][1]["approved"], "5");

    let grpcurl = tool("grpcurl", ".tools/bin/grpcurl");
    let output = Command::new(grpcurl)
        .args(["-plaintext", "-d", "{}"])
        .arg(server.address.to_string())
        .arg("verify.v1.VerifyService/GetConversionStats")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["rows"][0]["regionCode"], "GB");
    assert_eq!(answer["rows"][1]["conversionRate"], 0.5);
}
