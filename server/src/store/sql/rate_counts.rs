//! Rate-limit counts: requests per bucket and time slot, shared by every process on the
//! database, so that a limit holds across replicas.

use async_trait::async_trait;

use super::{WriteTx, db, id_list, in_chunks, value_rows};
use crate::store::{RateCounts, StoreResult};

/// `(bucket, slot, count)` from a row of `rate_counts`.
fn count_row(row: &db::Row) -> StoreResult<(String, i64, i64)> {
    Ok((
        row.try_get("bucket")?,
        row.try_get("slot_ms")?,
        row.try_get("count")?,
    ))
}

/// `(bucket, slot, count)` of the rate counts whose bucket starts with `prefix`, in slots from
/// `since_slot_ms` on.
pub(super) async fn under(
    exec: db::Exec<'_>,
    prefix: &str,
    since_slot_ms: i64,
) -> StoreResult<Vec<(String, i64, i64)>> {
    // Buckets from `prefix` up to the same text with its last character's successor.
    let mut upper = prefix.to_string();
    let last = upper
        .pop()
        .map_or('\u{1}', |c| char::from_u32(c as u32 + 1).unwrap_or(c));
    upper.push(last);
    db::query(
        "SELECT bucket, slot_ms, count FROM rate_counts WHERE bucket >= $1 AND bucket < $2 \
         AND slot_ms >= $3",
    )
    .bind(prefix)
    .bind(upper)
    .bind(since_slot_ms)
    .fetch_all(exec)
    .await?
    .iter()
    .map(count_row)
    .collect()
}

#[async_trait]
impl RateCounts for WriteTx {
    async fn rate_counts(
        &mut self,
        buckets: &[String],
        since_slot_ms: i64,
    ) -> StoreResult<Vec<(String, i64, i64)>> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let (list, bound) = id_list(2, buckets);
        let sql = format!(
            "SELECT bucket, slot_ms, count FROM rate_counts WHERE slot_ms >= $1 AND bucket IN ({list})"
        );
        db::query(sql)
            .bind(since_slot_ms)
            .bind_all(bound)
            .fetch_all(self.conn().await?)
            .await?
            .iter()
            .map(count_row)
            .collect()
    }

    async fn add_rate_counts(&mut self, counts: &[(String, i64, i64)]) -> StoreResult<()> {
        for chunk in in_chunks(counts) {
            let sql = format!(
                "INSERT INTO rate_counts (bucket, slot_ms, count) VALUES {} \
                 ON CONFLICT (bucket, slot_ms) DO UPDATE SET count = rate_counts.count + excluded.count",
                value_rows(3, chunk.len())
            );
            let mut query = db::query(sql);
            for (bucket, slot_ms, count) in chunk {
                query = query.bind(bucket).bind(*slot_ms).bind(*count);
            }
            query.execute(self.conn().await?).await?;
        }
        Ok(())
    }

    async fn forget_rate_counts_before(&mut self, slot_ms: i64) -> StoreResult<u64> {
        Ok(db::query("DELETE FROM rate_counts WHERE slot_ms < $1")
            .bind(slot_ms)
            .execute(self.conn().await?)
            .await?
            .rows_affected())
    }
}
