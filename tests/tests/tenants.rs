//! Services and tenants through the real binary: two services side by side in one verifyd (one
//! from the configuration file, one created with CreateService), each with its own API key,
//! its name in the message and its own settings; a service's key never sees, checks, cancels
//! or watches the other's verifications, notifications or events (NOT_FOUND, exactly as for an
//! id that does not exist), and idempotency keys are per service. Every RPC is tried.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use verify_client::proto::v1::{
    self, Channel, CheckResult, MessageCategory, MessageTemplate, Service, VerificationStatus,
};
use verify_client::{ClientError, NotifyOptions, VerifyClient, VerifyOptions};
use verify_e2e::{Backend, TestServer, api_key_hash, on_both_backends, unique_mobile};

on_both_backends!(
    two_services_see_only_their_own,
    services_are_managed_by_admins,
    autofill_lines_have_the_exact_formats,
    a_service_may_tighten_abuse_defense,
);

const ADMIN_KEY: &str = "admin-key-0a1b2c";
const ACME_KEY: &str = "acme-key-3d4e5f";
const GLOBEX_KEY: &str = "globex-key-6a7b8c";

/// `acme` from the file (8-digit codes, its name in the message); keys for an admin, for
/// `acme` and for `globex` (a service created through the API in the tests).
fn config() -> String {
    format!(
        r#"
[[services]]
id = "acme"
friendly_name = "Acme"
code_length = 8

[[api_keys]]
name = "ops"
sha256 = "{}"

[[api_keys]]
name = "acme-backend"
sha256 = "{}"
service = "acme"

[[api_keys]]
name = "globex-backend"
sha256 = "{}"
service = "globex"
"#,
        api_key_hash(ADMIN_KEY),
        api_key_hash(ACME_KEY),
        api_key_hash(GLOBEX_KEY)
    )
}

struct Clients {
    admin: VerifyClient,
    acme: VerifyClient,
    globex: VerifyClient,
}

async fn clients(server: &TestServer) -> Clients {
    let with = |key: &'static str| async move {
        server
            .client()
            .await
            .with_api_key(key)
            .expect("a valid key")
    };
    Clients {
        admin: with(ADMIN_KEY).await,
        acme: with(ACME_KEY).await,
        globex: with(GLOBEX_KEY).await,
    }
}

/// `globex`, created by the admin: its own SMS template naming it, 6-digit codes.
async fn create_globex(admin: &VerifyClient) -> Service {
    admin
        .create_service(Service {
            id: "globex".into(),
            friendly_name: "Globex".into(),
            templates: vec![MessageTemplate {
                locale: "en".into(),
                channel: Channel::Sms as i32,
                text: "{code} is your {service} code. Valid {lifetime}.".into(),
            }],
            ..Service::default()
        })
        .await
        .expect("create globex")
}

fn status(error: ClientError) -> tonic::Status {
    error.status().expect("a gRPC status").clone()
}

/// The NOT_FOUND a foreign id gets is the one an unknown id gets, but for the id itself.
fn assert_hidden(foreign: ClientError, foreign_id: &str, unknown: ClientError, unknown_id: &str) {
    let (foreign, unknown) = (status(foreign), status(unknown));
    assert_eq!(foreign.code(), Code::NotFound, "{foreign:?}");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(
        foreign.message().replace(foreign_id, "ID"),
        unknown.message().replace(unknown_id, "ID")
    );
}

