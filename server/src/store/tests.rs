//! The store's SQL, tested directly on SQLite and on PostgreSQL (a fresh database each), as the
//! e2e suite also does through the real binary.

use std::time::Duration;

use verify_carrier::{Channel, ReceiptStatus};

use super::test_db::TestDb;
use super::*;
use crate::domain::{
    DEFAULT_SERVICE, DeliveryStatus, EventKind, MessageSpec, SubjectState, SubjectStatus,
    VerificationSpec, VerificationStatus,
};

/// An idempotency key of the default service.
fn key(key: &str) -> ServiceKey {
    ServiceKey {
        service_id: DEFAULT_SERVICE.into(),
        key: key.into(),
    }
}
use crate::on_both_databases;

on_both_databases!(
    verifications_round_trip_and_one_pending_per_number,
    idempotency_keys_name_one_verification,
    claims_take_due_messages_once_and_hand_off_only_what_is_held,
    messages_of_a_subject_and_by_carrier_id,
    events_get_cursors_at_commit_and_filter_by_subject,
    kept_receipts_are_taken_once_by_any_spelling,
    workers_register_beat_and_are_removed_once,
    messages_of_unregistered_holders_are_found,
    conversion_counts_credit_the_last_message_before_approval,
    writes_that_arrive_together_commit_together_and_fail_alone,
    writes_run_by_the_store_commit_together_and_fail_alone,
    a_write_given_up_before_its_turn_keeps_nothing,
    an_event_committed_late_gets_a_cursor_after_those_seen,
    a_write_waits_for_another_process_holding_the_sqlite_lock,
    a_failed_flush_of_the_log_stops_writes_and_reads,
    saved_messages_are_written_together_and_read_back_by_their_write,
    recent_codes_are_read_by_number_and_by_prefix_once_each,
    conversion_rollups_add_up_by_hour_and_day_and_move_their_cursor_once,
);

const NOW: i64 = 1_700_000_000_000;

fn verification(id: &str, number: &str) -> Verification {
    Verification::start(VerificationSpec::example(id, number, NOW), NOW).0
}

fn message(id: &str, subject: Subject, carrier: &str) -> OutboxMessage {
    OutboxMessage::queue(
        MessageSpec {
            service_id: crate::domain::DEFAULT_SERVICE.into(),
            id: id.into(),
            subject,
            channel: Channel::Sms,
            carrier: carrier.into(),
            fallback_carriers: vec!["backup".into(), "last".into()],
            step: 0,
            trace_parent: None,
        },
        "route",
        SubjectState::Verification(VerificationStatus::Pending),
        NOW,
    )
    .0
}

