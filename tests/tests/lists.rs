//! Finding things without their ids, through the real binary: a number's latest verification,
//! verifications and notifications listed by service, status, country, number and time a page
//! at a time, a scheduled notification canceled; and the same from verifyctl.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use verify_client::proto::Timestamp;
use verify_client::proto::v1::{
    CheckResult, EventType, ListNotificationsRequest, ListVerificationsRequest, MessageCategory,
    NotificationStatus, PolicyAction, VerificationStatus,
};
use verify_client::{ClientError, NotifyOptions, VerifyClient, VerifyOptions};
use verify_e2e::{Backend, TestServer, binary, on_both_backends, unique_mobile};

on_both_backends!(
    verifications_are_found_by_number_and_listed_by_filters,
    notifications_are_listed_and_a_scheduled_one_canceled,
);

fn code_of(error: ClientError) -> (Code, String) {
    let status = error.status().expect("a gRPC status");
    (status.code(), status.message().to_string())
}

/// Every page of `request`, `page_size` at a time; the ids in order.
async fn all_pages(client: &VerifyClient, mut request: ListVerificationsRequest) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = client.list_verifications(request.clone()).await.unwrap();
        let page_size = if request.page_size == 0 {
            50
        } else {
            request.page_size
        };
        assert!(page.verifications.len() <= page_size as usize);
        ids.extend(page.verifications.into_iter().map(|v| v.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        request.page_token = page.next_page_token;
    }
}

