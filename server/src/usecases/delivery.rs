//! The outbox side of delivery, for the dispatcher and the receipt recorder: claiming due
//! messages under a dispatcher's lease, settling each attempt, applying receipts (or keeping
//! those that come early), and taking over the messages of a dispatcher that died.

use std::collections::BTreeMap;

use verify_carrier::{DeliveryReceipt, ReceiptStatus};

use crate::domain::{
    Attempt, DeliveryStatus, OutboxMessage, ReceiptEffect, SendOutcome, Subject, SubjectState,
    VerificationStatus,
};
use crate::store::{
    EarlyReceipts, EventLog, KeptReceipt, Outbox, SqlStore, StoreError, StoreResult,
    VerificationRepository, WorkerRecord, Workers, WriteTx,
};

/// Claims up to `limit` due messages for dispatcher `worker`.
pub async fn claim(
    store: &SqlStore,
    worker: &str,
    now_ms: i64,
    limit: u32,
) -> StoreResult<Vec<OutboxMessage>> {
    let worker = worker.to_string();
    store
        .write_background(move |tx| {
            Box::pin(async move {
                let claimed = tx.claim_due_messages(&worker, now_ms, limit).await?;
                if claimed.is_empty() {
                    tx.discard();
                }
                Ok(claimed)
            })
        })
        .await
}

/// In one transaction: settles the claimed messages that will not be handed over (each with
/// its claimed attempt number and how it ended), and marks `to_send` as being handed to their
/// carriers. Returns the messages `worker` still held, with their attempt, which alone may be
/// handed over.
pub async fn settle_and_hand_off(
    store: &SqlStore,
    worker: &str,
    settled: Vec<(String, u32, SendOutcome)>,
    to_send: &[String],
    now_ms: i64,
) -> StoreResult<Vec<(String, u32)>> {
    let worker = worker.to_string();
    let to_send = to_send.to_vec();
    store
        .write_background(move |tx| {
            Box::pin(async move {
                let outcomes = settled
                    .into_iter()
                    .map(|(id, number, outcome)| {
                        let attempt = Attempt {
                            worker: worker.clone(),
                            number,
                        };
                        (id, attempt, outcome)
                    })
                    .collect();
                settle_batch(tx, outcomes, now_ms).await?;
                tx.hand_off(&worker, &to_send, now_ms).await
            })
        })
        .await
}

/// Records how `attempt` to send message `id` ended; `false` when that attempt was already
/// over (settled elsewhere, or the message taken over) and nothing changed.
pub async fn record_outcome(
    store: &SqlStore,
    id: &str,
    attempt: &Attempt,
    outcome: SendOutcome,
    now_ms: i64,
) -> StoreResult<bool> {
    let outcome = (id.to_string(), attempt.clone(), outcome);
    let applied = record_outcomes(store, std::slice::from_ref(&outcome), now_ms).await?;
    Ok(applied[0])
}

/// Records how several attempts ended, in one transaction; says for each whether it changed
/// its message (see [`record_outcome`]). Messages come in the order given.
pub async fn record_outcomes(
    store: &SqlStore,
    outcomes: &[(String, Attempt, SendOutcome)],
    now_ms: i64,
) -> StoreResult<Vec<bool>> {
    let outcomes = outcomes.to_vec();
    store
        .write_background(move |tx| {
            Box::pin(async move {
                let applied = settle_batch(tx, outcomes, now_ms).await?;
                if !applied.contains(&true) {
                    tx.discard();
                }
                Ok(applied)
            })
        })
        .await
}

/// Settles how attempts ended, in the transaction `tx` (see [`record_outcomes`]): their
/// messages locked with their subjects at once, in the order every batch locks in.
async fn settle_batch(
    tx: &mut WriteTx,
    outcomes: Vec<(String, Attempt, SendOutcome)>,
    now_ms: i64,
) -> StoreResult<Vec<bool>> {
    let ids = sorted_unique(outcomes.iter().map(|(id, ..)| id.clone()));
    let mut locked = lock_batch_with_subjects(tx, &ids).await?;
    let receipts_kept = tx.has_kept_receipts().await?;
    let mut applied = Vec::with_capacity(outcomes.len());
    for (id, attempt, outcome) in outcomes {
        // A message named twice is read again: the first outcome changed it.
        let found = match locked.remove(&id) {
            Some(found) => Some(found),
            None => lock_with_subject(tx, &id).await?,
        };
        let Some((message, state)) = found else {
            applied.push(false);
            continue;
        };
        applied.push(
            settle_locked(tx, message, state, &attempt, outcome, now_ms, receipts_kept).await?,
        );
    }
    Ok(applied)
}

