//! The outbox dispatcher and the receipt recorder.
//!
//! The dispatcher claims due messages (any number of servers can share one database; a claim is
//! exclusive), rebuilds each code from its nonce, renders the text, hands it to the carrier named
//! by its route, and records the outcome as events. It also expires verifications whose time ran
//! out. The receipt recorder turns carrier receipts into delivered/failed events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use verify_carrier::{DeliveryReceipt, OutboundMessage};
use verify_policy::messages::render;

use crate::carriers::CarrierSet;
use crate::codes::CodeBook;
use crate::config::DispatcherSettings;
use crate::decide::Decider;
use crate::notify::NotifyPolicy;
use crate::store::{
    ClaimedMessage, ReceiptOutcome, StepAction, StepAdvance, Store, VerificationStatus,
};
use crate::store::{NotificationOutcome, NotificationRecord};
use verify_carrier::OneTimeCode;
use verify_policy::fallback::Next;
use verify_policy::routing::LAST_RESORT_ATTRIBUTE;
use verify_policy::rules::Decision;

use crate::clock::now_ms;

/// Claims up to `limit` due items with `claim`; none when `limit` is 0 or the claim fails
/// (logged; the next round tries again).
async fn claim_or_log<T, F, Fut>(what: &str, limit: u32, claim: F) -> Vec<T>
where
    F: FnOnce(u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, crate::store::StoreError>>,
{
    if limit == 0 {
        return Vec::new();
    }
    match claim(limit).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::error!(%error, "claiming due {what} failed");
            Vec::new()
        }
    }
}

/// Sends queued messages until `shutdown` turns true, then finishes what it already claimed.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    carriers: Arc<CarrierSet>,
    decider: Arc<Decider>,
    notify: Arc<NotifyPolicy>,
    codes: CodeBook,
    settings: DispatcherSettings,
}

impl Dispatcher {
    /// A dispatcher over its parts.
    pub fn new(
        store: Arc<dyn Store>,
        carriers: Arc<CarrierSet>,
        decider: Arc<Decider>,
        notify: Arc<NotifyPolicy>,
        codes: CodeBook,
        settings: DispatcherSettings,
    ) -> Self {
        Dispatcher {
            store,
            carriers,
            decider,
            notify,
            codes,
            settings,
        }
    }

