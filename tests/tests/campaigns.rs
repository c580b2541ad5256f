//! Campaigns end to end through the real server on both databases: a marketing campaign to
//! ten countries on a fixed clock (India's share waits for its window, everyone else is sent
//! once), a kill -9 in the middle of a run (nobody skipped, nobody sent twice), pause, resume
//! and cancel within a second, a window that closes while the campaign sends, rejected lines,
//! and the events of a campaign on WatchEvents.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::Code;
use verify_client::VerifyClient;
use verify_client::proto::v1::{
    CampaignDimension, CampaignRecipient, CampaignRecipients, CampaignSpec, CampaignStatus,
    CreateCampaignResponse, EventType, GetCampaignResponse, MessageCategory,
};
use verify_e2e::{Backend, TestServer, on_both_backends};
use verify_numbers::engine::recipients::{Recipient, recipients};

on_both_backends!(
    india_waits_for_its_window_and_everyone_else_is_sent_once,
    a_crash_in_the_middle_skips_nobody_and_sends_nobody_twice,
    pause_resume_and_cancel_take_effect_within_a_second,
    a_window_that_closes_holds_the_rest_until_it_opens,
    bad_lines_are_reported_and_a_bad_campaign_is_refused,
);

/// India's DLT registrations for the campaign's program.
const PROGRAMS: &str = r#"
[[programs]]
id = "shop"
[programs.registrations.IN]
entity_id = "1101234567890123456"
senders = ["SHOPIN"]
templates = { MARKETING = "1107000000000000001", ALERT = "1107000000000000002" }
"#;

/// A sim carrier taking `rate` messages a second, delivering everything, and the clock.
fn config(clock_start: &str, rate: u32) -> String {
    format!(
        r#"
[debug]
clock_start = "{clock_start}"

[[carriers]]
name = "sim"
kind = "sim"
channels = ["sms", "voice"]
latency_ms = 20
max_messages_per_second = {rate}

[routes]
default = [{{ carrier = "sim" }}]
{PROGRAMS}"#
    )
}

/// A winter-sale campaign of `category` with India's and the US's own senders.
fn spec(category: MessageCategory) -> CampaignSpec {
    CampaignSpec {
        name: "winter sale".into(),
        category: category as i32,
        program_id: "shop".into(),
        bodies: HashMap::from([
            (
                "en".to_string(),
                "Hi {name}, 20% off until Sunday: {link}".to_string(),
            ),
            ("hi".to_string(), "नमस्ते {name}, 20% छूट: {link}".to_string()),
        ]),
        default_locale: "en".into(),
        variable_names: vec!["name".into(), "link".into()],
        senders_by_region: HashMap::from([
            ("IN".to_string(), "SHOPIN".to_string()),
            ("US".to_string(), "+12125550100".to_string()),
            ("CA".to_string(), "+14165550100".to_string()),
        ]),
        ..CampaignSpec::default()
    }
}

/// `list` as chunks of 500 lines, line numbers from 2 (the first line is a file's header).
fn chunks(list: &[Recipient]) -> Vec<CampaignRecipients> {
    list.chunks(500)
        .enumerate()
        .map(|(chunk, part)| CampaignRecipients {
            recipients: part
                .iter()
                .enumerate()
                .map(|(index, r)| {
                    let line = (chunk * 500 + index) as u64 + 2;
                    CampaignRecipient {
                        line,
                        to: r.number.clone(),
                        locale: r.locale.into(),
                        values: vec![format!("Customer {line}"), format!("https://x.test/{line}")],
                    }
                })
                .collect(),
            region_hint: String::new(),
        })
        .collect()
}

async fn create(
    client: &VerifyClient,
    spec: CampaignSpec,
    list: &[Recipient],
) -> CreateCampaignResponse {
    client
        .create_campaign(spec, tokio_stream::iter(chunks(list)))
        .await
        .expect("create campaign")
}

async fn status(client: &VerifyClient, id: &str) -> GetCampaignResponse {
    client
        .get_campaign(id, &[CampaignDimension::Country])
        .await
        .expect("get campaign")
}