async fn two_services_see_only_their_own(backend: Backend) {
    let server = TestServer::start_with_config(backend, config()).await;
    let Clients {
        admin,
        acme,
        globex,
    } = clients(&server).await;
    create_globex(&admin).await;
    let number = unique_mobile();

    // One number, a pending verification in each service: two codes, each in its words.
    let acme_v = acme
        .verify(VerifyOptions::new(&number))
        .await
        .unwrap()
        .verification
        .unwrap();
    let globex_answer = globex.verify(VerifyOptions::new(&number)).await.unwrap();
    assert!(
        !globex_answer.resent,
        "another service's pending one is not resent"
    );
    let globex_v = globex_answer.verification.unwrap();
    assert_eq!(acme_v.service_id, "acme");
    assert_eq!(globex_v.service_id, "globex");
    assert_eq!((acme_v.code_length, globex_v.code_length), (8, 6));
    let acme_line = &server.wait_for_messages(&acme_v.id, 1).await[0];
    let acme_code = acme_line["code"].as_str().unwrap().to_string();
    assert_eq!(
        acme_line["body"].as_str().unwrap(),
        format!(
            "Your Acme verification code is {acme_code}. It expires in 10 minutes. Do not share it with anyone."
        )
    );
    let globex_line = &server.wait_for_messages(&globex_v.id, 1).await[0];
    let globex_code = globex_line["code"].as_str().unwrap().to_string();
    assert_eq!(
        globex_line["body"].as_str().unwrap(),
        format!("{globex_code} is your Globex code. Valid 10 minutes.")
    );

    // GetVerification, CancelVerification, Check by id: NOT_FOUND, as for an unknown id.
    let unknown = "vf_0000000000000000000000000000000";
    assert_hidden(
        globex.get(&acme_v.id).await.unwrap_err(),
        &acme_v.id,
        globex.get(unknown).await.unwrap_err(),
        unknown,
    );
    assert_hidden(
        globex.cancel(&acme_v.id).await.unwrap_err(),
        &acme_v.id,
        globex.cancel(unknown).await.unwrap_err(),
        unknown,
    );
    assert_hidden(
        globex
            .check_by_id(&acme_v.id, &acme_code)
            .await
            .unwrap_err(),
        &acme_v.id,
        globex.check_by_id(unknown, &acme_code).await.unwrap_err(),
        unknown,
    );
    // WatchEvents of the other's verification: NOT_FOUND.
    let watch_error = |result: Result<_, ClientError>| match result {
        Err(error) => status(error),
        Ok(_) => panic!("watching another service's verification was allowed"),
    };
    let foreign = watch_error(globex.watch(Some(&acme_v.id), 0).await);
    let missing = watch_error(globex.watch(Some(unknown), 0).await);
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(
        foreign.message().replace(&acme_v.id, "ID"),
        missing.message().replace(unknown, "ID")
    );
    // Naming the other service is NOT_FOUND, as for a service that does not exist.
    for named in ["acme", "initech"] {
        let error = globex
            .verify(VerifyOptions {
                service_id: Some(named.into()),
                ..VerifyOptions::new(&number)
            })
            .await
            .unwrap_err();
        let error = status(error);
        assert_eq!(error.code(), Code::NotFound);
        assert_eq!(error.message(), format!("service_id: no service {named}"));
    }
    let raw_check = globex
        .raw()
        .check(v1::CheckRequest {
            target: Some(v1::check_request::Target::To(number.clone())),
            code: acme_code.clone(),
            service_id: "acme".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(raw_check.code(), Code::NotFound);

    // Check by number checks the caller's own service's verification: globex approves with
    // its code; acme's stays pending, and acme approves with its own.
    let checked = globex.check_by_number(&number, &globex_code).await.unwrap();
    assert_eq!(checked.result(), CheckResult::Approved);
    assert_eq!(checked.verification.unwrap().id, globex_v.id);
    assert_eq!(
        acme.get(&acme_v.id).await.unwrap().status(),
        VerificationStatus::Pending
    );
    let checked = acme.check_by_number(&number, &acme_code).await.unwrap();
    assert_eq!(checked.result(), CheckResult::Approved);
    assert_eq!(checked.verification.unwrap().id, acme_v.id);

    // Notifications: the other's is NOT_FOUND to get and to watch.
    let notified = acme
        .notify(NotifyOptions::new(
            unique_mobile(),
            MessageCategory::Alert,
            "Your order shipped.",
        ))
        .await
        .unwrap()
        .notification
        .unwrap();
    assert_eq!(notified.service_id, "acme");
    assert_eq!(
        status(globex.get_notification(&notified.id).await.unwrap_err()).code(),
        Code::NotFound
    );
    assert_eq!(
        acme.get_notification(&notified.id).await.unwrap().id,
        notified.id
    );
    match globex.watch_notification(&notified.id, 0).await {
        Err(error) => assert_eq!(status(error).code(), Code::NotFound),
        Ok(_) => panic!("watching another service's notification was allowed"),
    }

    // Idempotency keys are per service: the same key in both starts one verification each.
    let (first, second) = (unique_mobile(), unique_mobile());
    let keyed = |to: &str| VerifyOptions {
        idempotency_key: Some("order-1".into()),
        ..VerifyOptions::new(to)
    };
    let in_acme = acme.verify(keyed(&first)).await.unwrap();
    let in_globex = globex.verify(keyed(&second)).await.unwrap();
    assert!(!in_acme.replayed && !in_globex.replayed);
    let replay = globex.verify(keyed(&second)).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(
        replay.verification.unwrap().id,
        in_globex.verification.unwrap().id
    );

    // WatchEvents of everything: a service's key gets its own service's events only; the
    // admin key gets both (and names one to get one).
    let events_of = |client: VerifyClient, service: &'static str| async move {
        let request = v1::WatchEventsRequest {
            service_id: service.into(),
            ..Default::default()
        };
        let mut stream = client
            .raw()
            .watch_events(request)
            .await
            .expect("watch")
            .into_inner();
        let mut services = std::collections::BTreeSet::new();
        let mut count = 0;
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(700), stream.next()).await
        {
            let event = item.expect("event").event.expect("event set");
            services.insert(event.service_id);
            count += 1;
        }
        (services, count)
    };
    let (seen, count) = events_of(globex.clone(), "").await;
    assert!(count > 0);
    assert_eq!(seen, ["globex".to_string()].into());
    let (seen, _) = events_of(acme.clone(), "").await;
    assert_eq!(seen, ["acme".to_string()].into());
    let (seen, _) = events_of(admin.clone(), "").await;
    assert!(seen.contains("acme") && seen.contains("globex"), "{seen:?}");
    let (seen, _) = events_of(admin.clone(), "globex").await;
    assert_eq!(seen, ["globex".to_string()].into());
    let denied = globex
        .raw()
        .watch_events(v1::WatchEventsRequest {
            service_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::NotFound);

    // Lists, a number's latest verification, CancelNotification and the webhook state: only
    // the caller's own service.
    let listed = |client: VerifyClient, service: &'static str| async move {
        client
            .list_verifications(v1::ListVerificationsRequest {
                service_id: service.into(),
                ..Default::default()
            })
            .await
            .map(|page| {
                page.verifications
                    .into_iter()
                    .map(|v| v.service_id)
                    .collect::<std::collections::BTreeSet<_>>()
            })
    };
    assert_eq!(
        listed(globex.clone(), "").await.unwrap(),
        ["globex".to_string()].into()
    );
    assert_eq!(
        listed(acme.clone(), "").await.unwrap(),
        ["acme".to_string()].into()
    );
    let (all, _) = (listed(admin.clone(), "").await.unwrap(), ());
    assert!(all.contains("acme") && all.contains("globex"), "{all:?}");
    assert_eq!(
        status(listed(globex.clone(), "acme").await.unwrap_err()).code(),
        Code::NotFound
    );
    let notifications = globex
        .list_notifications(v1::ListNotificationsRequest::default())
        .await
        .unwrap();
    assert!(
        notifications
            .notifications
            .iter()
            .all(|n| n.service_id == "globex"),
        "{notifications:?}"
    );
    assert!(
        !notifications
            .notifications
            .iter()
            .any(|n| n.id == notified.id)
    );
    assert_eq!(
        status(globex.cancel_notification(&notified.id).await.unwrap_err()).code(),
        Code::NotFound
    );
    let latest = globex.get_latest(&number, None).await.unwrap();
    assert_eq!(latest.id, globex_v.id, "the latest of the number in globex");
    assert_eq!(
        status(globex.get_latest(&number, Some("acme")).await.unwrap_err()).code(),
        Code::NotFound
    );
    let webhook = |client: VerifyClient, service: &'static str| async move {
        client
            .raw()
            .list_webhook_deliveries(v1::ListWebhookDeliveriesRequest {
                service_id: service.into(),
                limit: 0,
            })
            .await
    };
    webhook(globex.clone(), "").await.unwrap();
    assert_eq!(
        webhook(globex.clone(), "acme").await.unwrap_err().code(),
        Code::NotFound
    );
    // Classify stores nothing: every key may.
    assert!(globex.classify(&number, None).await.unwrap().valid);

    // Blocks are the whole server's: an admin's business.
    let error = status(globex.list_blocks(true, 0).await.unwrap_err());
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(error.message().contains("admin API key"), "{error:?}");
    let error = status(acme.unblock("blk_x").await.unwrap_err());
    assert_eq!(error.code(), Code::PermissionDenied);
    admin.list_blocks(true, 0).await.unwrap();

    // Nothing of the codes reached the log.
    let log = server.log();
    for secret in [&acme_code, &globex_code] {
        assert!(
            !log.contains(&format!("code={secret}")),
            "a code in the log"
        );
    }
}