/// Settles `attempt` of a message locked with its subject; kept receipts are looked for only
/// when `receipts_kept` says some may be.
async fn settle_locked(
    tx: &mut WriteTx,
    mut message: OutboxMessage,
    state: SubjectState,
    attempt: &Attempt,
    outcome: SendOutcome,
    now_ms: i64,
    receipts_kept: bool,
) -> StoreResult<bool> {
    let Some(event) = message.settle(outcome, attempt, state, now_ms) else {
        return Ok(false);
    };
    tx.save_message(&message).await?;
    tx.record([event]);
    if message.status == DeliveryStatus::Failed {
        fail_step(tx, &message, &message.detail.clone(), now_ms).await?;
    }
    if receipts_kept
        && matches!(
            message.status,
            DeliveryStatus::Submitted | DeliveryStatus::MaybeSent
        )
    {
        apply_kept_receipts_to(tx, &mut message, state, now_ms).await?;
    }
    Ok(true)
}

/// The messages of `ids` with how their events show their subjects, by message id, locked in
/// the order every batch takes them: all their verifications first, by id, then the messages,
/// by id (one statement for each, instead of three for every message). Messages that do not
/// exist are left out.
async fn lock_batch_with_subjects(
    tx: &mut WriteTx,
    ids: &[String],
) -> StoreResult<BTreeMap<String, (OutboxMessage, SubjectState)>> {
    lock_read_batch_with_subjects(tx, ids, Vec::new()).await
}

/// [`lock_batch_with_subjects`] when some of the messages were already read in this
/// transaction (`read`): only the others are read again before locking.
async fn lock_read_batch_with_subjects(
    tx: &mut WriteTx,
    ids: &[String],
    read: Vec<OutboxMessage>,
) -> StoreResult<BTreeMap<String, (OutboxMessage, SubjectState)>> {
    let wanted: std::collections::HashSet<&String> = ids.iter().collect();
    let mut peeks: Vec<OutboxMessage> = read
        .into_iter()
        .filter(|message| wanted.contains(&message.id))
        .collect();
    let have: std::collections::HashSet<String> =
        peeks.iter().map(|message| message.id.clone()).collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !have.contains(*id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        peeks.extend(tx.read_messages(&missing).await?);
    }
    let verification_ids =
        sorted_unique(peeks.iter().filter_map(|message| match &message.subject {
            Subject::Verification(id) => Some(id.clone()),
            Subject::Notification(_) | Subject::Block(_) | Subject::Campaign(_) => None,
        }));
    let statuses: std::collections::HashMap<String, VerificationStatus> = tx
        .lock_verification_statuses(&verification_ids)
        .await?
        .into_iter()
        .collect();
    let messages = if tx.reads_are_locked() {
        // Nothing can have changed the messages since they were read.
        peeks
    } else {
        tx.lock_messages_by_ids(ids).await?
    };
    let mut locked = BTreeMap::new();
    for message in messages {
        let state = match &message.subject {
            Subject::Verification(id) => {
                SubjectState::Verification(*statuses.get(id).ok_or_else(|| {
                    StoreError::Corrupt(format!("message of missing verification {id}"))
                })?)
            }
            Subject::Notification(_) => SubjectState::Notification,
            Subject::Campaign(_) => SubjectState::Campaign,
            Subject::Block(id) => return Err(message_of_block(id)),
        };
        locked.insert(message.id.clone(), (message, state));
    }
    Ok(locked)
}

/// A message and how its events show its subject, locked in the order every writer takes
/// them: a verification first, then its messages (so a check and a receipt for the same
/// verification never wait for each other in a circle).
async fn lock_with_subject(
    tx: &mut WriteTx,
    id: &str,
) -> StoreResult<Option<(OutboxMessage, SubjectState)>> {
    let Some(peek) = tx.read_message(id).await? else {
        return Ok(None);
    };
    lock_read_message(tx, peek).await
}

/// [`lock_with_subject`] for a message already read (without a lock).
async fn lock_read_message(
    tx: &mut WriteTx,
    peek: OutboxMessage,
) -> StoreResult<Option<(OutboxMessage, SubjectState)>> {
    let state = match &peek.subject {
        Subject::Verification(verification_id) => tx
            .lock_verification_status(verification_id)
            .await?
            .map(SubjectState::Verification)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("message of missing verification {verification_id}"))
            })?,
        Subject::Notification(_) => SubjectState::Notification,
        Subject::Campaign(_) => SubjectState::Campaign,
        Subject::Block(id) => return Err(message_of_block(id)),
    };
    if tx.reads_are_locked() {
        // Nothing can have changed the message since it was read.
        return Ok(Some((peek, state)));
    }
    Ok(tx
        .lock_message(&peek.id)
        .await?
        .map(|message| (message, state)))
}

