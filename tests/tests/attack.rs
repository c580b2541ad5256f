//! The pumping guard and the guessing cool-off against simulated attacks, with the defaults
//! that ship (no `[abuse]` configuration), through the real server on both databases:
//!
//! - an SMS pumping bot requesting codes for sequential numbers in 20 prefixes and never
//!   checking, interleaved with honest users in three countries who check the right code most
//!   of the time: the bot is stopped early, no honest request is refused;
//! - a guesser trying wrong codes against one number across verifications: the number is
//!   cooled off, for longer on each repeat, Check included;
//! - geo permissions refusing a country with the setting named.
//!
//! The attack test prints a report (`cargo test -p verify-e2e --test attack -- --nocapture`).

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::Code;
use verify_client::proto::v1::{CheckResult, EventType, MessageCategory, RequestContext};
use verify_client::{NotifyOptions, VerifyClient, VerifyOptions};
use verify_e2e::{Backend, TestServer, on_both_backends, refusal};

on_both_backends!(
    a_pumping_bot_is_stopped_and_honest_users_are_not_refused,
    a_guesser_is_cooled_off_for_longer_each_time,
    geo_permissions_block_a_country_and_say_which_setting,
    notify_meets_blocks_and_the_limits_of_the_client,
);

/// Bot requests, prefixes they walk, and honest requests of the attack test.
const BOT_REQUESTS: usize = 1000;
const BOT_PREFIXES: usize = 20;
const HONEST_REQUESTS: usize = 500;

/// A small deterministic generator (64-bit LCG), so that a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }

    fn ip(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            11 + self.next(180),
            self.next(256),
            self.next(256),
            1 + self.next(254)
        )
    }
}

fn with_ip(to: &str, ip: String) -> VerifyOptions {
    VerifyOptions {
        context: Some(RequestContext {
            client_ip: ip,
            ..RequestContext::default()
        }),
        ..VerifyOptions::new(to)
    }
}

/// The `n`-th number the bot asks for: prefixes 0-9 in Great Britain (+44 7400 9pp kkk), 10-19
/// in Honduras (+504 9pp1 0kkk), each walked from its first number up.
fn bot_number(prefix: usize, k: usize) -> String {
    if prefix < 10 {
        format!("+4474009{:02}{k:03}", 10 + prefix)
    } else {
        format!("+5049{:02}10{k:03}", 10 + prefix)
    }
}

/// An honest user's number: random mobiles in Great Britain, the United States and Honduras,
/// outside the bot's ranges.
fn honest_number(dice: &mut Dice) -> String {
    match dice.next(3) {
        0 => format!("+447400{:06}", dice.next(800_000)),
        1 => {
            // An exchange of 200-999 that is not a service code (N11) or 555.
            let exchange = match 200 + dice.next(800) {
                n if n % 100 == 11 || n == 555 => n + 1,
                n => n,
            };
            format!("+1415{exchange}{:04}", dice.next(10_000))
        }
        _ => format!("+5049{}{:06}", 3 + dice.next(6), dice.next(1_000_000)),
    }
}