async fn services_are_managed_by_admins(backend: Backend) {
    let mut server = TestServer::start_with_config(backend, config()).await;
    let Clients {
        admin,
        acme,
        globex,
    } = clients(&server).await;

    // Before it exists, globex's key is answered NOT_FOUND for its own service.
    let error = status(
        globex
            .verify(VerifyOptions::new(unique_mobile()))
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.message(), "service_id: no service globex");

    // Only an admin creates and changes services; a bad one is refused naming the field.
    let error = status(
        globex
            .create_service(Service {
                id: "globex".into(),
                ..Service::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = status(
        admin
            .create_service(Service {
                id: "globex".into(),
                templates: vec![MessageTemplate {
                    locale: "en".into(),
                    channel: Channel::Sms as i32,
                    text: "Welcome to {service}".into(),
                }],
                ..Service::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().starts_with("service: templates[0].text: ")
            && error.message().contains("{code}"),
        "{error:?}"
    );
    let created = create_globex(&admin).await;
    assert_eq!(created.code_length, 6, "unset values take [codes]");
    assert!(!created.configured && created.created_at.is_some());
    let error = status(
        admin
            .create_service(Service {
                id: "globex".into(),
                ..Service::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::AlreadyExists);
    let error = status(
        admin
            .create_service(Service {
                id: "acme".into(),
                ..Service::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(
        error.code(),
        Code::AlreadyExists,
        "a configured id is taken"
    );

    // A service's key reads its own service only; the admin reads them all.
    let ids = |services: Vec<Service>| services.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(globex.list_services().await.unwrap()), ["globex"]);
    assert_eq!(
        ids(admin.list_services().await.unwrap()),
        ["acme", "default", "globex"]
    );
    assert_eq!(
        status(globex.get_service("acme").await.unwrap_err()).code(),
        Code::NotFound
    );
    let own = acme.get_service("acme").await.unwrap();
    assert!(own.configured);
    assert_eq!((own.friendly_name.as_str(), own.code_length), ("Acme", 8));

    // UpdateService: admins only, stored services only, named fields only.
    let rename = Service {
        id: "globex".into(),
        friendly_name: "Globex Corp".into(),
        ..Service::default()
    };
    let error = status(
        globex
            .update_service(rename.clone(), vec!["friendly_name".into()])
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = status(
        admin
            .update_service(
                Service {
                    id: "acme".into(),
                    ..rename.clone()
                },
                vec!["friendly_name".into()],
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("configuration file"), "{error:?}");
    let error = status(
        admin
            .update_service(rename.clone(), vec!["name".into()])
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().starts_with("update_fields: "), "{error:?}");
    let updated = admin
        .update_service(rename, vec!["friendly_name".into()])
        .await
        .unwrap();
    assert_eq!(updated.friendly_name, "Globex Corp");
    assert_eq!(updated.templates.len(), 1, "fields not named stay");

    // The next code carries the new name; the service survives a restart.
    let v = globex
        .verify(VerifyOptions::new(unique_mobile()))
        .await
        .unwrap()
        .verification
        .unwrap();
    let line = &server.wait_for_messages(&v.id, 1).await[0];
    assert!(
        line["body"]
            .as_str()
            .unwrap()
            .ends_with("is your Globex Corp code. Valid 10 minutes."),
        "{line}"
    );
    server.stop();
    server.restart();
    let globex = server.client().await.with_api_key(GLOBEX_KEY).expect("key");
    assert_eq!(
        globex.get_service("globex").await.unwrap().friendly_name,
        "Globex Corp"
    );
    assert_eq!(globex.get(&v.id).await.unwrap().service_id, "globex");
}

async fn autofill_lines_have_the_exact_formats(backend: Backend) {
    let server = TestServer::start_with_config(
        backend,
        "[[services]]\nid = \"shop\"\nfriendly_name = \"Shop\"\ndomain = \"shop.example\"\n",
    )
    .await;
    let client = server.client().await;
    let sent = |options: VerifyOptions| {
        let (client, server) = (client.clone(), &server);
        async move {
            let v = client.verify(options).await.unwrap().verification.unwrap();
            let line = server.wait_for_messages(&v.id, 1).await.remove(0);
            let code = line["code"].as_str().unwrap().to_string();
            (v, line["body"].as_str().unwrap().to_string(), code)
        }
    };
    let in_shop = |to: String| VerifyOptions {
        service_id: Some("shop".into()),
        ..VerifyOptions::new(to)
    };
    let words = |name: &str, code: &str| {
        format!(
            "Your {name}verification code is {code}. It expires in 10 minutes. Do not share it with anyone."
        )
    };

    // The service's default domain: the domain-bound line last, after a blank line.
    let (v, body, code) = sent(in_shop(unique_mobile())).await;
    assert_eq!(v.domain, "shop.example");
    assert_eq!(
        body,
        format!("{}\n\n@shop.example #{code}", words("Shop ", &code))
    );
    // With an app hash too: the hash on its own line, the domain-bound line still last.
    let (v, body, code) = sent(VerifyOptions {
        app_hash: Some("FA+9qCX9VSu".into()),
        ..in_shop(unique_mobile())
    })
    .await;
    assert_eq!(v.app_hash, "FA+9qCX9VSu");
    assert_eq!(
        body,
        format!(
            "{}\n\nFA+9qCX9VSu\n@shop.example #{code}",
            words("Shop ", &code)
        )
    );
    assert!(
        body.len() <= 140,
        "{} bytes: more than one SMS part",
        body.len()
    );
    // A request's own domain, in a service without defaults or a name.
    let (_, body, code) = sent(VerifyOptions {
        domain: Some("Login.Example.com".into()),
        ..VerifyOptions::new(unique_mobile())
    })
    .await;
    assert_eq!(
        body,
        format!("{}\n\n@login.example.com #{code}", words("", &code))
    );
    // The hash alone ends the message.
    let (_, body, code) = sent(VerifyOptions {
        app_hash: Some("FA+9qCX9VSu".into()),
        ..VerifyOptions::new(unique_mobile())
    })
    .await;
    assert_eq!(body, format!("{}\n\nFA+9qCX9VSu", words("", &code)));

    for (options, field) in [
        (
            VerifyOptions {
                app_hash: Some("FA+9qCX9V".into()),
                ..VerifyOptions::new(unique_mobile())
            },
            "app_hash: ",
        ),
        (
            VerifyOptions {
                domain: Some("https://shop.example/login".into()),
                ..VerifyOptions::new(unique_mobile())
            },
            "domain: ",
        ),
    ] {
        let error = status(client.verify(options).await.unwrap_err());
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().starts_with(field), "{error:?}");
    }
}

/// A service at `abuse_level = "strict"` meets the strict pumping guard (which refuses VoIP
/// numbers) while the server, and its other services, run the standard one.
async fn a_service_may_tighten_abuse_defense(backend: Backend) {
    let server = TestServer::start_with_config(
        backend,
        "[[services]]\nid = \"careful\"\nabuse_level = \"strict\"\n",
    )
    .await;
    let client = server.client().await;
    let voip = "+445612345678";
    let error = status(
        client
            .verify(VerifyOptions {
                service_id: Some("careful".into()),
                ..VerifyOptions::new(voip)
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().starts_with("to: "), "{error:?}");
    client.verify(VerifyOptions::new(voip)).await.unwrap();
    let error = status(
        client
            .create_service(Service {
                id: "lax".into(),
                abuse_level: "off".into(),
                ..Service::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().starts_with("service: abuse_level: "),
        "{error:?}"
    );
}
