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
use crate::store::{ClaimedMessage, ReceiptOutcome, Store, VerificationStatus};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sends queued messages until `shutdown` turns true, then finishes what it already claimed.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    carriers: Arc<CarrierSet>,
    codes: CodeBook,
    settings: DispatcherSettings,
    ttl_minutes: u64,
}

impl Dispatcher {
    /// A dispatcher over its parts.
    pub fn new(
        store: Arc<dyn Store>,
        carriers: Arc<CarrierSet>,
        codes: CodeBook,
        settings: DispatcherSettings,
        ttl_seconds: u64,
    ) -> Self {
        Dispatcher {
            store,
            carriers,
            codes,
            settings,
            ttl_minutes: ttl_seconds.div_ceil(60),
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
            let claimed = if free == 0 {
                Vec::new()
            } else {
                let token = format!("{worker}-{}", uuid::Uuid::now_v7().simple());
                let claim_until = now + (this.settings.claim_timeout_seconds * 1000) as i64;
                match this
                    .store
                    .claim_due_messages(&token, now, claim_until, free)
                    .await
                {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, "claiming due messages failed");
                        Vec::new()
                    }
                }
            };
            let got = claimed.len();
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
    }

    async fn send(&self, claimed: ClaimedMessage) {
        let ClaimedMessage {
            message,
            verification,
        } = claimed;
        let result = if verification.status != VerificationStatus::Pending
            || verification.expires_at_ms <= now_ms()
        {
            let detail = format!("not sent: verification {}", verification.status.as_str());
            self.store
                .record_canceled(&message.id, &detail, now_ms())
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
                body: render(
                    message.channel,
                    &verification.locale,
                    code.expose(),
                    self.ttl_minutes,
                ),
                code,
                locale: verification.locale.clone(),
                sender: None,
            };
            let timeout = Duration::from_millis(self.settings.submit_timeout_ms);
            match tokio::time::timeout(timeout, carrier.submit(outbound)).await {
                Ok(Ok(accepted)) => {
                    tracing::debug!(message = %message.id, carrier = %message.carrier, "submitted");
                    self.store
                        .record_submitted(&message.id, &accepted.carrier_message_id, now_ms())
                        .await
                }
                Ok(Err(error)) => {
                    tracing::warn!(message = %message.id, carrier = %message.carrier, %error, "carrier refused message");
                    self.store
                        .record_failed(&message.id, &error.to_string(), now_ms())
                        .await
                }
                Err(_) => {
                    let detail =
                        format!("carrier did not answer within {} ms", timeout.as_millis());
                    tracing::warn!(message = %message.id, carrier = %message.carrier, "{detail}");
                    self.store
                        .record_failed(&message.id, &detail, now_ms())
                        .await
                }
            }
        } else {
            let detail = format!(
                "carrier `{}` is not configured on this server",
                message.carrier
            );
            self.store
                .record_failed(&message.id, &detail, now_ms())
                .await
        };
        if let Err(error) = result {
            tracing::error!(message = %message.id, %error, "recording the send outcome failed");
        }
    }
}

/// How long a receipt for a message whose submission is not yet recorded is retried.
const RECEIPT_RETRY_FOR: Duration = Duration::from_secs(30);
const RECEIPT_RETRY_EVERY: Duration = Duration::from_millis(50);

/// Records carrier receipts until every sender is gone (all carriers shut down).
pub async fn record_receipts(
    store: Arc<dyn Store>,
    mut receipts: mpsc::UnboundedReceiver<DeliveryReceipt>,
) {
    let mut retries = JoinSet::new();
    while let Some(receipt) = receipts.recv().await {
        let store = Arc::clone(&store);
        // A receipt can overtake the record of its own submission; those wait a little.
        retries.spawn(async move { apply_receipt(store.as_ref(), receipt).await });
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