    /// Runs until `shutdown` is true and every claimed message has an outcome.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let worker = format!("dispatcher-{}", uuid::Uuid::now_v7().simple());
        let slots = Arc::new(Semaphore::new(this.settings.max_in_flight));
        let mut in_flight = JoinSet::new();
        let mut signal = this.store.event_signal();
        let mut last_sweep = 0i64;
        tracing::info!(worker, "dispatcher started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = now_ms();
            if now - last_sweep >= 1000 {
                last_sweep = now;
                this.sweep(now).await;
            }
            let free = slots
                .available_permits()
                .min(this.settings.batch_size as usize) as u32;
            let claim_until = now + (this.settings.claim_timeout_seconds * 1000) as i64;
            let claimed = claim_or_log("messages", free, |limit| {
                let token = format!("{worker}-{}", uuid::Uuid::now_v7().simple());
                let store = Arc::clone(&this.store);
                async move {
                    store
                        .claim_due_messages(&token, now, claim_until, limit)
                        .await
                }
            })
            .await;
            let free_after = free.saturating_sub(claimed.len() as u32);
            let notifications = claim_or_log("notifications", free_after, |limit| {
                let token = format!("{worker}-n-{}", uuid::Uuid::now_v7().simple());
                let store = Arc::clone(&this.store);
                async move {
                    store
                        .claim_due_notifications(&token, now, claim_until, limit)
                        .await
                }
            })
            .await;
            let got = claimed.len() + notifications.len();
            for notification in notifications {
                let permit = Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let this = Arc::clone(&this);
                in_flight.spawn(async move {
                    this.send_notification(notification).await;
                    drop(permit);
                });
            }
            for message in claimed {
                let permit = Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let this = Arc::clone(&this);
                in_flight.spawn(async move {
                    this.send(message).await;
                    drop(permit);
                });
            }
            while in_flight.try_join_next().is_some() {}
            if got as u32 == free && free > 0 {
                continue; // More may be due right now.
            }
            tokio::select! {
                _ = shutdown.wait_for(|stopping| *stopping) => break,
                _ = signal.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(this.settings.poll_interval_ms)) => {}
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            "dispatcher stopping; finishing claimed messages"
        );
        while in_flight.join_next().await.is_some() {}
        tracing::info!("dispatcher stopped");
    }

    async fn sweep(&self, now: i64) {
        match self.store.expire_due(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "verifications expired"),
            Err(error) => tracing::error!(%error, "expiring verifications failed"),
        }
        match self.store.fail_abandoned_claims(now).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(count = n, "messages abandoned mid-submission marked failed"),
            Err(error) => tracing::error!(%error, "sweeping abandoned claims failed"),
        }
        self.run_due_steps(now).await;
    }

    /// Moves every verification whose running step is over (deadline passed unchecked, or its
    /// message failed) to what its fallback strategy says: the next step's message with the
    /// same code, or a stop. Each move is conditional, so replicas never run a step twice.
    async fn run_due_steps(&self, now: i64) {
        let due = match self.store.due_steps(now, 100).await {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "reading due workflow steps failed");
                return;
            }
        };
        for step in due {
            let verification = &step.verification;
            let Some(expected_deadline_ms) = verification.step_deadline_ms else {
                continue;
            };
            let (action, detail) = match self.decider.next(&step) {
                Next::Send(plan) => {
                    // The last step has no successor to wait for.
                    let deadline_ms =
                        (plan.step + 1 < plan.of).then(|| now + plan.wait.as_millis() as i64);
                    let action = StepAction::Send {
                        message_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
                        step: plan.step as u32,
                        channel: plan.channel,
                        carrier: plan.carrier().to_string(),
                        fallback_carriers: plan.failover(),
                        deadline_ms,
                    };
                    (action, Decider::explain(&plan))
                }
                Next::Stop { reason } => (StepAction::Stop, format!("workflow stopped: {reason}")),
                Next::Ignore { reason } => {
                    tracing::debug!(verification = %verification.id, %reason, "stale workflow event");
                    (StepAction::Stop, format!("workflow stopped: {reason}"))
                }
            };
            let advance = StepAdvance {
                verification_id: verification.id.clone(),
                expected_step: verification.step,
                expected_deadline_ms,
                action,
                detail,
                now_ms: now,
            };
            match self.store.advance_step(advance).await {
                Ok(true) => tracing::info!(verification = %verification.id, "workflow step run"),
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(verification = %verification.id, %error, "running a workflow step failed")
                }
            }
        }
    }

    /// Runs a store write until it succeeds, backing off, for at most about six seconds: the
    /// outcome of a submission must not be lost to a passing database error.
    async fn retrying<'a, F, Fut>(&'a self, mut write: F) -> Result<(), crate::store::StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::store::StoreError>> + 'a,
    {
        let mut delay = Duration::from_millis(100);
        for _ in 0..6 {
            match write().await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "store write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        write().await
    }

    /// After a temporary refusal: the next carrier of the message's route gets it, or, with
    /// none left, the message fails with the reason. (A carrier that did not answer in time is
    /// not failed over: it may have sent the message, and sending twice is worse.)
    async fn fail_over_or_fail(
        &self,
        message: &crate::store::MessageRecord,
        reason: &str,
    ) -> Result<(), crate::store::StoreError> {
        match message.fallback_carriers.split_first() {
            Some((next, rest)) => {
                let detail = format!("{reason}; trying {next}");
                tracing::info!(message = %message.id, from = %message.carrier, to = %next, "failing over");
                self.retrying(|| {
                    self.store
                        .record_rerouted(&message.id, next, rest, &detail, now_ms())
                })
                .await
            }
            None => {
                let detail = format!("{reason}; no other route left");
                self.retrying(|| self.store.record_failed(&message.id, &detail, now_ms()))
                    .await
            }
        }
    }

    /// Sends one due notification if the country rules allow it now: a rule may hold it again
    /// (it is rescheduled) or refuse it (it fails with the rule's reason).
    async fn send_notification(&self, notification: NotificationRecord) {
        let now = now_ms();
        let decision = self.notify.evaluate(&notification, now);
        let outcome = match &decision {
            Decision::Reject { .. } => NotificationOutcome::Failed {
                detail: format!("not sent: {}", decision.explain()),
            },
            Decision::Defer { until, .. } => NotificationOutcome::Deferred {
                until_ms: until.timestamp_millis(),
                detail: decision.explain(),
            },
            Decision::SendNow {
                entity_id,
                template_id,
                ..
            } => {
                let mut attributes = std::collections::BTreeMap::new();
                if let Some(id) = entity_id {
                    attributes.insert("dlt_entity_id".to_string(), id.clone());
                }
                if let Some(id) = template_id {
                    attributes.insert("dlt_template_id".to_string(), id.clone());
                }
                if notification.fallback_carriers.is_empty() {
                    attributes.insert(LAST_RESORT_ATTRIBUTE.to_string(), "true".to_string());
                }
                self.submit_notification(&notification, attributes).await
            }
        };
        if let Err(error) = self
            .retrying(|| {
                self.store
                    .settle_notification(&notification.id, outcome.clone(), now_ms())
            })
            .await
        {
            tracing::error!(notification = %notification.id, %error, "recording a notification's outcome failed");
        }
    }

    async fn submit_notification(
        &self,
        notification: &NotificationRecord,
        attributes: std::collections::BTreeMap<String, String>,
    ) -> NotificationOutcome {
        let Some(carrier) = self.carriers.get(&notification.carrier) else {
            return NotificationOutcome::Failed {
                detail: format!(
                    "carrier `{}` is not configured on this server",
                    notification.carrier
                ),
            };
        };
        let outbound = OutboundMessage {
            message_id: notification.id.clone(),
            // Carriers that echo a reference (and the sim outbox) see the notification id.
            verification_id: notification.id.clone(),
            to: notification.to_e164.clone(),
            region_code: Some(notification.region_code.clone()),
            channel: notification.channel,
            body: notification.body.clone(),
            code: OneTimeCode::new(""),
            locale: "en".to_string(),
            sender: (!notification.sender.is_empty()).then(|| notification.sender.clone()),
            attributes,
        };
        let timeout = Duration::from_millis(self.settings.submit_timeout_ms);
        match tokio::time::timeout(timeout, carrier.submit(outbound)).await {
            Ok(Ok(accepted)) => NotificationOutcome::Submitted {
                carrier_message_id: accepted.carrier_message_id,
            },
            Ok(Err(error)) => {
                let reason = format!("{}: {error}", notification.carrier);
                match notification.fallback_carriers.split_first() {
                    Some((next, rest)) if error.is_temporary() => NotificationOutcome::Rerouted {
                        carrier: next.clone(),
                        rest: rest.to_vec(),
                        detail: format!("{reason}; trying {next}"),
                    },
                    _ => NotificationOutcome::Failed { detail: reason },
                }
            }
            Err(_) => NotificationOutcome::Failed {
                detail: format!(
                    "{}: no answer within {} ms; not resent, the carrier may have sent it",
                    notification.carrier, self.settings.submit_timeout_ms
                ),
            },
        }
    }

    /// The attributes a code's message carries: the program's registrations the country
    /// requires (India's DLT entity and OTP template IDs), and the last-resort mark when no
    /// route is left after this one (its breaker must not stop the message).
    fn code_attributes(
        &self,
        verification: &crate::store::VerificationRecord,
        message: &crate::store::MessageRecord,
    ) -> std::collections::BTreeMap<String, String> {
        let mut attributes = std::collections::BTreeMap::new();
        if !verification.program_id.is_empty()
            && let Decision::SendNow {
                entity_id,
                template_id,
                ..
            } = self.notify.evaluate_code(
                verification.region_code.as_deref().unwrap_or_default(),
                &[],
                message.channel,
                &verification.program_id,
                now_ms(),
            )
        {
            if let Some(id) = entity_id {
                attributes.insert("dlt_entity_id".to_string(), id);
            }
            if let Some(id) = template_id {
                attributes.insert("dlt_template_id".to_string(), id);
            }
        }
        if message.fallback_carriers.is_empty() {
            attributes.insert(LAST_RESORT_ATTRIBUTE.to_string(), "true".to_string());
        }
        attributes
    }

    async fn send(&self, claimed: ClaimedMessage) {
        let ClaimedMessage {
            message,
            verification,
        } = claimed;
        let now = now_ms();
        let result = if verification.status != VerificationStatus::Pending
            || verification.expires_at_ms <= now
        {
            let detail = if verification.status == VerificationStatus::Pending {
                "not sent: the code expired before it could be sent".to_string()
            } else {
                format!("not sent: verification {}", verification.status.as_str())
            };
            self.retrying(|| self.store.record_canceled(&message.id, &detail, now_ms()))
                .await
        } else if let Some(carrier) = self.carriers.get(&message.carrier) {
            let code = self
                .codes
                .code_for(&verification.code_nonce, verification.code_length);
            let outbound = OutboundMessage {
                message_id: message.id.clone(),
                verification_id: verification.id.clone(),
                to: verification.to_e164.clone(),
                region_code: verification.region_code.clone(),
                channel: message.channel,
                // A resend keeps the first expiry, so say what is left of it.
                body: render(
                    message.channel,
                    &verification.locale,
                    code.expose(),
                    ((verification.expires_at_ms - now).max(0) as u64)
                        .div_ceil(60_000)
                        .max(1),
                ),
                code,
                locale: verification.locale.clone(),
                sender: None,
                attributes: self.code_attributes(&verification, &message),
            };
            let timeout = Duration::from_millis(self.settings.submit_timeout_ms);
            match tokio::time::timeout(timeout, carrier.submit(outbound)).await {
                Ok(Ok(accepted)) => {
                    tracing::debug!(message = %message.id, carrier = %message.carrier, "submitted");
                    self.retrying(|| {
                        self.store.record_submitted(
                            &message.id,
                            &accepted.carrier_message_id,
                            now_ms(),
                        )
                    })
                    .await
                }
                Ok(Err(error)) => {
                    tracing::warn!(message = %message.id, carrier = %message.carrier, %error, "carrier refused message");
                    let reason = format!("{}: {error}", message.carrier);
                    if error.is_temporary() {
                        self.fail_over_or_fail(&message, &reason).await
                    } else {
                        self.retrying(|| self.store.record_failed(&message.id, &reason, now_ms()))
                            .await
                    }
                }
                Err(_) => {
                    let detail =
                        format!("carrier did not answer within {} ms", timeout.as_millis());
                    tracing::warn!(message = %message.id, carrier = %message.carrier, "{detail}");
                    self.retrying(|| self.store.record_failed(&message.id, &detail, now_ms()))
                        .await
                }
            }
        } else {
            let detail = format!(
                "carrier `{}` is not configured on this server",
                message.carrier
            );
            self.fail_over_or_fail(&message, &detail).await
        };
        if let Err(error) = result {
            tracing::error!(message = %message.id, %error, "recording the send outcome failed; the claim sweep will settle it");
        }
    }
}