async fn verifications_are_found_by_number_and_listed_by_filters(backend: Backend) {
    let server = TestServer::start_with_config(
        backend,
        "[[services]]\nid = \"acme\"\nfriendly_name = \"Acme\"\n",
    )
    .await;
    let client = server.client().await;
    let verify = |options: VerifyOptions| {
        let client = client.clone();
        async move { client.verify(options).await.unwrap().verification.unwrap() }
    };
    // Five in `default` (four to Great Britain, one to the US), two in `acme`.
    let mut created = Vec::new();
    let mut middle_time = None;
    for n in 0..4 {
        created.push(verify(VerifyOptions::new(unique_mobile())).await);
        if n == 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            middle_time = created.last().unwrap().created_at;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let us = verify(VerifyOptions::new("+1 212 736 5000")).await;
    created.push(us.clone());
    for _ in 0..2 {
        verify(VerifyOptions {
            service_id: Some("acme".into()),
            ..VerifyOptions::new(unique_mobile())
        })
        .await;
    }
    let approved = &created[0];
    let code = server.code_for(&approved.id).await;
    let checked = client.check_by_id(&approved.id, &code).await.unwrap();
    assert_eq!(checked.result(), CheckResult::Approved);

    // The latest verification of a number, by number.
    let latest = client.get_latest(&created[2].to, None).await.unwrap();
    assert_eq!(latest.id, created[2].id);
    let again = verify(VerifyOptions {
        channel: Some(verify_client::proto::v1::Channel::Sms),
        ..VerifyOptions::new(&us.to)
    })
    .await;
    assert_eq!(again.id, us.id, "a resend of the pending one");
    let (code, message) = code_of(
        client
            .get_latest(&created[2].to, Some("acme"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, Code::NotFound);
    assert!(message.starts_with("to: no verification"), "{message}");

    let in_default = |request: ListVerificationsRequest| ListVerificationsRequest {
        service_id: "default".into(),
        ..request
    };
    // Newest first, every one once, a page at a time.
    let all = all_pages(
        &client,
        in_default(ListVerificationsRequest {
            page_size: 2,
            ..Default::default()
        }),
    )
    .await;
    let expected: Vec<String> = created.iter().rev().map(|v| v.id.clone()).collect();
    assert_eq!(all, expected);
    let one_page = client
        .list_verifications(in_default(ListVerificationsRequest::default()))
        .await
        .unwrap();
    assert!(one_page.next_page_token.is_empty());
    assert!(one_page.verifications.iter().all(|v| v.attempts.is_empty()));
    // Every service's for an admin who names none.
    let everything = all_pages(&client, ListVerificationsRequest::default()).await;
    assert_eq!(everything.len(), 7);
    assert_eq!(
        everything.iter().collect::<HashSet<_>>().len(),
        7,
        "no repeats"
    );

    // Filters.
    let ids = |request| {
        let client = client.clone();
        async move { all_pages(&client, in_default(request)).await }
    };
    assert_eq!(
        ids(ListVerificationsRequest {
            statuses: vec![VerificationStatus::Approved as i32],
            ..Default::default()
        })
        .await,
        [approved.id.as_str()]
    );
    assert_eq!(
        ids(ListVerificationsRequest {
            region_code: "us".into(),
            ..Default::default()
        })
        .await,
        [us.id.as_str()]
    );
    assert_eq!(
        ids(ListVerificationsRequest {
            to: created[3].to.clone(),
            ..Default::default()
        })
        .await,
        [created[3].id.as_str()]
    );
    let since_middle = ids(ListVerificationsRequest {
        created_after: middle_time,
        ..Default::default()
    })
    .await;
    assert_eq!(
        since_middle,
        expected[..4].to_vec(),
        "created at or after the second one"
    );
    let before_middle = ids(ListVerificationsRequest {
        created_before: middle_time,
        ..Default::default()
    })
    .await;
    assert_eq!(before_middle, [created[0].id.clone()]);
    assert_eq!(
        all_pages(
            &client,
            ListVerificationsRequest {
                service_id: "acme".into(),
                ..Default::default()
            }
        )
        .await
        .len(),
        2
    );

    // Bad filters are named.
    for (request, field) in [
        (
            ListVerificationsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "page_token: ",
        ),
        (
            ListVerificationsRequest {
                statuses: vec![42],
                ..Default::default()
            },
            "statuses: ",
        ),
        (
            ListVerificationsRequest {
                region_code: "Great Britain".into(),
                ..Default::default()
            },
            "region_code: ",
        ),
        (
            ListVerificationsRequest {
                created_after: Some(Timestamp {
                    seconds: 2_000_000_000,
                    nanos: 0,
                }),
                created_before: Some(Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "created_before: ",
        ),
    ] {
        let (code, message) = code_of(client.list_verifications(request).await.unwrap_err());
        assert_eq!(code, Code::InvalidArgument);
        assert!(message.starts_with(field), "{message}");
    }

    // verifyctl: list, get --to, each with --json.
    let ctl = |args: &[&str]| server.verifyctl(args);
    let text = ctl(&["list", "--service", "default", "--status", "approved"]);
    assert!(
        text.contains(&approved.id) && text.contains("approved"),
        "{text}"
    );
    let text = ctl(&["--json", "list", "--limit", "3"]);
    let page: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(page["verifications"].as_array().unwrap().len(), 3);
    let token = page["next_page_token"].as_str().unwrap();
    let text = ctl(&["list", "--limit", "3", "--page-token", token]);
    assert!(text.contains("more: --page-token "), "{text}");
    let text = ctl(&["--json", "get", "--to", &created[1].to]);
    let got: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(got["verification"]["id"], created[1].id.as_str());
}

/// 02:30 UTC: 21:30 in New York (marketing waits for 08:00), 18:30 in San Francisco (sent now).
async fn notifications_are_listed_and_a_scheduled_one_canceled(backend: Backend) {
    let server =
        TestServer::start_with_config(backend, "[debug]\nclock_start = \"2026-11-26T02:30:00Z\"\n")
            .await;
    let client = server.client().await;
    let marketing = |to: &str| NotifyOptions {
        sender: Some("+15017122661".into()),
        ..NotifyOptions::new(to, MessageCategory::Marketing, "Winter sale: 20% off.")
    };
    let held = client.notify(marketing("+1 212 736 5000")).await.unwrap();
    assert_eq!(held.decision.unwrap().action(), PolicyAction::Defer);
    let held = held.notification.unwrap();
    let sent = client.notify(marketing("+1 415 736 3000")).await.unwrap();
    assert_eq!(sent.decision.unwrap().action(), PolicyAction::SendNow);
    let sent = sent.notification.unwrap();

    let listed = |statuses: Vec<NotificationStatus>| {
        let client = client.clone();
        async move {
            client
                .list_notifications(ListNotificationsRequest {
                    statuses: statuses.into_iter().map(|s| s as i32).collect(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .notifications
                .into_iter()
                .map(|n| n.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(vec![]).await,
        [sent.id.clone(), held.id.clone()],
        "newest first"
    );
    assert_eq!(
        listed(vec![NotificationStatus::Scheduled]).await,
        [held.id.as_str()]
    );

    // verifyctl cancels the scheduled one; its watch shows the message canceled.
    let ctl = |args: &[&str]| {
        Command::new(binary("verifyctl"))
            .arg("--addr")
            .arg(server.url())
            .args(args)
            .output()
            .unwrap()
    };
    let output = ctl(&["cancel-notification", &held.id]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("canceled"), "{text}");
    let canceled = client.get_notification(&held.id).await.unwrap();
    assert_eq!(canceled.status(), NotificationStatus::Canceled);
    assert_eq!(
        listed(vec![NotificationStatus::Canceled]).await,
        [held.id.as_str()]
    );
    let mut events = client.watch_notification(&held.id, 0).await.unwrap();
    let mut kinds = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), events.next()).await
    {
        let event = event.unwrap();
        kinds.push((event.r#type(), event.notification_status()));
    }
    assert_eq!(
        kinds.last(),
        Some(&(EventType::MessageCanceled, NotificationStatus::Canceled)),
        "{kinds:?}"
    );
    // Canceling again changes nothing; the one sent cannot be canceled once delivered.
    assert_eq!(
        client.cancel_notification(&held.id).await.unwrap().status(),
        NotificationStatus::Canceled
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get_notification(&sent.id).await.unwrap().status() != NotificationStatus::Delivered
    {
        assert!(std::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, message) = code_of(client.cancel_notification(&sent.id).await.unwrap_err());
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        message.starts_with("notification_id: ") && message.contains("delivered"),
        "{message}"
    );
    // Nothing of the canceled one reached the carrier.
    assert!(
        server
            .outbox_lines()
            .iter()
            .all(|line| line["verification_id"] != held.id.as_str())
    );

    // verifyctl: notify, get-notification and notifications, with --json.
    let output = ctl(&[
        "--json",
        "notify",
        &unique_mobile(),
        "--category",
        "alert",
        "--body",
        "Your card was used abroad.",
    ]);
    assert!(output.status.success(), "{output:?}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = answer["notification"]["id"].as_str().unwrap().to_string();
    assert_eq!(answer["decision"]["action"], "POLICY_ACTION_SEND_NOW");
    let output = ctl(&["get-notification", &id]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && text.contains(&id), "{text}");
    let output = ctl(&["notifications", "--status", "canceled"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&held.id) && !text.contains(&id), "{text}");
}