async fn insert(db: &TestDb, verification: &Verification, messages: &[&OutboxMessage]) {
    let mut tx = db.store.begin().await.unwrap();
    tx.insert_verification(verification).await.unwrap();
    for message in messages {
        tx.insert_message(message).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn verifications_round_trip_and_one_pending_per_number(db: &TestDb) {
    let v = verification("vf_1", "+447400000001");
    insert(db, &v, &[]).await;
    assert_eq!(
        db.store.verification("vf_1").await.unwrap(),
        Some(v.clone())
    );

    let mut tx = db.store.begin().await.unwrap();
    let mut locked = tx
        .lock_pending_verification_of(DEFAULT_SERVICE, "+447400000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(locked, v);
    locked.checks_used = 2;
    locked.status = VerificationStatus::Approved;
    locked.workflow.step_deadline_ms = None;
    locked.workflow.step_failure = "sim: x".into();
    tx.save_verification(&locked).await.unwrap();
    assert_eq!(
        tx.verification_status("vf_1").await.unwrap(),
        Some(VerificationStatus::Approved)
    );
    tx.commit().await.unwrap();
    assert_eq!(db.store.verification("vf_1").await.unwrap(), Some(locked));

    // A second pending verification of the same number is refused by the database.
    insert(db, &verification("vf_2", "+447400000001"), &[]).await;
    let mut tx = db.store.begin().await.unwrap();
    let raced = tx
        .insert_verification(&verification("vf_3", "+447400000001"))
        .await
        .unwrap_err();
    assert!(matches!(raced, StoreError::Contended(_)), "{raced}");
    tx.rollback().await.unwrap();
    let mut tx = db.store.begin().await.unwrap();
    let latest = tx
        .lock_latest_verification_of(DEFAULT_SERVICE, "+447400000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, "vf_2");
    assert!(tx.lock_verification("vf_missing").await.unwrap().is_none());
    tx.rollback().await.unwrap();
    let read = db
        .store
        .latest_verification_of(DEFAULT_SERVICE, "+447400000001")
        .await;
    assert_eq!(read.unwrap(), Some(latest));
    assert_eq!(
        db.store
            .latest_verification_of(DEFAULT_SERVICE, "+447400000099")
            .await
            .unwrap(),
        None
    );
    let both = db
        .store
        .verifications_for_dispatch(&["vf_1".into(), "vf_2".into(), "vf_x".into()])
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
}

async fn recent_codes_are_read_by_number_and_by_prefix_once_each(db: &TestDb) {
    let mut old = verification("vf_old", "+447400100001");
    old.created_at_ms = NOW - 3_600_000;
    old.status = VerificationStatus::Approved;
    insert(db, &old, &[]).await;
    let mut resent = verification("vf_new", "+447400100002");
    resent.sends_used = 2;
    insert(db, &resent, &[]).await;
    let mut long_pending = verification("vf_pending", "+447400200003");
    long_pending.created_at_ms = NOW - 7_200_000;
    insert(db, &long_pending, &[]).await;
    insert(db, &verification("vf_other", "+447400300004"), &[]).await;

    let mut tx = db.store.begin().await.unwrap();
    let ids = |codes: &[RecordedCode]| {
        let mut ids: Vec<String> = codes.iter().map(|code| code.id.clone()).collect();
        ids.sort();
        ids
    };
    // By prefix (the one each number counts under) from a time; by number, the pending one
    // whenever it started.
    let numbers = ["+447400200003".to_string(), "+447400100002".to_string()];
    let codes = tx
        .recent_codes(
            &numbers,
            NOW - 600_000,
            &["+447400100".into()],
            NOW - 600_000,
        )
        .await
        .unwrap();
    assert_eq!(ids(&codes), ["vf_new", "vf_pending"]);
    let new = codes.iter().find(|code| code.id == "vf_new").unwrap();
    assert_eq!(
        (new.e164.as_str(), new.pending, new.approved, new.sends),
        ("+447400100002", true, false, 2)
    );
    // Its last code was sent by its last change (and before it expires).
    assert_eq!(
        new.sent_by_ms,
        resent.updated_at_ms.min(resent.expires_at_ms)
    );
    // A longer window reaches the approved one; nothing is read twice.
    let codes = tx
        .recent_codes(
            &numbers,
            i64::MAX,
            &["+447400999".into(), "+447400100".into()],
            0,
        )
        .await
        .unwrap();
    assert_eq!(ids(&codes), ["vf_new", "vf_old", "vf_pending"]);
    assert!(
        codes
            .iter()
            .any(|code| code.id == "vf_old" && code.approved)
    );
    assert!(tx.recent_codes(&[], 0, &[], 0).await.unwrap().is_empty());
    // Many prefixes, without numbers.
    let many: Vec<String> = (0..70)
        .map(|i| format!("+44750{i:04}"))
        .chain(["+447400300".to_string()])
        .collect();
    let codes = tx.recent_codes(&[], 0, &many, 0).await.unwrap();
    assert_eq!(ids(&codes), ["vf_other"]);
    tx.rollback().await.unwrap();
}

async fn idempotency_keys_name_one_verification(db: &TestDb) {
    insert(db, &verification("vf_1", "+447400000002"), &[]).await;
    let mut tx = db.store.begin().await.unwrap();
    tx.remember_verification_key(&key("key-1"), "vf_1", "+447400000002", NOW)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.store.begin().await.unwrap();
    assert_eq!(
        tx.verification_for_key(&key("key-1")).await.unwrap(),
        Some(("vf_1".to_string(), "+447400000002".to_string()))
    );
    assert_eq!(tx.verification_for_key(&key("key-2")).await.unwrap(), None);
    let again = tx
        .remember_verification_key(&key("key-1"), "vf_1", "+447400000002", NOW)
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Contended(_)));
    tx.rollback().await.unwrap();
}

async fn claims_take_due_messages_once_and_hand_off_only_what_is_held(db: &TestDb) {
    let v = verification("vf_1", "+447400000003");
    let first = message("msg_1", v.subject(), "smsc");
    let mut second = message("msg_2", v.subject(), "smsc");
    second.due_at_ms = NOW + 1;
    let mut later = message("msg_3", v.subject(), "smsc");
    later.status = DeliveryStatus::Scheduled;
    later.due_at_ms = NOW + 60_000;
    insert(db, &v, &[&first, &second, &later]).await;

    let mut tx = db.store.begin().await.unwrap();
    let claimed = tx
        .claim_due_messages("worker-a", NOW + 5, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["msg_1", "msg_2"],
        "only due messages, oldest due first"
    );
    assert!(claimed.iter().all(
        |m| m.status == DeliveryStatus::Claimed && m.claimed_by.as_deref() == Some("worker-a")
    ));
    if db.is_postgres() {
        // Another dispatcher claiming meanwhile skips the locked rows instead of waiting.
        let mut other = db.store.begin().await.unwrap();
        let none = other
            .claim_due_messages("worker-b", NOW + 5, 10)
            .await
            .unwrap();
        assert!(none.is_empty());
        other.rollback().await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = db.store.begin().await.unwrap();
    assert!(
        tx.claim_due_messages("worker-b", NOW + 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The scheduled one comes due.
    let due = tx
        .claim_due_messages("worker-b", NOW + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, "msg_3");
    let handed = tx
        .hand_off("worker-a", &["msg_1".into(), "msg_3".into()], NOW + 6)
        .await
        .unwrap();
    assert_eq!(
        handed,
        vec![("msg_1".to_string(), 1)],
        "msg_3 is worker-b's"
    );
    let held = tx.lock_messages_held_by("worker-a").await.unwrap();
    let states: Vec<(&str, DeliveryStatus)> =
        held.iter().map(|m| (m.id.as_str(), m.status)).collect();
    assert_eq!(
        states,
        [
            ("msg_1", DeliveryStatus::Sending),
            ("msg_2", DeliveryStatus::Claimed)
        ]
    );
    // Handing over again (a retry after a lost commit answer) finds it handed over, with the
    // same attempt.
    assert_eq!(
        tx.hand_off("worker-a", &["msg_1".into()], NOW + 7)
            .await
            .unwrap(),
        vec![("msg_1".to_string(), 1)]
    );
    tx.commit().await.unwrap();
}

async fn messages_of_a_subject_and_by_carrier_id(db: &TestDb) {
    let v = verification("vf_1", "+447400000004");
    let mut m = message("msg_1", v.subject(), "smsc");
    insert(db, &v, &[&m]).await;
    let mut tx = db.store.begin().await.unwrap();
    let unsent = tx.lock_unsent_messages_of(&v.subject()).await.unwrap();
    assert_eq!(unsent, vec![m.clone()]);
    m.status = DeliveryStatus::Submitted;
    m.carrier = "backup".into();
    m.fallback_carriers = vec!["last".into()];
    m.carrier_message_id = Some("C-1".into());
    m.detail = "accepted".into();
    m.updated_at_ms = NOW + 9;
    tx.save_message(&m).await.unwrap();
    assert_eq!(
        tx.message_id_by_carrier_id("backup", "C-1").await.unwrap(),
        Some(m.id.clone())
    );
    assert!(
        tx.message_id_by_carrier_id("smsc", "C-1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(tx.read_message(&m.id).await.unwrap(), Some(m.clone()));
    assert!(
        tx.lock_unsent_messages_of(&v.subject())
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
    assert_eq!(db.store.messages_of(&v.subject()).await.unwrap(), vec![m]);
    let notification = Subject::Notification("vf_1".into());
    assert!(
        db.store
            .messages_of(&notification)
            .await
            .unwrap()
            .is_empty(),
        "the subject's kind is part of its identity"
    );
}

async fn events_get_cursors_at_commit_and_filter_by_subject(db: &TestDb) {
    let v = verification("vf_1", "+447400000005");
    let m = message("msg_1", v.subject(), "smsc");
    let mut signal = db.store.event_signal();
    signal.borrow_and_update();
    let mut tx = db.store.begin().await.unwrap();
    tx.insert_verification(&v).await.unwrap();
    tx.insert_message(&m).await.unwrap();
    let queued = m.event(
        EventKind::MessageQueued,
        "route smsc",
        SubjectState::Verification(VerificationStatus::Pending),
        NOW,
    );
    let other = Event {
        service_id: DEFAULT_SERVICE.into(),
        kind: EventKind::NotificationScheduled,
        subject: Subject::Notification("nt_1".into()),
        message: None,
        subject_status: SubjectStatus::Notification(crate::domain::NotificationStatus::Scheduled),
        detail: "held".into(),
        at_ms: NOW,
    };
    tx.record([queued.clone(), other.clone()]);
    tx.commit().await.unwrap();
    // At once on SQLite; on PostgreSQL once the sequencer gave the events their cursors.
    tokio::time::timeout(Duration::from_secs(5), signal.changed())
        .await
        .expect("watchers of this process wake")
        .unwrap();

    // Nothing of a rolled-back transaction is recorded.
    let mut tx = db.store.begin().await.unwrap();
    tx.record([other.clone()]);
    tx.rollback().await.unwrap();

    let all = db.store.events_after(0, None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].cursor < all[1].cursor);
    assert_eq!(all[0].event, queued);
    assert_eq!(all[1].event, other);
    let of_v = db
        .store
        .events_after(0, Some(&v.subject()), None, 10)
        .await
        .unwrap();
    assert_eq!(of_v.len(), 1);
    assert!(
        db.store
            .events_after(all[1].cursor, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(db.store.service_of(&v.subject()).await.unwrap().is_some());
    assert!(
        db.store
            .service_of(&Subject::Verification("vf_x".into()))
            .await
            .unwrap()
            .is_none()
    );

    if db.is_postgres() {
        // A second process on the same database wakes through LISTEN/NOTIFY.
        let second = SqlStore::connect(&db.url).await.unwrap();
        let mut remote = second.event_signal();
        // The listener announces itself once connected; wait for that, then for the event.
        tokio::time::timeout(Duration::from_secs(10), remote.changed())
            .await
            .expect("the listener connects")
            .unwrap();
        remote.borrow_and_update();
        let mut tx = db.store.begin().await.unwrap();
        tx.record([other.clone()]);
        tx.commit().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), remote.changed())
            .await
            .expect("the other store hears of the event")
            .unwrap();
        second.close().await;
    }
}

async fn kept_receipts_are_taken_once_by_any_spelling(db: &TestDb) {
    let receipt = |ids: &[&str], message_id: Option<&str>, at: i64| KeptReceipt {
        carrier: "smsc".into(),
        carrier_message_ids: ids.iter().map(|s| s.to_string()).collect(),
        message_id: message_id.map(str::to_string),
        status: ReceiptStatus::Delivered,
        detail: "stat:DELIVRD".into(),
        received_at_ms: at,
    };
    let mut tx = db.store.begin().await.unwrap();
    tx.keep_receipt(&receipt(&["255", "FF"], None, NOW))
        .await
        .unwrap();
    tx.keep_receipt(&receipt(&["X"], Some("msg_7"), NOW))
        .await
        .unwrap();
    tx.keep_receipt(&receipt(&["old"], None, NOW - 10))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.store.begin().await.unwrap();
    // By its other spelling.
    let taken = tx
        .take_receipts_for("smsc", Some("FF"), "msg_1")
        .await
        .unwrap();
    assert_eq!(taken, vec![receipt(&["255", "FF"], None, NOW)]);
    assert!(
        tx.take_receipts_for("smsc", Some("255"), "msg_1")
            .await
            .unwrap()
            .is_empty()
    );
    // Another carrier's id is not this one's.
    assert!(
        tx.take_receipts_for("other", Some("X"), "msg_1")
            .await
            .unwrap()
            .is_empty()
    );
    // By verifyd's id.
    let by_id = tx.take_receipts_for("smsc", None, "msg_7").await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(tx.forget_receipts_before(NOW).await.unwrap(), 1);
    assert!(
        tx.take_receipts_for("smsc", Some("old"), "msg_1")
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
}

async fn workers_register_beat_and_are_removed_once(db: &TestDb) {
    let worker = WorkerRecord {
        id: "dispatcher-a".into(),
        host: "host/boot/ns".into(),
        pid: 42,
        started_at_ms: NOW,
        heartbeat_at_ms: NOW,
    };
    let mut tx = db.store.begin().await.unwrap();
    tx.register_worker(&worker).await.unwrap();
    let registered = tx.workers().await.unwrap()[0].heartbeat_at_ms;
    let database_now = tx.database_now_ms().await.unwrap();
    assert!(
        (registered - database_now).abs() < 60_000,
        "stamped with the database's clock: {registered} vs {database_now}"
    );
    assert!(tx.heartbeat("dispatcher-a").await.unwrap());
    let listed = tx.workers().await.unwrap();
    assert_eq!(listed.len(), 1);
    let beat = listed[0].heartbeat_at_ms;
    assert!(beat >= registered);
    // A remover that read another heartbeat does not remove a dispatcher that beat since.
    assert!(!tx.remove_worker("dispatcher-a", beat - 1).await.unwrap());
    assert!(tx.remove_worker("dispatcher-a", beat).await.unwrap());
    assert!(!tx.heartbeat("dispatcher-a").await.unwrap());
    tx.register_worker(&worker).await.unwrap();
    tx.unregister_worker("dispatcher-a").await.unwrap();
    assert!(tx.workers().await.unwrap().is_empty());
    tx.commit().await.unwrap();
}

async fn messages_of_unregistered_holders_are_found(db: &TestDb) {
    let v = verification("vf_1", "+447400000006");
    let mut held = message("msg_1", v.subject(), "smsc");
    held.status = DeliveryStatus::Sending;
    held.claimed_by = Some("dispatcher-gone".into());
    let mut live = message("msg_2", v.subject(), "smsc");
    live.status = DeliveryStatus::Claimed;
    live.claimed_by = Some("dispatcher-live".into());
    insert(db, &v, &[&held, &live]).await;
    let mut tx = db.store.begin().await.unwrap();
    tx.register_worker(&WorkerRecord {
        id: "dispatcher-live".into(),
        host: "h".into(),
        pid: 1,
        started_at_ms: NOW,
        heartbeat_at_ms: NOW,
    })
    .await
    .unwrap();
    let orphans = tx.lock_messages_of_unregistered_holders(10).await.unwrap();
    assert_eq!(orphans, vec![held]);
    tx.commit().await.unwrap();
}

async fn conversion_counts_credit_the_last_message_before_approval(db: &TestDb) {
    // (verification, region, status, approved/updated at, its messages)
    type Row<'a> = (
        &'a str,
        Option<&'a str>,
        VerificationStatus,
        i64,
        Vec<(&'a str, Channel, &'a str, DeliveryStatus, i64)>,
    );
    let rows: Vec<Row> = vec![
        // Approved on the call: the SMS before it is sent, not verified.
        (
            "v1",
            Some("HN"),
            VerificationStatus::Approved,
            5_000,
            vec![
                (
                    "m1",
                    Channel::Sms,
                    "hn-sms",
                    DeliveryStatus::Delivered,
                    1_000,
                ),
                (
                    "m2",
                    Channel::Voice,
                    "hn-voice",
                    DeliveryStatus::Submitted,
                    2_000,
                ),
            ],
        ),
        // Approved on the SMS; the call queued afterwards was canceled (not sent).
        (
            "v2",
            Some("HN"),
            VerificationStatus::Approved,
            3_000,
            vec![
                (
                    "m3",
                    Channel::Sms,
                    "hn-sms",
                    DeliveryStatus::MaybeSent,
                    1_000,
                ),
                (
                    "m4",
                    Channel::Voice,
                    "hn-voice",
                    DeliveryStatus::Canceled,
                    2_000,
                ),
            ],
        ),
        // Expired after a failed SMS and a call: both sent, none verified.
        (
            "v3",
            Some("HN"),
            VerificationStatus::Expired,
            9_000,
            vec![
                ("m5", Channel::Sms, "hn-sms", DeliveryStatus::Failed, 1_000),
                (
                    "m6",
                    Channel::Voice,
                    "hn-voice",
                    DeliveryStatus::Delivered,
                    2_000,
                ),
            ],
        ),
        // Still queued, claimed or being handed over: not sent.
        (
            "v4",
            Some("HN"),
            VerificationStatus::Pending,
            1_000,
            vec![
                ("m7", Channel::Sms, "hn-sms", DeliveryStatus::Queued, 1_000),
                ("m8", Channel::Sms, "hn-sms", DeliveryStatus::Sending, 1_000),
                (
                    "m8b",
                    Channel::Sms,
                    "hn-sms",
                    DeliveryStatus::Claimed,
                    1_000,
                ),
            ],
        ),
        // Without a region: left out. Before the window: left out.
        (
            "v5",
            None,
            VerificationStatus::Approved,
            5_000,
            vec![(
                "m9",
                Channel::Sms,
                "hn-sms",
                DeliveryStatus::Delivered,
                1_000,
            )],
        ),
        (
            "v6",
            Some("HN"),
            VerificationStatus::Approved,
            5_000,
            vec![("m10", Channel::Sms, "hn-sms", DeliveryStatus::Delivered, 10)],
        ),
        // Another country.
        (
            "v7",
            Some("SV"),
            VerificationStatus::Approved,
            5_000,
            vec![(
                "m11",
                Channel::Sms,
                "sv-sms",
                DeliveryStatus::Delivered,
                1_000,
            )],
        ),
    ];
    let mut tx = db.store.begin().await.unwrap();
    for (n, (id, region, status, at, messages)) in rows.into_iter().enumerate() {
        let mut v = verification(id, &format!("+50490000{n:03}"));
        v.region_code = region.map(str::to_string);
        v.status = status;
        v.updated_at_ms = at;
        tx.insert_verification(&v).await.unwrap();
        for (message_id, channel, carrier, status, at) in messages {
            let mut m = message(message_id, v.subject(), carrier);
            m.channel = channel;
            m.status = status;
            m.due_at_ms = at;
            m.created_at_ms = at;
            tx.insert_message(&m).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let counts = db.store.conversion_counts(500).await.unwrap();
    let count = |region: &str, channel, carrier: &str, sent, verified| ConversionCount {
        region: region.into(),
        channel,
        carrier: carrier.into(),
        sent,
        verified,
    };
    assert_eq!(
        counts,
        vec![
            count("HN", Channel::Sms, "hn-sms", 3, 1),
            count("HN", Channel::Voice, "hn-voice", 2, 1),
            count("SV", Channel::Sms, "sv-sms", 1, 1),
        ]
    );
}

/// Data written by the version before the one outbox (migrations 1 to 4) reads back after
/// migration 5: messages keep their subject, a notification's outbox columns become its
/// message, events name their subject, and a message left `sending` is maybe sent.
mod data_from_before_the_one_outbox {
    use std::borrow::Cow;

    use super::*;

    async fn write_old_data(url: String, postgres: bool) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let mut migrator = if postgres {
            sqlx::migrate!("migrations/postgres")
        } else {
            sqlx::migrate!("migrations/sqlite")
        };
        migrator.migrations = Cow::Owned(
            migrator
                .migrations
                .iter()
                .filter(|m| m.version <= 4)
                .cloned()
                .collect(),
        );
        migrator.run(&pool).await.unwrap();
        for statement in [
            "INSERT INTO verifications (id, to_e164, region_code, status, channel, locale, code_length, code_nonce, code_check, \
             max_checks, max_sends, classification, created_at_ms, expires_at_ms, updated_at_ms) \
             VALUES ('vf_old', '+447400000009', 'GB', 'pending', 'sms', 'en', 6, $1, $1, 5, 5, '{}', 1, 600001, 1)",
            "INSERT INTO messages (id, verification_id, channel, carrier, status, due_at_ms, carrier_message_id, detail, created_at_ms, updated_at_ms) \
             VALUES ('msg_old1', 'vf_old', 'sms', 'sim', 'delivered', 1, 'sim-1', 'stat:DELIVRD', 1, 2)",
            "INSERT INTO messages (id, verification_id, channel, carrier, status, due_at_ms, claim_token, claim_expires_at_ms, created_at_ms, updated_at_ms) \
             VALUES ('msg_old2', 'vf_old', 'voice', 'sim', 'sending', 1, 'token', 99, 1, 2)",
            "INSERT INTO notifications (id, to_e164, region_code, time_zones, category, body, channel, carrier, fallback_carriers, status, \
             due_at_ms, decision, created_at_ms, updated_at_ms) \
             VALUES ('nt_abc', '+919812345678', 'IN', 'Asia/Calcutta', 'MARKETING', 'Sale!', 'sms', 'sim', 'backup', 'scheduled', \
             5000, 'deferred', 1, 1)",
            "INSERT INTO events (event_type, verification_id, message_id, channel, carrier, delivery_status, verification_status, detail, created_at_ms) \
             VALUES ('message_delivered', 'vf_old', 'msg_old1', 'sms', 'sim', 'delivered', 'pending', 'stat:DELIVRD', 2)",
            "INSERT INTO events (event_type, verification_id, message_id, channel, carrier, delivery_status, verification_status, detail, created_at_ms) \
             VALUES ('notification_scheduled', 'nt_abc', 'nt_abc', 'sms', 'sim', 'queued', 'pending', 'deferred', 1)",
        ] {
            let query = sqlx::query(statement);
            let query = if statement.contains("$1") {
                query.bind(vec![0u8; 4])
            } else {
                query
            };
            query.execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    async fn messages_detail(db: &TestDb, id: &str) -> String {
        let mut tx = db.store.begin().await.unwrap();
        let message = tx.read_message(id).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        message.detail
    }

    async fn check(db: &TestDb) {
        let verification = Subject::Verification("vf_old".into());
        let messages = db.store.messages_of(&verification).await.unwrap();
        let states: Vec<(&str, DeliveryStatus, Option<&str>)> = messages
            .iter()
            .map(|m| (m.id.as_str(), m.status, m.carrier_message_id.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                ("msg_old1", DeliveryStatus::Delivered, Some("sim-1")),
                ("msg_old2", DeliveryStatus::MaybeSent, None)
            ]
        );
        let notification = db.store.notification("nt_abc").await.unwrap().unwrap();
        assert_eq!(notification.body, "Sale!");
        let messages = db.store.messages_of(&notification.subject()).await.unwrap();
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message.id, "msg_abc");
        assert_eq!(
            (
                message.status,
                message.due_at_ms,
                message.fallback_carriers.clone()
            ),
            (DeliveryStatus::Scheduled, 5000, vec!["backup".to_string()])
        );
        assert_eq!(
            messages_detail(db, "msg_old2").await,
            "verifyd was upgraded while this message was being handed to sim; not sent again: the carrier may have it"
        );
        let events = db.store.events_after(0, None, None, 10).await.unwrap();
        assert_eq!(events.len(), 3);
        let explained = &events[2].event;
        assert_eq!(explained.kind, EventKind::MessageMaybeSent);
        assert_eq!(explained.message.as_ref().unwrap().id, "msg_old2");
        assert_eq!(
            explained.subject_status,
            SubjectStatus::Verification(VerificationStatus::Pending)
        );
        assert_eq!(events[0].event.subject, verification);
        assert_eq!(
            events[0].event.subject_status,
            SubjectStatus::Verification(VerificationStatus::Pending)
        );
        let scheduled = &events[1].event;
        assert_eq!(scheduled.subject, notification.subject());
        assert_eq!(scheduled.message.as_ref().unwrap().id, "msg_abc");
        assert_eq!(
            scheduled.subject_status,
            SubjectStatus::Notification(crate::domain::NotificationStatus::Scheduled)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let db = TestDb::sqlite_prepared(|url| write_old_data(url, false)).await;
        check(&db).await;
        db.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let db = TestDb::postgres_prepared(|url| write_old_data(url, true)).await;
        check(&db).await;
        db.drop().await;
    }
}

/// Sixty writes at once: on SQLite they share batches; the ones that fail (a duplicate key, a write
/// dropped half-way, one rolled back) leave nothing behind and take nothing of the others
/// with them. Each answer comes after its data is readable by others.
async fn writes_that_arrive_together_commit_together_and_fail_alone(db: &TestDb) {
    let taken = verification("vf_taken", "+447400009999");
    insert(db, &taken, &[]).await;
    let writes = (0..60).map(|n| async move {
        let id = if n % 10 == 3 {
            "vf_taken".to_string()
        } else {
            format!("vf_{n}")
        };
        let v = verification(&id, &format!("+4474000{n:05}"));
        let mut tx = db.store.begin().await?;
        tx.insert_message(&message(&format!("msg_{n}"), v.subject(), "smsc"))
            .await?;
        // A duplicate id fails here, after the message went in.
        tx.insert_verification(&v).await?;
        match n % 10 {
            5 => {
                drop(tx);
                return Ok(false);
            }
            7 => {
                tx.rollback().await?;
                return Ok(false);
            }
            _ => {}
        }
        tx.record([Event {
            service_id: DEFAULT_SERVICE.into(),
            kind: EventKind::VerificationCreated,
            subject: v.subject(),
            message: None,
            subject_status: SubjectStatus::Verification(VerificationStatus::Pending),
            detail: "created".into(),
            at_ms: NOW,
        }]);
        tx.commit().await?;
        let visible = db.store.verification(&id).await?.is_some();
        Ok::<bool, StoreError>(visible)
    });
    let results = futures::future::join_all(writes).await;
    assert_writes_ended(db, &results, &[3], &[5, 7]).await;
    let events = db.store.events_after(0, None, None, 100).await.unwrap();
    assert_eq!(events.len(), 42, "one event per committed write");
    if let Some((batches, writes)) = db.store.commit_counts() {
        assert_eq!(writes, 43, "the 42 and the first insert");
        assert!(batches < writes, "writes shared commits: {batches} batches");
    }
}

/// The same through [`SqlStore::write`] (on SQLite, work run on the writer's thread): a write
/// that fails, one that panics and one that discards what it did leave nothing behind, take
/// nothing of the others with them, and the writer goes on; each answer comes after its data
/// is readable by others.
async fn writes_run_by_the_store_commit_together_and_fail_alone(db: &TestDb) {
    let taken = verification("vf_taken", "+447400009999");
    insert(db, &taken, &[]).await;
    let writes = (0..40).map(|n| async move {
        let id = if n % 10 == 3 {
            "vf_taken".to_string()
        } else {
            format!("vf_{n}")
        };
        let v = verification(&id, &format!("+4474000{n:05}"));
        let written = db
            .store
            .write(move |tx| {
                Box::pin(async move {
                    tx.insert_message(&message(&format!("msg_{n}"), v.subject(), "smsc"))
                        .await?;
                    // A duplicate id fails here, after the message went in.
                    tx.insert_verification(&v).await?;
                    match n % 10 {
                        5 => panic!("write {n} panics half-way"),
                        7 => tx.discard(),
                        _ => tx.record([Event {
                            service_id: DEFAULT_SERVICE.into(),
                            kind: EventKind::VerificationCreated,
                            subject: v.subject(),
                            message: None,
                            subject_status: SubjectStatus::Verification(
                                VerificationStatus::Pending,
                            ),
                            detail: "created".into(),
                            at_ms: NOW,
                        }]),
                    }
                    Ok::<_, StoreError>(n)
                })
            })
            .await?;
        assert_eq!(written, n);
        Ok::<bool, StoreError>(db.store.verification(&id).await?.is_some())
    });
    let results = futures::future::join_all(writes).await;
    assert_writes_ended(db, &results, &[3, 5], &[7]).await;
    let events = db.store.events_after(0, None, None, 100).await.unwrap();
    assert_eq!(events.len(), 28, "one event per committed write");
}

/// A write whose caller gives up (a client's deadline passing) before its turn on SQLite's
/// writer keeps nothing, as a PostgreSQL transaction dropped before its commit; the writer
/// goes on. (On PostgreSQL nothing holds the write back, so it commits at once.)
async fn a_write_given_up_before_its_turn_keeps_nothing(db: &TestDb) {
    if db.is_postgres() {
        return;
    }
    // A transaction begun by a task holds the writer meanwhile.
    let holder = db.store.begin().await.unwrap();
    let v = verification("vf_given_up", "+447400001234");
    let write = db
        .store
        .write(move |tx| Box::pin(async move { tx.insert_verification(&v).await }));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), write)
            .await
            .is_err(),
        "the write waits for the writer"
    );
    holder.rollback().await.unwrap();
    let later = verification("vf_later", "+447400005678");
    db.store
        .write(move |tx| Box::pin(async move { tx.insert_verification(&later).await }))
        .await
        .unwrap();
    assert!(db.store.verification("vf_later").await.unwrap().is_some());
    assert!(
        db.store
            .verification("vf_given_up")
            .await
            .unwrap()
            .is_none(),
        "the write given up was not run"
    );
}

/// Checks how the writes of the two tests above ended: write `n` failed when `n % 10` is in
/// `failed`, kept nothing when it is in `undone`, and was readable when answered otherwise;
/// only the last kept their message, and the failed ones left none under the id they reused.
async fn assert_writes_ended(
    db: &TestDb,
    results: &[Result<bool, StoreError>],
    failed: &[usize],
    undone: &[usize],
) {
    for (n, result) in results.iter().enumerate() {
        if failed.contains(&(n % 10)) {
            assert!(result.is_err(), "write {n} failed: {result:?}");
        } else if undone.contains(&(n % 10)) {
            assert!(matches!(result, Ok(false)), "write {n}: {result:?}");
        } else {
            assert!(
                matches!(result, Ok(true)),
                "write {n} is readable when answered: {result:?}"
            );
        }
        let committed = !failed.contains(&(n % 10)) && !undone.contains(&(n % 10));
        let messages = db
            .store
            .messages_of(&Subject::Verification(format!("vf_{n}")))
            .await
            .unwrap();
        assert_eq!(
            messages.len(),
            usize::from(committed),
            "messages of write {n}"
        );
    }
    let stray = db
        .store
        .messages_of(&Subject::Verification("vf_taken".into()))
        .await
        .unwrap();
    assert!(
        stray.is_empty(),
        "the failed writes' messages are rolled back"
    );
}

/// A watcher that has read up to cursor N never later finds an event at or below N: on
/// PostgreSQL a transaction that wrote its event first but commits last still gets a cursor
/// above those already read. (SQLite has one writer: commit order is insertion order.)
async fn an_event_committed_late_gets_a_cursor_after_those_seen(db: &TestDb) {
    let event = |id: &str| Event {
        service_id: DEFAULT_SERVICE.into(),
        kind: EventKind::NotificationScheduled,
        subject: Subject::Notification(id.into()),
        message: None,
        subject_status: SubjectStatus::Notification(crate::domain::NotificationStatus::Scheduled),
        detail: "held".into(),
        at_ms: NOW,
    };
    let mut slow = None;
    if db.is_postgres() {
        use sqlx::{Connection, Executor};
        let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
        connection.execute("BEGIN").await.unwrap();
        connection
            .execute(
                "INSERT INTO event_inbox (event_type, subject_kind, subject_id, subject_status, created_at_ms) \
                 VALUES ('notification_scheduled', 'notification', 'nt_slow', 'scheduled', 1)",
            )
            .await
            .unwrap();
        slow = Some(connection);
    }
    let mut tx = db.store.begin().await.unwrap();
    tx.record([event("nt_fast")]);
    tx.commit().await.unwrap();
    let seen = db.store.events_after(0, None, None, 10).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].event.subject.id(), "nt_fast");
    let Some(mut slow) = slow else { return };
    use sqlx::Executor;
    slow.execute("COMMIT").await.unwrap();
    // Another process's commit: this one's sequencer finds it within its next pass.
    let mut late = Vec::new();
    for _ in 0..50 {
        late = db
            .store
            .events_after(seen[0].cursor, None, None, 10)
            .await
            .unwrap();
        if !late.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        late.len(),
        1,
        "the late event comes after the cursor already read"
    );
    assert_eq!(late[0].event.subject.id(), "nt_slow");
}

/// Another process holding SQLite's write lock: a write waits for it (in SQLite's busy
/// handler, off the async threads) and then commits, instead of failing.
async fn a_write_waits_for_another_process_holding_the_sqlite_lock(db: &TestDb) {
    if db.is_postgres() {
        return;
    }
    let path = db
        .url
        .strip_prefix("sqlite://")
        .expect("an SQLite URL")
        .to_string();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        other.execute_batch("COMMIT").unwrap();
    });
    let started = std::time::Instant::now();
    insert(db, &verification("vf_waited", "+447400000077"), &[]).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the write waited for the lock"
    );
    release.await.unwrap();
    assert!(db.store.verification("vf_waited").await.unwrap().is_some());
}

/// On SQLite, when flushing the log fails, whether the last commits are on disk is unknown:
/// the write is not acknowledged, and the store refuses every later write and read instead of
/// answering from data that may be lost. (Here the log is deleted under the store, so the
/// flush cannot find it.)
async fn a_failed_flush_of_the_log_stops_writes_and_reads(db: &TestDb) {
    if db.is_postgres() {
        return;
    }
    let before = verification("vf_before", "+447400001111");
    insert(db, &before, &[]).await;
    let path = db.url.trim_start_matches("sqlite://").to_string();
    std::fs::remove_file(format!("{path}-wal")).unwrap();
    let after = verification("vf_after", "+447400002222");
    let written = db
        .store
        .write(move |tx| Box::pin(async move { tx.insert_verification(&after).await }))
        .await;
    let error = written.expect_err("a write whose flush failed is not acknowledged");
    assert!(
        error.to_string().contains("could not be made durable"),
        "{error}"
    );
    let refused = db.store.verification("vf_before").await;
    assert!(refused.is_err(), "reads stop too: {refused:?}");
    let next = verification("vf_next", "+447400003333");
    let refused = db
        .store
        .write(move |tx| Box::pin(async move { tx.insert_verification(&next).await }))
        .await;
    assert!(refused.is_err(), "later writes are refused: {refused:?}");
}

async fn saved_messages_are_written_together_and_read_back_by_their_write(db: &TestDb) {
    let v = verification("vf_1", "+447400000009");
    let originals: Vec<OutboxMessage> = (0..5)
        .map(|i| message(&format!("msg_{i}"), v.subject(), "smsc"))
        .collect();
    insert(db, &v, &originals.iter().collect::<Vec<_>>()).await;
    let changed = |m: &OutboxMessage, detail: &str| {
        let mut m = m.clone();
        m.status = DeliveryStatus::Submitted;
        m.carrier_message_id = Some(format!("C-{}", m.id));
        m.claimed_by = None;
        m.detail = detail.into();
        m.updated_at_ms = NOW + 5;
        m
    };

    // Saved several times (the last save counts), then read back by the same write.
    let mut tx = db.store.begin().await.unwrap();
    for m in &originals[..4] {
        tx.save_message(&changed(m, "first")).await.unwrap();
    }
    let last = changed(&originals[1], "second");
    tx.save_message(&last).await.unwrap();
    assert_eq!(tx.read_message("msg_1").await.unwrap(), Some(last.clone()));
    // A savepoint that fails takes its saves with it; one that succeeds keeps them.
    let rolled_back = changed(&originals[4], "rolled back");
    let failed: Result<(), StoreError> = tx
        .isolated(|tx| {
            Box::pin(async move {
                tx.save_message(&rolled_back).await?;
                Err(StoreError::Corrupt("refused".into()))
            })
        })
        .await;
    assert!(failed.is_err());
    let kept = changed(&originals[3], "kept");
    let kept_in = kept.clone();
    tx.isolated(|tx| Box::pin(async move { tx.save_message(&kept_in).await }))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let stored = db.store.messages_of(&v.subject()).await.unwrap();
    let details: Vec<&str> = stored.iter().map(|m| m.detail.as_str()).collect();
    assert_eq!(details, ["first", "second", "first", "kept", "route"]);
    assert_eq!(stored[1], last);
    assert_eq!(stored[3], kept);

    // A message that does not exist fails the write that saved it, and nothing of it stays.
    let mut tx = db.store.begin().await.unwrap();
    tx.save_message(&changed(&originals[4], "with a ghost"))
        .await
        .unwrap();
    tx.save_message(&changed(
        &message("msg_ghost", v.subject(), "smsc"),
        "ghost",
    ))
    .await
    .unwrap();
    assert!(tx.commit().await.is_err());
    let stored = db.store.messages_of(&v.subject()).await.unwrap();
    assert_eq!(stored[4].detail, "route");
}

async fn conversion_rollups_add_up_by_hour_and_day_and_move_their_cursor_once(db: &TestDb) {
    use crate::domain::conversion::{DAY_MS, Dimension, HOUR_MS, Rollup, StatsQuery};
    use crate::domain::{Event, MessageFacts};

    // A verification in Great Britain now and one in Honduras a day later, each with a message.
    let mut gb = verification("vf_gb", "+447400000001");
    gb.region_code = Some("GB".into());
    let mut hn = verification("vf_hn", "+50490000001");
    hn.region_code = Some("HN".into());
    hn.created_at_ms = NOW + DAY_MS;
    let mut gb_sms = message("msg_gb", gb.subject(), "uk");
    gb_sms.status = DeliveryStatus::Submitted;
    let mut hn_sms = message("msg_hn", hn.subject(), "hn");
    hn_sms.status = DeliveryStatus::Delivered;
    hn_sms.created_at_ms = NOW + DAY_MS;
    hn_sms.due_at_ms = NOW + DAY_MS;
    insert(db, &gb, &[&gb_sms]).await;
    insert(db, &hn, &[&hn_sms]).await;
    let records = db
        .store
        .verification_records(&["vf_gb".into(), "vf_hn".into(), "vf_missing".into()])
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records["vf_hn"].region, "HN");
    assert_eq!(records["vf_hn"].messages.len(), 1);
    assert_eq!(records["vf_hn"].messages[0].carrier, "hn");

    let sent = |record: &crate::domain::conversion::VerificationRecord, m: &OutboxMessage| Event {
        kind: EventKind::MessageSubmitted,
        service_id: DEFAULT_SERVICE.into(),
        subject: m.subject.clone(),
        message: Some(MessageFacts {
            id: m.id.clone(),
            channel: m.channel,
            carrier: m.carrier.clone(),
            status: DeliveryStatus::Submitted,
            previous_status: Some(DeliveryStatus::Sending),
        }),
        subject_status: SubjectStatus::Verification(VerificationStatus::Pending),
        detail: String::new(),
        at_ms: record.created_at_ms,
    };
    let ended = |subject: Subject, kind, status, at_ms| Event {
        kind,
        service_id: DEFAULT_SERVICE.into(),
        subject,
        message: None,
        subject_status: SubjectStatus::Verification(status),
        detail: String::new(),
        at_ms,
    };
    let mut first = Rollup::new();
    first.count(
        &sent(&records["vf_gb"], &gb_sms),
        &records["vf_gb"],
        |_, _| Some(0.01),
    );
    first.count(
        &ended(
            gb.subject(),
            EventKind::VerificationApproved,
            VerificationStatus::Approved,
            NOW + 5_000,
        ),
        &records["vf_gb"],
        |_, _| None,
    );
    let mut second = Rollup::new();
    second.count(
        &sent(&records["vf_hn"], &hn_sms),
        &records["vf_hn"],
        |_, _| None,
    );
    second.count(
        &ended(
            hn.subject(),
            EventKind::VerificationExpired,
            VerificationStatus::Expired,
            NOW + DAY_MS + 600_000,
        ),
        &records["vf_hn"],
        |_, _| None,
    );
    // The same events once more (say, in the same hour): counts add up.
    second.count(
        &sent(&records["vf_gb"], &gb_sms),
        &records["vf_gb"],
        |_, _| Some(0.01),
    );

    async fn add(store: &SqlStore, from: i64, to: i64, rollup: Rollup) -> bool {
        store
            .write(move |tx| {
                Box::pin(async move { tx.add_conversion_rollup(from, to, &rollup).await })
            })
            .await
            .unwrap()
    }
    assert_eq!(db.store.conversion_rollup_cursor().await.unwrap(), 0);
    assert!(add(&db.store, 0, 10, first).await);
    // Another replica that read the cursor at 0 too: nothing written.
    assert!(!add(&db.store, 0, 10, Rollup::new()).await);
    assert!(add(&db.store, 10, 20, second).await);
    assert_eq!(db.store.conversion_rollup_cursor().await.unwrap(), 20);

    let day = NOW.div_euclid(DAY_MS) * DAY_MS;
    let query = |group_by: Vec<Dimension>, from_ms: i64, to_ms: i64| StatsQuery {
        from_ms,
        to_ms,
        group_by,
        service_id: None,
        countries: Vec::new(),
        channel: None,
    };
    // Whole days come from the daily table, hours from the hourly one: the same sums.
    let by_country_days = db
        .store
        .conversion_stats(&query(vec![Dimension::Country], day, day + 2 * DAY_MS))
        .await
        .unwrap();
    let by_country_hours = db
        .store
        .conversion_stats(&query(
            vec![Dimension::Country],
            day - HOUR_MS,
            day + 2 * DAY_MS + HOUR_MS,
        ))
        .await
        .unwrap();
    assert_eq!(by_country_days, by_country_hours);
    let figures: Vec<_> = by_country_days
        .iter()
        .map(|row| {
            (
                row.group.country.clone().unwrap(),
                row.tally.verifications,
                row.tally.approved,
                row.tally.sent,
                row.tally.cost_micros,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [
            ("GB".into(), 1, 1, 2, 20_000),
            ("HN".to_string(), 1, 0, 1, 0)
        ]
    );
    // By day and carrier; by hour; filtered.
    let by_day = db
        .store
        .conversion_stats(&query(
            vec![Dimension::Day, Dimension::Carrier],
            day,
            day + 2 * DAY_MS,
        ))
        .await
        .unwrap();
    let days: Vec<_> = by_day
        .iter()
        .map(|row| {
            (
                row.group.period_start_ms.unwrap(),
                row.group.carrier.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [(day, "uk".to_string()), (day + DAY_MS, "hn".to_string())]
    );
    let by_hour = db
        .store
        .conversion_stats(&query(vec![Dimension::Hour], day, day + 2 * DAY_MS))
        .await
        .unwrap();
    assert_eq!(by_hour.len(), 2);
    assert_eq!(
        by_hour[0].group.period_start_ms,
        Some(NOW.div_euclid(HOUR_MS) * HOUR_MS)
    );
    let mut only_hn = query(vec![Dimension::Channel], day, day + 2 * DAY_MS);
    only_hn.countries = vec!["HN".into()];
    only_hn.service_id = Some(DEFAULT_SERVICE.into());
    only_hn.channel = Some(Channel::Sms);
    let hn_rows = db.store.conversion_stats(&only_hn).await.unwrap();
    assert_eq!(hn_rows.len(), 1);
    assert_eq!(hn_rows[0].group.channel.as_deref(), Some("sms"));
    assert_eq!(hn_rows[0].tally.verifications, 1);
    only_hn.service_id = Some("other".into());
    assert!(
        db.store
            .conversion_stats(&only_hn)
            .await
            .unwrap()
            .is_empty()
    );
}
