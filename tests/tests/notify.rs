//! Country rules end to end through Notify, on a fixed clock (`[debug] clock_start`): India's
//! quiet hours and DLT registration, the US TCPA hours in each recipient's own zone and its
//! sender rules. Each decision is checked in the response and on the event stream.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use verify_client::proto::v1::{
    Event, EventType, MessageCategory, NotificationStatus, PolicyAction,
};
use verify_client::{ClientError, NotifyOptions, VerifyClient};
use verify_e2e::{Backend, TestServer, on_both_backends};

on_both_backends!(
    india_defers_marketing_at_night_sends_alerts_and_requires_dlt,
    a_deferred_message_is_sent_when_the_window_opens_even_after_a_restart,
    united_states_hours_follow_each_recipients_zone,
);

/// A program registered on India's DLT, and one that registered its entity but no templates.
const PROGRAMS: &str = r#"
[[programs]]
id = "shop"
[programs.registrations.IN]
entity_id = "1101234567890123456"
senders = ["SHOPIN"]
templates = { MARKETING = "1107000000000000001", ALERT = "1107000000000000002", OTP = "1107000000000000003" }

[[programs]]
id = "bare"
[programs.registrations.IN]
entity_id = "1101234567890123456"
senders = ["SHOPIN"]
"#;

fn config(clock_start: &str) -> String {
    format!("[debug]\nclock_start = \"{clock_start}\"\n{PROGRAMS}")
}

fn notify(to: &str, category: MessageCategory, program: &str, sender: &str) -> NotifyOptions {
    NotifyOptions {
        program_id: Some(program.into()),
        sender: Some(sender.into()),
        ..NotifyOptions::new(to, category, "Winter sale: 20% off until Sunday.")
    }
}

async fn connect(server: &TestServer) -> VerifyClient {
    VerifyClient::connect(server.url()).await.expect("connect")
}

/// The gRPC code and message of a refused call.
fn refusal(error: &ClientError) -> (Code, &str) {
    let status = error.status().expect("a gRPC status");
    (status.code(), status.message())
}

/// Events of one notification until one of type `wanted` arrives (10 s at most).
async fn notification_events_until(
    server: &TestServer,
    notification_id: &str,
    wanted: EventType,
) -> Vec<Event> {
    let client = connect(server).await;
    let mut stream = client
        .watch_notification(notification_id, 0)
        .await
        .expect("watch");
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} within 10 s; saw {seen:?}"))
            .expect("stream open")
            .expect("stream");
        assert_eq!(event.notification_id, notification_id);
        assert!(event.verification_id.is_empty());
        let done = event.r#type() == wanted;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// India at 22:00 IST: marketing waits for 09:00 IST, an outage alert goes now with its DLT
/// entity and template IDs, and a program without the template ID is refused naming the rule.
async fn india_defers_marketing_at_night_sends_alerts_and_requires_dlt(backend: Backend) {
    // 16:30 UTC is 22:00 in India.
    let server = TestServer::start_with_config(backend, config("2026-11-25T16:30:00Z")).await;
    let client = connect(&server).await;

    let marketing = client
        .notify(notify(
            "+91 98123 45678",
            MessageCategory::Marketing,
            "shop",
            "SHOPIN",
        ))
        .await
        .expect("notify");
    let decision = marketing.decision.unwrap();
    assert_eq!(decision.action(), PolicyAction::Defer);
    assert_eq!(decision.rule_id, "IN.trai.marketing_hours");
    assert!(
        decision.rule_source.contains("TRAI"),
        "{}",
        decision.rule_source
    );
    assert_eq!(
        decision.send_at.unwrap().seconds,
        1_795_663_800,
        "09:00 IST next morning"
    );
    assert!(
        decision.explanation.contains("22:00"),
        "{}",
        decision.explanation
    );
    let notification = marketing.notification.unwrap();
    assert_eq!(notification.status(), NotificationStatus::Scheduled);
    let seen =
        notification_events_until(&server, &notification.id, EventType::NotificationScheduled)
            .await;
    assert!(
        seen.last()
            .unwrap()
            .detail
            .contains("IN.trai.marketing_hours")
    );

    let alert = client
        .notify(NotifyOptions {
            body: "Outage: payments are down; we are on it.".into(),
            ..notify("+91 98765 43210", MessageCategory::Alert, "shop", "SHOPIN")
        })
        .await
        .expect("notify");
    assert_eq!(alert.decision.unwrap().action(), PolicyAction::SendNow);
    let id = alert.notification.unwrap().id;
    notification_events_until(&server, &id, EventType::MessageDelivered).await;
    let line = server
        .outbox_lines()
        .into_iter()
        .find(|line| line["verification_id"] == id.as_str())
        .expect("the alert in the outbox");
    assert_eq!(line["attributes"]["dlt_entity_id"], "1101234567890123456");
    assert_eq!(line["attributes"]["dlt_template_id"], "1107000000000000002");
    assert_eq!(line["sender"], "SHOPIN");
    let stored = client.get_notification(&id).await.unwrap();
    assert_eq!(stored.status(), NotificationStatus::Delivered);

    let refused = client
        .notify(NotifyOptions {
            body: "Outage: payments are down.".into(),
            ..notify("+91 98765 43210", MessageCategory::Alert, "bare", "SHOPIN")
        })
        .await
        .expect_err("no DLT template");
    let (code, message) = refusal(&refused);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("IN.dlt.template_required"), "{message}");
    assert!(message.starts_with("template:"), "{message}");
}