/// How a message's events show its subject, read without a lock (for messages already
/// locked by a path that never locks their verification).
async fn subject_state(tx: &mut WriteTx, subject: &Subject) -> StoreResult<SubjectState> {
    match subject {
        Subject::Verification(id) => tx
            .verification_status(id)
            .await?
            .map(SubjectState::Verification)
            .ok_or_else(|| StoreError::Corrupt(format!("message of missing verification {id}"))),
        Subject::Notification(_) => Ok(SubjectState::Notification),
        Subject::Campaign(_) => Ok(SubjectState::Campaign),
        Subject::Block(id) => Err(message_of_block(id)),
    }
}

/// A message whose subject is a block: blocks send nothing, so the store is corrupt.
fn message_of_block(id: &str) -> StoreError {
    StoreError::Corrupt(format!("message of block {id}"))
}

/// A verification's message failed: its workflow's next step is due now.
async fn fail_step(
    tx: &mut WriteTx,
    message: &OutboxMessage,
    reason: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let Subject::Verification(id) = &message.subject else {
        return Ok(());
    };
    if let Some(mut verification) = tx.lock_verification(id).await?
        && verification.step_message_failed(message.step, reason, now_ms)
    {
        tx.save_verification(&verification).await?;
    }
    Ok(())
}

/// Applies the receipts that came before the message's submission was recorded.
async fn apply_kept_receipts_to(
    tx: &mut WriteTx,
    message: &mut OutboxMessage,
    state: SubjectState,
    now_ms: i64,
) -> StoreResult<()> {
    let kept = tx
        .take_receipts_for(
            &message.carrier,
            message.carrier_message_id.as_deref(),
            &message.id,
        )
        .await?;
    for receipt in kept {
        apply_receipt(tx, message, state, receipt.status, &receipt.detail, now_ms).await?;
    }
    Ok(())
}

/// Applies one receipt to a message (locked with its subject); `Early` and `Duplicate` change
/// nothing here.
async fn apply_receipt(
    tx: &mut WriteTx,
    message: &mut OutboxMessage,
    state: SubjectState,
    status: ReceiptStatus,
    detail: &str,
    now_ms: i64,
) -> StoreResult<ReceiptEffect> {
    let accepted_at_ms = message.updated_at_ms;
    let effect = message.receipt(status, detail, state, now_ms);
    if let ReceiptEffect::Applied(event) = &effect {
        let span = tracing::info_span!(
            "receipt",
            otel.name = "receipt",
            message_id = %message.id,
            carrier = %message.carrier,
            status = message.status.as_str(),
        );
        crate::telemetry::continue_from(&span, message.trace_parent.as_deref());
        drop(span);
        // The message's last change before the receipt was its acceptance.
        crate::metrics::metrics().receipt(&message.carrier, accepted_at_ms, now_ms);
        tx.save_message(message).await?;
        tx.record([event.clone()]);
        if message.status == DeliveryStatus::Failed {
            let reason = format!("{}: {detail}", message.carrier);
            fail_step(tx, message, &reason, now_ms).await?;
        }
    }
    Ok(effect)
}

/// What a batch of receipts did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiptTally {
    /// Receipts that changed their message.
    pub applied: usize,
    /// Receipts kept for a message whose submission is not recorded (or not known) yet.
    pub kept: usize,
    /// Receipts for messages already in a final state.
    pub duplicates: usize,
}

/// Applies a batch of receipts in one transaction: each changes its message, waits for it
/// (kept), or is a duplicate. A receipt for an unknown message never holds up the others.
pub async fn record_receipts(
    store: &SqlStore,
    receipts: &[DeliveryReceipt],
    now_ms: i64,
) -> StoreResult<ReceiptTally> {
    let receipts = receipts.to_vec();
    store
        .write_background(move |tx| {
            Box::pin(async move { record_receipts_in(tx, &receipts, now_ms).await })
        })
        .await
}