/// Receipts being recorded at once.
const RECEIPTS_IN_FLIGHT: usize = 32;
/// Receipts carriers may hand over before they wait for the recorder to read (see
/// [`verify_carrier::ReceiptSink`]).
pub const RECEIPT_CHANNEL_CAPACITY: usize = 4096;

/// How long a receipt for a message whose submission is not yet recorded is retried.
const RECEIPT_RETRY_FOR: Duration = Duration::from_secs(30);
const RECEIPT_RETRY_EVERY: Duration = Duration::from_millis(50);

/// Records carrier receipts until every sender is gone (all carriers shut down).
pub async fn record_receipts(store: Arc<dyn Store>, mut receipts: mpsc::Receiver<DeliveryReceipt>) {
    let mut retries = JoinSet::new();
    // Bounded, so a burst of receipts (a bind reconnecting with a backlog) cannot exhaust the
    // database pool; the carriers' channel holds the rest meanwhile.
    let slots = Arc::new(Semaphore::new(RECEIPTS_IN_FLIGHT));
    while let Some(receipt) = receipts.recv().await {
        let store = Arc::clone(&store);
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // A receipt can overtake the record of its own submission; those wait a little.
        retries.spawn(async move {
            apply_receipt(store.as_ref(), receipt).await;
            drop(permit);
        });
        while retries.try_join_next().is_some() {}
    }
    while retries.join_next().await.is_some() {}
}