/// Polls the campaign until `done` holds (at most `within`).
async fn until(
    client: &VerifyClient,
    id: &str,
    within: Duration,
    done: impl Fn(&GetCampaignResponse) -> bool,
) -> GetCampaignResponse {
    let started = Instant::now();
    loop {
        let response = status(client, id).await;
        if done(&response) {
            return response;
        }
        assert!(
            started.elapsed() < within,
            "campaign not there within {within:?}: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn campaign_status(response: &GetCampaignResponse) -> CampaignStatus {
    response.campaign.as_ref().unwrap().status()
}

/// The outbox's lines of campaign `id`, by message id, each once (the test fails on a second).
fn sent_once(server: &TestServer, id: &str) -> HashMap<String, serde_json::Value> {
    let mut sent = HashMap::new();
    for line in server.outbox_lines() {
        if line["verification_id"] != id {
            continue;
        }
        let message = line["message_id"].as_str().unwrap().to_string();
        assert!(
            sent.insert(message.clone(), line).is_none(),
            "{message} was sent twice"
        );
    }
    sent
}

/// A Wednesday at 15:45 UTC: every country of the list is inside its marketing window but
/// India (21:15 IST), whose share waits for 09:00 IST; the rest is sent, each recipient once,
/// with its own text and sender; the events of the campaign show its start and its counts by
/// country.
async fn india_waits_for_its_window_and_everyone_else_is_sent_once(backend: Backend) {
    let server = TestServer::start_with_config(backend, config("2026-11-25T15:45:00Z", 500)).await;
    let client = server.client().await;
    let list = recipients(1_000, 11, &[]);
    let by_region: BTreeMap<&str, usize> = list.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.region).or_default() += 1;
        m
    });
    assert_eq!(by_region.len(), 10, "{by_region:?}");
    let created = create(&client, spec(MessageCategory::Marketing), &list).await;
    let campaign = created.campaign.unwrap();
    assert_eq!(campaign.accepted, 1_000, "{:?}", created.rejections);
    assert_eq!(campaign.rejected, 0);
    let india = by_region["IN"] as u64;
    let counts = campaign.counts.unwrap();
    assert_eq!(counts.deferred, india, "{counts:?}");

    let done = until(&client, &campaign.id, Duration::from_secs(60), |r| {
        let counts = r.campaign.as_ref().unwrap().counts.unwrap();
        counts.delivered == 1_000 - india
    })
    .await;
    let total = done.campaign.as_ref().unwrap().counts.unwrap();
    assert_eq!(
        (total.deferred, total.refused, total.failed, total.queued),
        (india, 0, 0, 0),
        "{total:?}"
    );
    for group in &done.groups {
        let counts = group.counts.unwrap();
        let expected = by_region[group.region_code.as_str()] as u64;
        if group.region_code == "IN" {
            assert_eq!(counts.deferred, expected, "{group:?}");
        } else {
            assert_eq!(counts.delivered, expected, "{group:?}");
        }
    }
    // 09:00 IST the next morning.
    let window = done.campaign.as_ref().unwrap().next_window_at.unwrap();
    assert_eq!(window.seconds, 1_795_663_800);
    assert_eq!(campaign_status(&done), CampaignStatus::Running);

    let sent = sent_once(&server, &campaign.id);
    assert_eq!(sent.len() as u64, 1_000 - india);
    let us = sent
        .values()
        .find(|line| line["to"].as_str().unwrap().starts_with("+1212"))
        .expect("a US recipient");
    assert_eq!(us["sender"], "+12125550100");
    assert!(
        us["body"].as_str().unwrap().starts_with("Hi Customer "),
        "{us}"
    );
    assert!(
        sent.values()
            .all(|line| !line["to"].as_str().unwrap().starts_with("+91"))
    );

    let mut events = client.watch_campaign(&campaign.id, 0).await.expect("watch");
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    assert_eq!(first.r#type(), EventType::CampaignStarted);
    assert_eq!(first.campaign_id, campaign.id);
    assert!(first.detail.contains("IN "), "{}", first.detail);
    let mut delivered = 0;
    while delivered < 10 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("events")
            .unwrap()
            .unwrap();
        assert_eq!(event.campaign_id, campaign.id);
        if event.r#type() == EventType::MessageDelivered {
            delivered += 1;
        }
    }
}