/// A marketing message at 08:59:57 IST is held for three seconds, survives a crash of the
/// server, and is sent when the window opens at 09:00.
async fn a_deferred_message_is_sent_when_the_window_opens_even_after_a_restart(backend: Backend) {
    let mut server = TestServer::start_with_config(backend, config("2026-11-26T03:29:57Z")).await;
    let client = connect(&server).await;
    let response = client
        .notify(notify(
            "+91 98123 45678",
            MessageCategory::Marketing,
            "shop",
            "SHOPIN",
        ))
        .await
        .expect("notify");
    assert_eq!(response.decision.unwrap().action(), PolicyAction::Defer);
    let id = response.notification.unwrap().id;
    server.kill();
    server.restart();
    let seen = notification_events_until(&server, &id, EventType::MessageDelivered).await;
    assert!(
        seen.iter()
            .any(|e| e.r#type() == EventType::MessageSubmitted),
        "{seen:?}"
    );
    let line = server
        .outbox_lines()
        .into_iter()
        .find(|line| line["verification_id"] == id.as_str())
        .expect("sent once the window opened");
    assert_eq!(line["attributes"]["dlt_template_id"], "1107000000000000001");
}

/// TCPA: marketing 08:00-21:00 in the recipient's own zone. At 20:30 New York time both a 212
/// and a 415 number get it now; at 21:30 New York time the 212 number waits for 08:00 while
/// the 415 number (18:30) gets it now. An alphanumeric sender is refused for US numbers.
async fn united_states_hours_follow_each_recipients_zone(backend: Backend) {
    let new_york = "+1 212 736 5000";
    let san_francisco = "+1 415 736 3000";
    // 01:30 UTC on 26 November is 20:30 in New York (EST).
    let early = TestServer::start_with_config(backend, config("2026-11-26T01:30:00Z")).await;
    let client = connect(&early).await;
    for to in [new_york, san_francisco] {
        let response = client
            .notify(notify(to, MessageCategory::Marketing, "", "+15017122661"))
            .await
            .expect("notify");
        assert_eq!(
            response.decision.unwrap().action(),
            PolicyAction::SendNow,
            "{to}"
        );
    }
    let refused = client
        .notify(notify(new_york, MessageCategory::Transactional, "", "SHOP"))
        .await
        .expect_err("alphanumeric sender to the US");
    let (code, message) = refusal(&refused);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        message.contains("US.ctia.sender_types") && message.starts_with("sender:"),
        "{message}"
    );
    drop(early);

    // An hour later: 21:30 in New York, 18:30 in San Francisco.
    let late = TestServer::start_with_config(backend, config("2026-11-26T02:30:00Z")).await;
    let client = connect(&late).await;
    let deferred = client
        .notify(notify(
            new_york,
            MessageCategory::Marketing,
            "",
            "+15017122661",
        ))
        .await
        .expect("notify")
        .decision
        .unwrap();
    assert_eq!(deferred.action(), PolicyAction::Defer);
    assert_eq!(deferred.rule_id, "US.tcpa.marketing_hours");
    assert_eq!(
        deferred.send_at.unwrap().seconds,
        1_795_698_000,
        "08:00 EST"
    );
    let sent = client
        .notify(notify(
            san_francisco,
            MessageCategory::Marketing,
            "",
            "+15017122661",
        ))
        .await
        .expect("notify")
        .decision
        .unwrap();
    assert_eq!(sent.action(), PolicyAction::SendNow, "{}", sent.explanation);
}