async fn apply_receipt(store: &dyn Store, receipt: DeliveryReceipt) {
    let started = tokio::time::Instant::now();
    loop {
        let outcome = store
            .record_receipt(
                &receipt.carrier,
                &receipt.carrier_message_id,
                receipt.message_id.as_deref(),
                receipt.status,
                &receipt.detail,
                now_ms(),
            )
            .await;
        match outcome {
            Ok(ReceiptOutcome::Applied) | Ok(ReceiptOutcome::Duplicate) => return,
            Ok(ReceiptOutcome::NotYetSubmitted) | Ok(ReceiptOutcome::Unknown)
                if started.elapsed() < RECEIPT_RETRY_FOR =>
            {
                tokio::time::sleep(RECEIPT_RETRY_EVERY).await;
            }
            Ok(other) => {
                tracing::warn!(carrier = %receipt.carrier, carrier_message_id = %receipt.carrier_message_id, outcome = ?other, "receipt matched no submitted message");
                return;
            }
            Err(error) => {
                tracing::error!(carrier = %receipt.carrier, %error, "recording a receipt failed");
                if started.elapsed() >= RECEIPT_RETRY_FOR {
                    return;
                }
                tokio::time::sleep(RECEIPT_RETRY_EVERY * 10).await;
            }
        }
    }
}