/// The transaction of [`record_receipts`].
async fn record_receipts_in(
    tx: &mut WriteTx,
    receipts: &[DeliveryReceipt],
    now_ms: i64,
) -> StoreResult<ReceiptTally> {
    let mut tally = ReceiptTally::default();
    // Which message each receipt is about (read), then all of them locked at once, in the
    // order every batch locks in (a batch locking as it goes could wait for another in a
    // circle).
    let echoed = sorted_unique(receipts.iter().filter_map(|r| r.message_id.clone()));
    // The carrier of each message a receipt names by verifyd's id, read at once.
    let echoed_messages = tx.read_messages(&echoed).await?;
    let carriers_of_echoed: std::collections::HashMap<String, String> = echoed_messages
        .iter()
        .map(|message| (message.id.clone(), message.carrier.clone()))
        .collect();
    let mut message_ids = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        message_ids.push(message_id_of(tx, receipt, &carriers_of_echoed).await?);
    }
    let ids = sorted_unique(message_ids.iter().flatten().cloned());
    let mut locked = lock_read_batch_with_subjects(tx, &ids, echoed_messages).await?;
    for (receipt, message_id) in receipts.iter().zip(&message_ids) {
        let found = message_id.as_ref().and_then(|id| locked.get_mut(id));
        let effect = match found {
            // Kept in the map as it changes: a later receipt of the batch sees the change.
            Some((message, state)) => {
                apply_receipt(tx, message, *state, receipt.status, &receipt.detail, now_ms).await?
            }
            None => ReceiptEffect::Early,
        };
        match effect {
            ReceiptEffect::Applied(_) => tally.applied += 1,
            ReceiptEffect::Duplicate => tally.duplicates += 1,
            ReceiptEffect::Early => {
                tally.kept += 1;
                let carrier_message_ids = std::iter::once(&receipt.carrier_message_id)
                    .chain(&receipt.alternative_ids)
                    .cloned()
                    .collect();
                tx.keep_receipt(&KeptReceipt {
                    carrier: receipt.carrier.clone(),
                    carrier_message_ids,
                    message_id: receipt.message_id.clone(),
                    status: receipt.status,
                    detail: receipt.detail.clone(),
                    received_at_ms: now_ms,
                })
                .await?;
            }
        }
    }
    Ok(tally)
}