/// kill -9 while the campaign sends: after the restart it completes, every recipient at the
/// carrier exactly once.
async fn a_crash_in_the_middle_skips_nobody_and_sends_nobody_twice(backend: Backend) {
    let mut server =
        TestServer::start_with_config(backend, config("2026-11-25T15:45:00Z", 300)).await;
    let client = server.client().await;
    let list = recipients(1_500, 12, &["GB", "DE", "FR", "US", "BR"]);
    let created = create(&client, spec(MessageCategory::Alert), &list).await;
    let id = created.campaign.unwrap().id;
    until(&client, &id, Duration::from_secs(30), |r| {
        r.campaign.as_ref().unwrap().counts.unwrap().delivered >= 300
    })
    .await;
    server.kill();
    let before = sent_once(&server, &id).len();
    assert!(before < 1_500, "the crash came too late: {before} sent");
    server.restart();
    let client = server.client().await;
    let done = until(&client, &id, Duration::from_secs(60), |r| {
        campaign_status(r) == CampaignStatus::Completed
    })
    .await;
    let counts = done.campaign.as_ref().unwrap().counts.unwrap();
    // A message being handed over when the process died may have reached the carrier: it is
    // maybe sent, never sent again. One the simulator accepted just before it died has no
    // receipt (the simulator's receipts die with the process): it stays sent. Every other
    // one is delivered.
    assert_eq!(
        counts.delivered + counts.sent + counts.maybe_sent,
        1_500,
        "{counts:?}"
    );
    assert!(counts.sent + counts.maybe_sent < 100, "{counts:?}");
    // The simulator writes its outbox line when it delivers, then reports the receipt: a line
    // whose receipt died with the process belongs to a message still counted as sent, or maybe
    // sent (the simulator took it, and the process died before that was recorded).
    let sent = sent_once(&server, &id);
    assert!(
        (counts.delivered..=counts.delivered + counts.sent + counts.maybe_sent)
            .contains(&(sent.len() as u64)),
        "{} at the carrier; {counts:?}",
        sent.len()
    );
    let numbers: HashSet<&str> = sent.values().map(|l| l["to"].as_str().unwrap()).collect();
    assert_eq!(numbers.len(), sent.len());
}

/// At 100 messages a second: a pause stops the campaign within a second (what was being
/// handed over may still land), resume goes on, cancel ends it for good.
async fn pause_resume_and_cancel_take_effect_within_a_second(backend: Backend) {
    let server = TestServer::start_with_config(backend, config("2026-11-25T15:45:00Z", 100)).await;
    let client = server.client().await;
    let list = recipients(3_000, 13, &["GB", "DE"]);
    let id = create(&client, spec(MessageCategory::Alert), &list)
        .await
        .campaign
        .unwrap()
        .id;
    until(&client, &id, Duration::from_secs(20), |r| {
        r.campaign.as_ref().unwrap().counts.unwrap().delivered >= 100
    })
    .await;
    let paused = client.pause_campaign(&id).await.expect("pause");
    assert_eq!(paused.status(), CampaignStatus::Paused);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = sent_once(&server, &id).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sent_once(&server, &id).len(), settled, "sent while paused");
    assert_eq!(
        client.pause_campaign(&id).await.unwrap().status(),
        CampaignStatus::Paused
    );
    let resumed = client.resume_campaign(&id).await.expect("resume");
    assert_eq!(resumed.status(), CampaignStatus::Running);
    until(&client, &id, Duration::from_secs(20), |r| {
        r.campaign.as_ref().unwrap().counts.unwrap().delivered >= settled as u64 + 100
    })
    .await;
    let canceled = client.cancel_campaign(&id).await.expect("cancel");
    assert_eq!(canceled.status(), CampaignStatus::Canceled);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_cancel = sent_once(&server, &id).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sent_once(&server, &id).len(),
        at_cancel,
        "sent after cancel"
    );
    let counts = status(&client, &id).await.campaign.unwrap().counts.unwrap();
    assert_eq!(
        counts.delivered + counts.canceled + counts.maybe_sent,
        3_000,
        "{counts:?}"
    );
    assert!(counts.canceled > 1_000, "{counts:?}");
    let refused = client.resume_campaign(&id).await.expect_err("canceled");
    assert_eq!(refused.status().unwrap().code(), Code::FailedPrecondition);
}