async fn a_pumping_bot_is_stopped_and_honest_users_are_not_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = VerifyClient::connect(server.url()).await.expect("connect");
    let mut dice = Dice(0x5eed_0000_0000_0011);
    let started = Instant::now();
    let (mut bot_sent, mut bot_refused) = (0usize, 0usize);
    let (mut honest_sent, mut honest_checked, mut honest_approved) = (0usize, 0usize, 0usize);
    let mut honest_refusals = Vec::new();
    let mut first_refusal = None;
    // Two bot requests, one honest one, in turn: the bot walks its prefixes round-robin.
    let mut bot = 0usize;
    let mut honest = 0usize;
    while bot < BOT_REQUESTS || honest < HONEST_REQUESTS {
        for _ in 0..2 {
            if bot == BOT_REQUESTS {
                break;
            }
            let number = bot_number(bot % BOT_PREFIXES, bot / BOT_PREFIXES);
            bot += 1;
            match client.verify(with_ip(&number, dice.ip())).await {
                Ok(_) => bot_sent += 1,
                Err(error) => {
                    let status = error.status().expect("a gRPC status");
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    bot_refused += 1;
                    first_refusal.get_or_insert_with(|| status.message().to_string());
                }
            }
        }
        if honest == HONEST_REQUESTS {
            continue;
        }
        honest += 1;
        let number = honest_number(&mut dice);
        match client.verify(with_ip(&number, dice.ip())).await {
            Ok(response) => {
                honest_sent += 1;
                // Nine in ten enter the right code.
                if dice.next(10) < 9 {
                    let id = response.verification.unwrap().id;
                    let code = server.code_for(&id).await;
                    honest_checked += 1;
                    let check = client.check_by_id(&id, &code).await.expect("check");
                    if check.result() == CheckResult::Approved {
                        honest_approved += 1;
                    }
                }
            }
            Err(error) => honest_refusals.push(format!("{number}: {error}")),
        }
    }
    let blocks = client.list_blocks(false, 1000).await.expect("list blocks");
    let elapsed = started.elapsed();
    println!(
        "attack test ({backend:?}), defaults, {:.1} s:\n  \
         bot: {BOT_REQUESTS} requests for sequential numbers in {BOT_PREFIXES} prefixes, \
         {bot_sent} codes sent ({:.1}%), {bot_refused} refused\n  \
         honest: {HONEST_REQUESTS} requests in GB, US and HN, {honest_sent} codes sent, \
         {} refused, {honest_checked} checked, {honest_approved} approved\n  \
         blocks in force: {}\n  first refusal: {}",
        elapsed.as_secs_f64(),
        100.0 * bot_sent as f64 / BOT_REQUESTS as f64,
        honest_refusals.len(),
        blocks.len(),
        first_refusal.as_deref().unwrap_or("none"),
    );
    assert!(
        honest_refusals.is_empty(),
        "honest requests refused: {honest_refusals:#?}"
    );
    assert_eq!(honest_approved, honest_checked);
    assert!(
        bot_sent * 20 <= BOT_REQUESTS,
        "{bot_sent} of {BOT_REQUESTS} bot requests sent a code (at most 5%)"
    );
    // One block per bot prefix, each naming its rule; none for an honest user.
    assert_eq!(blocks.len(), BOT_PREFIXES, "{blocks:#?}");
    for block in &blocks {
        assert_eq!(block.target_kind, "number_prefix");
        assert_eq!(block.rule, "sequential-numbers");
        assert!(block.enforced);
        assert!(
            block.target.starts_with("+4474009") || block.target.starts_with("+5049"),
            "{}",
            block.target
        );
    }
    // Each block is an event on the stream.
    let mut events = client.watch(None, 0).await.expect("watch");
    let mut blocked_events = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while blocked_events < BOT_PREFIXES {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .expect("block events")
            .expect("stream open")
            .expect("event");
        if event.r#type() == EventType::DestinationBlocked {
            assert!(event.block_id.starts_with("blk_"), "{event:?}");
            assert!(
                event.detail.contains("sequential-numbers"),
                "{}",
                event.detail
            );
            blocked_events += 1;
        }
    }
    // Lifting a block lets the prefix through again; the bot walking on is blocked again,
    // for twice as long.
    let lifted = client.unblock(&blocks[0].id).await.expect("unblock");
    assert!(lifted.lifted.is_some());
    assert_eq!(lifted.lifted_by, "local");
    let prefix = &blocks[0].target;
    let mut after_lift = Vec::new();
    for k in 0..4 {
        let number = format!("{prefix}{:03}", 900 + k);
        after_lift.push(client.verify(with_ip(&number, dice.ip())).await.is_ok());
    }
    assert_eq!(after_lift, [true, true, false, false]);
    let again = client.list_blocks(false, 1000).await.unwrap();
    let repeat = again
        .iter()
        .find(|block| &block.target == prefix)
        .expect("blocked again");
    assert_eq!(repeat.strike, 2);
    assert!(
        repeat.explanation.contains("30m block (repeat 2)"),
        "{}",
        repeat.explanation
    );
}

async fn a_guesser_is_cooled_off_for_longer_each_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = VerifyClient::connect(server.url()).await.expect("connect");
    let number = "+447400123456";
    // Three wrong codes on a first verification, then canceled; two on the next one: five
    // wrong codes for the number, across verifications.
    let (first_id, _, wrong) = new_code(&server, &client, number).await;
    for _ in 0..3 {
        let check = client.check_by_id(&first_id, wrong).await.unwrap();
        assert_eq!(check.result(), CheckResult::WrongCode);
    }
    client.cancel(&first_id).await.unwrap();
    let (second_id, right, wrong) = new_code(&server, &client, number).await;
    assert_ne!(second_id, first_id);
    for _ in 0..2 {
        let check = client.check_by_id(&second_id, wrong).await.unwrap();
        assert_eq!(check.result(), CheckResult::WrongCode);
    }
    // Cooled off: even the right code is refused until the cool-off ends, and so is a new code.
    let refused = client.check_by_id(&second_id, &right).await.unwrap_err();
    let (code, message, retry, subject) = refusal(&refused);
    assert_eq!(code, Code::ResourceExhausted);
    assert!(
        message.starts_with("number +447*******56 blocked by rule `guessing` (blk_"),
        "{message}"
    );
    assert!(
        message.contains(
            "5 wrong codes checked for this number in the last 1h, across its verifications \
             (at most 4); 1m block"
        ),
        "{message}"
    );
    assert!(
        retry > Duration::from_secs(50) && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    assert!(subject.starts_with("guessing blk_"), "{subject}");
    let (code, ..) = refusal(&client.verify(VerifyOptions::new(number)).await.unwrap_err());
    assert_eq!(code, Code::ResourceExhausted);
    // The operator lifts it; the right code works again.
    let blocks = client.list_blocks(false, 10).await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].target, number);
    assert_eq!(blocks[0].rule, "guessing");
    client.unblock(&blocks[0].id).await.unwrap();
    let check = client.check_by_id(&second_id, &right).await.unwrap();
    assert_eq!(check.result(), CheckResult::Approved);
    // Five more wrong codes: cooled off again, for twice as long.
    let (third_id, right, wrong) = new_code(&server, &client, number).await;
    for n in 0..5 {
        let check = client.check_by_id(&third_id, wrong).await.unwrap();
        assert_eq!(check.result(), CheckResult::WrongCode);
        assert_eq!(check.checks_left, 4 - n);
    }
    let (_, message, retry, _) =
        refusal(&client.verify(VerifyOptions::new(number)).await.unwrap_err());
    assert!(message.contains("2m block (repeat 2)"), "{message}");
    assert!(retry > Duration::from_secs(110), "{retry:?}");
    let all = client.list_blocks(true, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[1].lifted.is_some(), "{all:#?}");
    assert!(
        !server.log().contains(number) && !server.log().contains(&right),
        "numbers are masked and codes never logged"
    );
    // Checks by number of a number with no verification count as wrong codes too: a prober
    // gets five NOT_FOUND answers, then the number is cooled off like any other.
    for _ in 0..5 {
        let status = client
            .check_by_number("+447400765432", "123456")
            .await
            .unwrap_err();
        assert_eq!(status.status().unwrap().code(), Code::NotFound);
    }
    let (code, message, ..) = refusal(
        &client
            .check_by_number("+447400765432", "123456")
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::ResourceExhausted);
    assert!(message.contains("by rule `guessing`"), "{message}");
}