/// Ids in order, each once (the order every batch locks in).
fn sorted_unique(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The id of the message a receipt is about: verifyd's id when the carrier echoed it (and the
/// message is that carrier's, as `carriers_of_echoed` says), else the message known by the
/// carrier's id or one of its other spellings. Read without locking.
async fn message_id_of(
    tx: &mut WriteTx,
    receipt: &DeliveryReceipt,
    carriers_of_echoed: &std::collections::HashMap<String, String>,
) -> StoreResult<Option<String>> {
    if let Some(echoed) = &receipt.message_id
        && carriers_of_echoed.get(echoed) == Some(&receipt.carrier)
    {
        return Ok(Some(echoed.clone()));
    }
    let spellings = std::iter::once(&receipt.carrier_message_id).chain(&receipt.alternative_ids);
    for carrier_message_id in spellings {
        if let Some(id) = tx
            .message_id_by_carrier_id(&receipt.carrier, carrier_message_id)
            .await?
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Forgets receipts kept since before `before_ms` (their message never showed up).
pub async fn forget_receipts_before(store: &SqlStore, before_ms: i64) -> StoreResult<u64> {
    let mut tx = store.begin_background().await?;
    let forgotten = tx.forget_receipts_before(before_ms).await?;
    tx.commit().await?;
    Ok(forgotten)
}

/// Registers a dispatcher (again, after it was taken for dead), with a heartbeat now.
pub async fn register_worker(store: &SqlStore, worker: &WorkerRecord) -> StoreResult<()> {
    let mut tx = store.begin_background().await?;
    tx.register_worker(worker).await?;
    tx.commit().await
}

/// Renews a dispatcher's lease; `false` when it was taken for dead meanwhile.
pub async fn heartbeat(store: &SqlStore, id: &str) -> StoreResult<bool> {
    let mut tx = store.begin_background().await?;
    let alive = tx.heartbeat(id).await?;
    tx.commit().await?;
    Ok(alive)
}

/// Takes over the messages of every dispatcher `is_dead` says died (it is given the
/// database's clock, which heartbeats are stamped with), and of holders that are not
/// registered at all: each message a dead dispatcher had not handed over is queued again; one
/// it was handing over is handed again only to a carrier that `deduplicates` (recognises
/// repeats by message id), and is otherwise maybe sent. Returns how many messages.
pub async fn take_over_dead_workers(
    store: &SqlStore,
    is_dead: impl Fn(&WorkerRecord, i64) -> bool,
    deduplicates: impl Fn(&str) -> bool,
    now_ms: i64,
) -> StoreResult<usize> {
    let mut tx = store.begin_background().await?;
    let database_now = tx.database_now_ms().await?;
    let dead: Vec<WorkerRecord> = tx
        .workers()
        .await?
        .into_iter()
        .filter(|w| is_dead(w, database_now))
        .collect();
    let orphans = tx.lock_messages_of_unregistered_holders(500).await?;
    let mut taken = abandon(&mut tx, orphans, &deduplicates, now_ms).await?;
    tx.commit().await?;
    for worker in dead {
        let mut tx = store.begin_background().await?;
        // Only one process takes a dead dispatcher over, and not one that came back.
        if !tx.remove_worker(&worker.id, worker.heartbeat_at_ms).await? {
            tx.rollback().await?;
            continue;
        }
        let held = tx.lock_messages_held_by(&worker.id).await?;
        let count = abandon(&mut tx, held, &deduplicates, now_ms).await?;
        tx.commit().await?;
        tracing::warn!(worker = %worker.id, host = %worker.host, pid = worker.pid, messages = count, "took over the messages of a dispatcher that stopped");
        taken += count;
    }
    Ok(taken)
}

/// Messages `worker` holds without a reason to (asked between its rounds, when it claims
/// nothing): those claimed go back to the queue, and those being handed over for which no
/// submission `is_submitting` are settled as a takeover would settle them. Returns how many.
pub async fn settle_stranded(
    store: &SqlStore,
    worker: &str,
    is_submitting: impl Fn(&OutboxMessage) -> bool,
    deduplicates: impl Fn(&str) -> bool,
    now_ms: i64,
) -> StoreResult<usize> {
    let mut tx = store.begin_background().await?;
    // Read first, then only the messages to change locked, in the order every batch locks in
    // (their verifications, then them): locking all it holds, oldest first, waited in a
    // circle with outcome batches.
    let to_change: Vec<String> = tx
        .messages_held_by(worker)
        .await?
        .into_iter()
        .filter(|message| message.status == DeliveryStatus::Claimed || !is_submitting(message))
        .map(|message| message.id)
        .collect();
    let mut locked: Vec<OutboxMessage> = lock_batch_with_subjects(&mut tx, &to_change)
        .await?
        .into_values()
        .map(|(message, _)| message)
        .collect();
    locked.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let mut released = 0;
    let mut stranded = Vec::new();
    for mut message in locked {
        let still_held = message.claimed_by.as_deref() == Some(worker)
            && matches!(
                message.status,
                DeliveryStatus::Claimed | DeliveryStatus::Sending
            );
        if !still_held {
            continue;
        }
        if message.release(now_ms) {
            tx.save_message(&message).await?;
            released += 1;
        } else if !is_submitting(&message) {
            stranded.push(message);
        }
    }
    let settled = abandon(&mut tx, stranded, &deduplicates, now_ms).await?;
    if released + settled == 0 {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(released + settled)
}

/// Applies the receipts kept for messages whose acceptance is now recorded: a receipt and the
/// acceptance recorded at the same moment by two transactions can each miss the other.
/// Returns how many messages got receipts.
pub async fn apply_kept_receipts(store: &SqlStore, now_ms: i64) -> StoreResult<usize> {
    let mut tx = store.begin_background().await?;
    let ids = sorted_unique(tx.messages_with_kept_receipts(100).await?.into_iter());
    let locked = lock_batch_with_subjects(&mut tx, &ids).await?;
    let mut applied = 0;
    for (mut message, state) in locked.into_values() {
        if matches!(
            message.status,
            DeliveryStatus::Submitted | DeliveryStatus::MaybeSent
        ) {
            apply_kept_receipts_to(&mut tx, &mut message, state, now_ms).await?;
            applied += 1;
        }
    }
    if applied == 0 {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(applied)
}

async fn abandon(
    tx: &mut WriteTx,
    messages: Vec<OutboxMessage>,
    deduplicates: &impl Fn(&str) -> bool,
    now_ms: i64,
) -> StoreResult<usize> {
    let mut count = 0;
    for mut message in messages {
        let state = subject_state(tx, &message.subject).await?;
        if let Some(event) = message.abandoned(deduplicates(&message.carrier), state, now_ms) {
            tx.save_message(&message).await?;
            tx.record([event]);
            count += 1;
        }
    }
    Ok(count)
}

/// Gives the messages of `ids` that `worker` claimed and did not hand over back to the queue.
pub async fn release_claims(
    store: &SqlStore,
    worker: &str,
    ids: &[String],
    now_ms: i64,
) -> StoreResult<usize> {
    let mut tx = store.begin_background().await?;
    let mut released = 0;
    for id in ids {
        if let Some(mut message) = tx.lock_message(id).await?
            && message.claimed_by.as_deref() == Some(worker)
            && message.release(now_ms)
        {
            tx.save_message(&message).await?;
            released += 1;
        }
    }
    tx.commit().await?;
    Ok(released)
}

/// A dispatcher stopping gracefully: the messages it claimed and did not hand over go back to
/// the queue, and its registration is removed.
pub async fn release_worker(store: &SqlStore, id: &str, now_ms: i64) -> StoreResult<usize> {
    let mut tx = store.begin_background().await?;
    let mut released = 0;
    for mut message in tx.lock_messages_held_by(id).await? {
        if message.release(now_ms) {
            tx.save_message(&message).await?;
            released += 1;
        }
    }
    tx.unregister_worker(id).await?;
    tx.commit().await?;
    Ok(released)
}

#[cfg(test)]
mod tests {
    use verify_carrier::Channel;

    use super::*;
    use crate::domain::{
        EventKind, MessageSpec, Verification, VerificationSpec, VerificationStatus,
    };
    use crate::on_both_databases;
    use crate::store::test_db::TestDb;

    on_both_databases!(
        a_receipt_kept_while_the_acceptance_was_recorded_is_applied_by_the_sweep,
        messages_a_live_dispatcher_holds_for_no_reason_are_settled,
        a_receipt_before_the_submission_is_applied_when_it_lands,
        receipts_match_other_spellings_and_unknown_ones_wait_apart,
        a_failed_receipt_makes_the_next_step_due_now,
        a_dead_dispatchers_messages_are_taken_over_once,
        a_stopping_dispatcher_gives_back_what_it_did_not_hand_over,
        a_late_receipt_settles_a_maybe_sent_message,
    );

    const NOW: i64 = 1_700_000_000_000;

    /// A pending verification with one message held by `worker` in `status`.
    async fn held_message(
        db: &TestDb,
        n: u32,
        carrier: &str,
        status: DeliveryStatus,
        worker: &str,
    ) -> (Verification, OutboxMessage) {
        let spec =
            VerificationSpec::example(&format!("vf_{n}"), &format!("+4474000000{n:02}"), NOW);
        let (verification, _) = Verification::start(spec, NOW);
        let (mut message, _) = OutboxMessage::queue(
            MessageSpec {
                id: format!("msg_{n}"),
                service_id: verification.service_id.clone(),
                subject: verification.subject(),
                channel: Channel::Sms,
                carrier: carrier.into(),
                fallback_carriers: Vec::new(),
                step: 0,
                trace_parent: None,
            },
            "route",
            SubjectState::Verification(VerificationStatus::Pending),
            NOW,
        );
        message.status = status;
        message.claimed_by = Some(worker.into());
        let mut tx = db.store.begin().await.unwrap();
        tx.insert_verification(&verification).await.unwrap();
        tx.insert_message(&message).await.unwrap();
        tx.commit().await.unwrap();
        (verification, message)
    }

    /// The attempt of the dispatcher that holds `message` now.
    fn attempt_of(message: &OutboxMessage) -> Attempt {
        Attempt {
            worker: message.claimed_by.clone().unwrap_or_default(),
            number: message.attempt,
        }
    }

    fn receipt(
        carrier: &str,
        id: &str,
        message_id: Option<&str>,
        status: ReceiptStatus,
    ) -> DeliveryReceipt {
        DeliveryReceipt {
            carrier: carrier.into(),
            carrier_message_id: id.into(),
            message_id: message_id.map(str::to_string),
            status,
            detail: "stat:DELIVRD".into(),
            alternative_ids: Vec::new(),
        }
    }

    async fn stored(db: &TestDb, id: &str) -> OutboxMessage {
        let mut tx = db.store.begin().await.unwrap();
        let message = tx.read_message(id).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        message
    }

    async fn event_kinds(db: &TestDb, subject: &Subject) -> Vec<EventKind> {
        db.store
            .events_after(0, Some(subject), None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.kind)
            .collect()
    }

    async fn a_receipt_kept_while_the_acceptance_was_recorded_is_applied_by_the_sweep(db: &TestDb) {
        // The race: the receipt's transaction found no message by the carrier's id, and the
        // acceptance's transaction found no kept receipt; each committed.
        let (v, mut m) = held_message(db, 11, "smsc", DeliveryStatus::Submitted, "w").await;
        m.carrier_message_id = Some("C-11".into());
        let mut tx = db.store.begin().await.unwrap();
        tx.save_message(&m).await.unwrap();
        tx.keep_receipt(&KeptReceipt {
            carrier: "smsc".into(),
            carrier_message_ids: vec!["C-11".into()],
            message_id: None,
            status: ReceiptStatus::Delivered,
            detail: "stat:DELIVRD".into(),
            received_at_ms: NOW,
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(apply_kept_receipts(&db.store, NOW + 1).await.unwrap(), 1);
        assert_eq!(stored(db, &m.id).await.status, DeliveryStatus::Delivered);
        assert_eq!(
            event_kinds(db, &v.subject()).await,
            [EventKind::MessageDelivered]
        );
        assert_eq!(apply_kept_receipts(&db.store, NOW + 2).await.unwrap(), 0);
    }

    async fn messages_a_live_dispatcher_holds_for_no_reason_are_settled(db: &TestDb) {
        let (_, claimed) = held_message(db, 12, "smsc", DeliveryStatus::Claimed, "me").await;
        let (_, running) = held_message(db, 13, "smsc", DeliveryStatus::Sending, "me").await;
        let (_, lost) = held_message(db, 14, "smsc", DeliveryStatus::Sending, "me").await;
        let settled = settle_stranded(
            &db.store,
            "me",
            |message| message.id == running.id,
            |_| false,
            NOW,
        )
        .await
        .unwrap();
        assert_eq!(settled, 2);
        assert_eq!(stored(db, &claimed.id).await.status, DeliveryStatus::Queued);
        assert_eq!(
            stored(db, &running.id).await.status,
            DeliveryStatus::Sending
        );
        assert_eq!(stored(db, &lost.id).await.status, DeliveryStatus::MaybeSent);
    }

    async fn a_receipt_before_the_submission_is_applied_when_it_lands(db: &TestDb) {
        let (v, m) = held_message(db, 1, "smsc", DeliveryStatus::Sending, "w").await;
        // The carrier's receipt overtakes the record of its acceptance.
        let early = [receipt("smsc", "C-1", None, ReceiptStatus::Delivered)];
        let tally = record_receipts(&db.store, &early, NOW + 1).await.unwrap();
        assert_eq!(tally.kept, 1);
        assert_eq!(stored(db, &m.id).await.status, DeliveryStatus::Sending);
        let accepted = SendOutcome::Accepted {
            carrier_message_id: "C-1".into(),
        };
        assert!(
            record_outcome(&db.store, &m.id, &attempt_of(&m), accepted.clone(), NOW + 2)
                .await
                .unwrap()
        );
        assert_eq!(stored(db, &m.id).await.status, DeliveryStatus::Delivered);
        assert_eq!(
            event_kinds(db, &v.subject()).await,
            [EventKind::MessageSubmitted, EventKind::MessageDelivered]
        );
        // Recording it again changes nothing.
        assert!(
            !record_outcome(&db.store, &m.id, &attempt_of(&m), accepted, NOW + 3)
                .await
                .unwrap()
        );
    }

    async fn receipts_match_other_spellings_and_unknown_ones_wait_apart(db: &TestDb) {
        let (_, m) = held_message(db, 2, "smsc", DeliveryStatus::Sending, "w").await;
        let accepted = SendOutcome::Accepted {
            carrier_message_id: "FF".into(),
        };
        record_outcome(&db.store, &m.id, &attempt_of(&m), accepted, NOW)
            .await
            .unwrap();
        // A burst of receipts for unknown ids, and the known one (in decimal) last.
        let mut batch: Vec<DeliveryReceipt> = (0..300)
            .map(|n| {
                receipt(
                    "smsc",
                    &format!("unknown-{n}"),
                    None,
                    ReceiptStatus::Delivered,
                )
            })
            .collect();
        let mut known = receipt("smsc", "255", None, ReceiptStatus::Delivered);
        known.alternative_ids = vec!["ff".into(), "FF".into()];
        batch.push(known);
        let tally = record_receipts(&db.store, &batch, NOW + 1).await.unwrap();
        assert_eq!(
            tally,
            ReceiptTally {
                applied: 1,
                kept: 300,
                duplicates: 0
            }
        );
        assert_eq!(stored(db, &m.id).await.status, DeliveryStatus::Delivered);
        // The same receipt again is a duplicate; the unknown ones are forgotten later.
        let again = record_receipts(&db.store, &batch[300..], NOW + 2)
            .await
            .unwrap();
        assert_eq!(again.duplicates, 1);
        assert_eq!(
            forget_receipts_before(&db.store, NOW + 2).await.unwrap(),
            300
        );
    }

    async fn a_failed_receipt_makes_the_next_step_due_now(db: &TestDb) {
        let (v, m) = held_message(db, 3, "smsc", DeliveryStatus::Sending, "w").await;
        let accepted = SendOutcome::Accepted {
            carrier_message_id: "C-3".into(),
        };
        record_outcome(&db.store, &m.id, &attempt_of(&m), accepted, NOW)
            .await
            .unwrap();
        let failed = [receipt("smsc", "C-3", None, ReceiptStatus::Failed)];
        record_receipts(&db.store, &failed, NOW + 5).await.unwrap();
        let verification = db.store.verification(&v.id).await.unwrap().unwrap();
        assert_eq!(verification.workflow.step_deadline_ms, Some(NOW + 5));
        assert_eq!(verification.workflow.step_failure, "smsc: stat:DELIVRD");
        assert!(verification.step_is_due(NOW + 5));
    }

    async fn a_dead_dispatchers_messages_are_taken_over_once(db: &TestDb) {
        let (_, claimed) = held_message(db, 4, "smsc", DeliveryStatus::Claimed, "dead").await;
        let (_, handing) = held_message(db, 5, "smsc", DeliveryStatus::Sending, "dead").await;
        let (_, to_webhook) = held_message(db, 6, "hook", DeliveryStatus::Sending, "dead").await;
        let (_, alive) = held_message(db, 7, "smsc", DeliveryStatus::Sending, "alive").await;
        for id in ["dead", "alive"] {
            register_worker(
                &db.store,
                &WorkerRecord {
                    id: id.into(),
                    host: "h".into(),
                    pid: 1,
                    started_at_ms: 0,
                    heartbeat_at_ms: 0,
                },
            )
            .await
            .unwrap();
        }
        let is_dead = |w: &WorkerRecord, _database_now: i64| w.id == "dead";
        let deduplicates = |carrier: &str| carrier == "hook";
        let taken = take_over_dead_workers(&db.store, is_dead, deduplicates, NOW)
            .await
            .unwrap();
        assert_eq!(taken, 3);
        assert_eq!(stored(db, &claimed.id).await.status, DeliveryStatus::Queued);
        assert_eq!(
            stored(db, &handing.id).await.status,
            DeliveryStatus::MaybeSent
        );
        assert_eq!(
            stored(db, &to_webhook.id).await.status,
            DeliveryStatus::Queued
        );
        assert_eq!(stored(db, &alive.id).await.status, DeliveryStatus::Sending);
        assert_eq!(
            event_kinds(db, &handing.subject).await,
            [EventKind::MessageMaybeSent]
        );
        // Nobody takes it over twice.
        let again = take_over_dead_workers(&db.store, is_dead, deduplicates, NOW)
            .await
            .unwrap();
        assert_eq!(again, 0);
    }

    async fn a_stopping_dispatcher_gives_back_what_it_did_not_hand_over(db: &TestDb) {
        let (_, claimed) = held_message(db, 8, "smsc", DeliveryStatus::Claimed, "me").await;
        let (_, handing) = held_message(db, 9, "smsc", DeliveryStatus::Sending, "me").await;
        assert_eq!(release_worker(&db.store, "me", NOW).await.unwrap(), 1);
        let back = stored(db, &claimed.id).await;
        assert_eq!(
            (back.status, back.claimed_by),
            (DeliveryStatus::Queued, None)
        );
        // One still being handed over is an orphan another dispatcher takes over.
        let taken = take_over_dead_workers(&db.store, |_, _| false, |_| false, NOW)
            .await
            .unwrap();
        assert_eq!(taken, 1);
        assert_eq!(
            stored(db, &handing.id).await.status,
            DeliveryStatus::MaybeSent
        );
    }

    async fn a_late_receipt_settles_a_maybe_sent_message(db: &TestDb) {
        let (v, m) = held_message(db, 10, "sim", DeliveryStatus::Sending, "w").await;
        let silent = SendOutcome::MaybeSent {
            reason: "sim: no answer within 30000 ms".into(),
        };
        record_outcome(&db.store, &m.id, &attempt_of(&m), silent, NOW)
            .await
            .unwrap();
        assert_eq!(stored(db, &m.id).await.status, DeliveryStatus::MaybeSent);
        let late = [receipt(
            "sim",
            "sim-1",
            Some(&m.id),
            ReceiptStatus::Delivered,
        )];
        let tally = record_receipts(&db.store, &late, NOW + 1).await.unwrap();
        assert_eq!(tally.applied, 1);
        assert_eq!(
            event_kinds(db, &v.subject()).await,
            [EventKind::MessageMaybeSent, EventKind::MessageDelivered]
        );
    }
}
