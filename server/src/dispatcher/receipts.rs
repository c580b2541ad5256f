//! The receipt recorder: takes carrier receipts from the sink in batches and applies each
//! batch in one transaction. A receipt whose message is not known as submitted yet is kept in
//! the store and applied when the submission is recorded, so it never holds up the others.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use verify_carrier::DeliveryReceipt;

use crate::clock::now_ms;
use crate::store::SqlStore;
use crate::usecases::delivery;

/// Receipts applied per transaction at most.
const RECEIPT_BATCH: usize = 1_024;
/// Receipts carriers may hand over before they wait for the recorder to read (see
/// [`verify_carrier::ReceiptSink`]): a burst (an SMSC replaying its backlog after a
/// reconnect) then slows the carrier's reader instead of growing memory.
pub const RECEIPT_CHANNEL_CAPACITY: usize = 4096;
/// Longest pause between tries while the database fails.
const RETRY_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// Records carrier receipts until every sender is gone (all carriers shut down).
pub async fn record_receipts(store: Arc<SqlStore>, mut receipts: mpsc::Receiver<DeliveryReceipt>) {
    let mut batch = Vec::with_capacity(RECEIPT_BATCH);
    while receipts.recv_many(&mut batch, RECEIPT_BATCH).await > 0 {
        record_batch(&store, &batch).await;
        batch.clear();
    }
}

/// Records one batch, trying until the database takes it: the carriers were told these
/// receipts were taken (an SMSC got its deliver_sm_resp), so they are not dropped; meanwhile
/// the bounded sink fills and the carriers stop taking more.
async fn record_batch(store: &SqlStore, batch: &[DeliveryReceipt]) {
    let mut delay = Duration::from_millis(50);
    loop {
        match delivery::record_receipts(store, batch, now_ms()).await {
            Ok(tally) => {
                tracing::debug!(
                    receipts = batch.len(),
                    applied = tally.applied,
                    kept = tally.kept,
                    duplicates = tally.duplicates,
                    "receipts recorded"
                );
                if tally.kept > 0 {
                    tracing::info!(
                        kept = tally.kept,
                        "receipts kept until their message's submission is recorded"
                    );
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, receipts = batch.len(), "recording receipts failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_AT_MOST_EVERY);
            }
        }
    }
}