/// A new verification of `number`: its id, its code, and a wrong code.
async fn new_code(
    server: &TestServer,
    client: &VerifyClient,
    number: &str,
) -> (String, String, &'static str) {
    let response = client.verify(VerifyOptions::new(number)).await.unwrap();
    let id = response.verification.unwrap().id;
    let right = server.code_for(&id).await;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    (id, right, wrong)
}

async fn geo_permissions_block_a_country_and_say_which_setting(backend: Backend) {
    let config =
        "[abuse.geo]\nunlisted = \"block\"\ncountries.HN = \"block\"\ncountries.US = \"monitor\"\n";
    let server = TestServer::start_with_config(backend, config).await;
    let client = VerifyClient::connect(server.url()).await.expect("connect");
    let status = client
        .verify(VerifyOptions::new("+504 9123 4567"))
        .await
        .unwrap_err();
    let status = status.status().unwrap();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "to: geo permissions: HN is `block` ([abuse.geo] countries.HN)"
    );
    // A country without rules follows `unlisted`.
    let status = client
        .verify(VerifyOptions::new("+34 612 34 56 78"))
        .await
        .unwrap_err();
    let status = status.status().unwrap();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("has no country rules: `block` ([abuse.geo] unlisted)"),
        "{}",
        status.message()
    );
    // Monitored: sent, and the decision says so.
    let monitored = client
        .verify(VerifyOptions::new("+1 415 736 3000"))
        .await
        .unwrap();
    assert!(
        monitored
            .decision
            .starts_with("geo permissions: US is `monitor` ([abuse.geo] countries.US); "),
        "{}",
        monitored.decision
    );
    client
        .verify(VerifyOptions::new("+447400123456"))
        .await
        .unwrap();
}

async fn notify_meets_blocks_and_the_limits_of_the_client(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = VerifyClient::connect(server.url()).await.expect("connect");
    let alert = |to: &str, ip: &str| NotifyOptions {
        context: Some(RequestContext {
            client_ip: ip.into(),
            ..RequestContext::default()
        }),
        ..NotifyOptions::new(
            to,
            MessageCategory::Alert,
            "Unusual sign-in to your account.",
        )
    };
    // Alerts to neighbouring numbers are not pumping: no code, no guard.
    for k in 0..4 {
        client
            .notify(alert(&format!("+447400555{k:03}"), "198.51.100.1"))
            .await
            .expect("notify");
    }
    // A prefix blocked for codes is blocked for notifications too.
    for k in 0..3 {
        let _ = client
            .verify(VerifyOptions::new(format!("+447400666{k:03}")))
            .await;
    }
    let error = client
        .notify(alert("+447400666500", "198.51.100.2"))
        .await
        .unwrap_err();
    let (code, message, ..) = refusal(&error);
    assert_eq!(code, Code::ResourceExhausted);
    assert!(
        message.starts_with("number_prefix +447400666*** blocked"),
        "{message}"
    );
    // The limit of the client's address counts notifications: 10 an hour.
    for k in 4..10 {
        client
            .notify(alert(&format!("+447400777{k:03}"), "198.51.100.1"))
            .await
            .expect("notify");
    }
    let error = client
        .notify(alert("+447400777999", "198.51.100.1"))
        .await
        .unwrap_err();
    let (code, _, _, subject) = refusal(&error);
    assert_eq!(code, Code::ResourceExhausted);
    assert_eq!(subject, "per-client-ip: client_ip 198.51.100.1");
}
