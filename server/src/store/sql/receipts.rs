//! Receipts that came before their message was known as submitted, kept under every id they
//! may name it by until the submission is recorded.

use super::db;
use async_trait::async_trait;
use verify_carrier::ReceiptStatus;

use super::WriteTx;
use super::rows::parse_text;
use crate::store::{EarlyReceipts, KeptReceipt, StoreResult};

fn parse_status(text: &str) -> Option<ReceiptStatus> {
    match text {
        "delivered" => Some(ReceiptStatus::Delivered),
        "failed" => Some(ReceiptStatus::Failed),
        _ => None,
    }
}

fn status_name(status: ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Failed => "failed",
    }
}

#[async_trait]
impl EarlyReceipts for WriteTx {
    async fn keep_receipt(&mut self, receipt: &KeptReceipt) -> StoreResult<()> {
        let receipt_id = format!("rc_{}", uuid::Uuid::now_v7().simple());
        for carrier_message_id in &receipt.carrier_message_ids {
            db::query(
                "INSERT INTO early_receipts (receipt_id, carrier, carrier_message_id, message_id, status, detail, received_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&receipt_id)
            .bind(&receipt.carrier)
            .bind(carrier_message_id)
            .bind(&receipt.message_id)
            .bind(status_name(receipt.status))
            .bind(&receipt.detail)
            .bind(receipt.received_at_ms)
            .execute(self.conn().await?)
            .await?;
        }
        Ok(())
    }

    async fn take_receipts_for(
        &mut self,
        carrier: &str,
        carrier_message_id: Option<&str>,
        message_id: &str,
    ) -> StoreResult<Vec<KeptReceipt>> {
        let rows = db::query(
            "SELECT receipt_id, carrier, carrier_message_id, message_id, status, detail, received_at_ms FROM early_receipts \
             WHERE receipt_id IN (SELECT receipt_id FROM early_receipts \
             WHERE (carrier = $1 AND carrier_message_id = $2) OR message_id = $3) ORDER BY id",
        )
        .bind(carrier)
        .bind(carrier_message_id)
        .bind(message_id)
        .fetch_all(self.conn().await?)
        .await?;
        let mut taken: Vec<(String, KeptReceipt)> = Vec::new();
        for row in &rows {
            let receipt_id: String = row.try_get("receipt_id")?;
            let spelling: String = row.try_get("carrier_message_id")?;
            match taken.iter_mut().find(|(id, _)| *id == receipt_id) {
                Some((_, receipt)) => receipt.carrier_message_ids.push(spelling),
                None => taken.push((
                    receipt_id,
                    KeptReceipt {
                        carrier: row.try_get("carrier")?,
                        carrier_message_ids: vec![spelling],
                        message_id: row.try_get("message_id")?,
                        status: parse_text(row, "status", parse_status)?,
                        detail: row.try_get("detail")?,
                        received_at_ms: row.try_get("received_at_ms")?,
                    },
                )),
            }
        }
        for (receipt_id, _) in &taken {
            db::query("DELETE FROM early_receipts WHERE receipt_id = $1")
                .bind(receipt_id)
                .execute(self.conn().await?)
                .await?;
        }
        Ok(taken.into_iter().map(|(_, receipt)| receipt).collect())
    }

    async fn has_kept_receipts(&mut self) -> StoreResult<bool> {
        let any: Option<i64> = db::query("SELECT 1 FROM early_receipts LIMIT 1")
            .scalar_optional(self.conn().await?)
            .await?;
        Ok(any.is_some())
    }

    async fn forget_receipts_before(&mut self, before_ms: i64) -> StoreResult<u64> {
        let receipts: i64 = db::query(
            "SELECT COUNT(DISTINCT receipt_id) FROM early_receipts WHERE received_at_ms < $1",
        )
        .bind(before_ms)
        .scalar(self.conn().await?)
        .await?;
        db::query("DELETE FROM early_receipts WHERE received_at_ms < $1")
            .bind(before_ms)
            .execute(self.conn().await?)
            .await?;
        Ok(receipts.max(0) as u64)
    }

    async fn messages_with_kept_receipts(&mut self, limit: u32) -> StoreResult<Vec<String>> {
        Ok(db::query(
            "SELECT m.id FROM early_receipts e JOIN messages m \
             ON m.carrier = e.carrier AND m.carrier_message_id = e.carrier_message_id \
             WHERE m.status IN ('submitted', 'maybe_sent') \
             UNION \
             SELECT m.id FROM early_receipts e JOIN messages m \
             ON m.id = e.message_id AND m.carrier = e.carrier \
             WHERE m.status IN ('submitted', 'maybe_sent') \
             LIMIT $1",
        )
        .bind(i64::from(limit))
        .scalar_all(self.conn().await?)
        .await?)
    }
}