/// A marketing campaign to India started at 20:59:57 IST at 50 messages a second: what goes
/// before 21:00 is sent, the rest waits for 09:00 the next morning.
async fn a_window_that_closes_holds_the_rest_until_it_opens(backend: Backend) {
    let server = TestServer::start_with_config(backend, config("2026-11-25T15:29:57Z", 50)).await;
    let client = server.client().await;
    let list = recipients(400, 14, &["IN"]);
    let id = create(&client, spec(MessageCategory::Marketing), &list)
        .await
        .campaign
        .unwrap()
        .id;
    let done = until(&client, &id, Duration::from_secs(30), |r| {
        let counts = r.campaign.as_ref().unwrap().counts.unwrap();
        counts.queued == 0 && counts.sent == 0 && counts.delivered + counts.deferred == 400
    })
    .await;
    let counts = done.campaign.as_ref().unwrap().counts.unwrap();
    assert!(counts.delivered >= 50, "{counts:?}");
    assert!(counts.deferred >= 200, "{counts:?}");
    assert_eq!(
        done.campaign
            .as_ref()
            .unwrap()
            .next_window_at
            .unwrap()
            .seconds,
        1_795_663_800
    );
    assert_eq!(sent_once(&server, &id).len() as u64, counts.delivered);
}

/// Bad lines are reported each with its reason (and all of them by ListCampaignRejections);
/// a campaign whose text names an unknown variable is refused naming the field.
async fn bad_lines_are_reported_and_a_bad_campaign_is_refused(backend: Backend) {
    let server = TestServer::start_with_config(backend, config("2026-11-25T15:45:00Z", 500)).await;
    let client = server.client().await;
    let good = recipients(3, 15, &["GB"]);
    let line = |line: u64, to: &str, values: &[&str]| CampaignRecipient {
        line,
        to: to.into(),
        locale: String::new(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let chunk = CampaignRecipients {
        recipients: vec![
            line(2, &good[0].number, &["Ann", "x"]),
            line(3, "not a number", &["Bob", "x"]),
            line(4, &good[0].number, &["Ann again", "x"]),
            line(5, &good[1].number, &["only one value"]),
            line(6, &good[2].number, &["Cy", "y"]),
        ],
        region_hint: String::new(),
    };
    let created = client
        .create_campaign(spec(MessageCategory::Alert), tokio_stream::iter([chunk]))
        .await
        .expect("create");
    let campaign = created.campaign.unwrap();
    assert_eq!((campaign.accepted, campaign.rejected), (2, 3));
    let reasons: Vec<(u64, &str, &str)> = created
        .rejections
        .iter()
        .map(|r| (r.line, r.field.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(reasons[0].0, 3);
    assert_eq!(reasons[0].1, "to");
    assert!(
        reasons[0].2.starts_with("invalid phone number"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1],
        (
            4,
            "to",
            "the campaign has this number on another line: it is sent once"
        )
    );
    assert_eq!(reasons[2].0, 5);
    assert_eq!(reasons[2].1, "values");
    assert!(
        reasons[2].2.contains("1 values for 2 variables"),
        "{reasons:?}"
    );
    let page = client
        .campaign_rejections(&campaign.id, 2, "")
        .await
        .expect("rejections");
    assert_eq!(page.rejections.len(), 2);
    let rest = client
        .campaign_rejections(&campaign.id, 2, &page.next_page_token)
        .await
        .expect("rejections");
    assert_eq!(rest.rejections.len(), 1);
    assert!(rest.next_page_token.is_empty());

    let mut bad = spec(MessageCategory::Alert);
    bad.bodies
        .insert("en".into(), "Hi {nmae}, see {link}".into());
    let refused = client
        .create_campaign(bad, tokio_stream::iter(Vec::new()))
        .await
        .expect_err("unknown variable");
    let status = refused.status().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("campaign.bodies: the `en` text's `{nmae}` names no variable"),
        "{}",
        status.message()
    );
    let missing = client
        .get_campaign("cmp_nothing", &[])
        .await
        .expect_err("no such campaign");
    assert_eq!(missing.status().unwrap().code(), Code::NotFound);
}
