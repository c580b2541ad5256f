//! Abuse defense's blocks, and the recent codes of number prefixes the pumping guard judges,
//! shared by every process on the database so that a block holds across replicas.

use async_trait::async_trait;
use verify_policy::abuse::{Block, BlockRule, BlockTarget};

use super::{WriteTx, db, in_chunks, value_rows};
use crate::store::{Blocks, StoreError, StoreResult};

const BLOCK_COLUMNS: &str =
    "id, target, rule, reason, strike, enforced, started_ms, ends_ms, lifted_ms, lifted_by";

/// A block from its row.
fn block(row: &db::Row) -> StoreResult<Block> {
    let target: String = row.try_get("target")?;
    let rule: String = row.try_get("rule")?;
    let strike: i64 = row.try_get("strike")?;
    let enforced: i64 = row.try_get("enforced")?;
    Ok(Block {
        id: row.try_get("id")?,
        target: BlockTarget::from_storage_key(&target)
            .ok_or_else(|| StoreError::Corrupt(format!("block target `{target}`")))?,
        rule: BlockRule::parse(&rule)
            .ok_or_else(|| StoreError::Corrupt(format!("block rule `{rule}`")))?,
        reason: row.try_get("reason")?,
        strike: u32::try_from(strike).unwrap_or(u32::MAX),
        enforced: enforced != 0,
        started_ms: row.try_get("started_ms")?,
        ends_ms: row.try_get("ends_ms")?,
        lifted_ms: row.try_get("lifted_ms")?,
        lifted_by: row.try_get("lifted_by")?,
    })
}

#[async_trait]
impl Blocks for WriteTx {
    async fn insert_blocks(&mut self, blocks: &[Block]) -> StoreResult<()> {
        for chunk in in_chunks(blocks) {
            let sql = format!(
                "INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES {}",
                value_rows(10, chunk.len())
            );
            let mut query = db::query(sql);
            for b in chunk {
                query = query
                    .bind(b.id.clone())
                    .bind(b.target.storage_key())
                    .bind(b.rule.as_str())
                    .bind(b.reason.clone())
                    .bind(i64::from(b.strike))
                    .bind(i64::from(b.enforced))
                    .bind(b.started_ms)
                    .bind(b.ends_ms)
                    .bind(b.lifted_ms)
                    .bind(b.lifted_by.clone());
            }
            query.execute(self.conn().await?).await?;
        }
        Ok(())
    }

    async fn lift_block(&mut self, id: &str, now_ms: i64, by: &str) -> StoreResult<Option<Block>> {
        db::query(
            "UPDATE blocks SET lifted_ms = $1, lifted_by = $2 WHERE id = $3 AND lifted_ms IS NULL",
        )
        .bind(now_ms)
        .bind(by)
        .bind(id)
        .execute(self.conn().await?)
        .await?;
        let sql = format!("SELECT {BLOCK_COLUMNS} FROM blocks WHERE id = $1");
        let row = db::query(sql)
            .bind(id)
            .fetch_optional(self.conn().await?)
            .await?;
        row.as_ref().map(block).transpose()
    }

    async fn forget_blocks_before(&mut self, ended_before_ms: i64) -> StoreResult<u64> {
        Ok(db::query("DELETE FROM blocks WHERE ends_ms < $1")
            .bind(ended_before_ms)
            .execute(self.conn().await?)
            .await?
            .rows_affected())
    }
}

/// Blocks, newest first: those in force at `active_at` (not ended, not lifted), or with
/// `None` every block kept; at most `limit`.
pub(super) async fn list(
    exec: db::Exec<'_>,
    active_at: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<Block>> {
    let rows = match active_at {
        Some(now) => {
            let sql = format!(
                "SELECT {BLOCK_COLUMNS} FROM blocks WHERE lifted_ms IS NULL AND ends_ms > $1 \
                 ORDER BY started_ms DESC, id DESC LIMIT $2"
            );
            db::query(sql)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(exec)
                .await?
        }
        None => {
            let sql = format!(
                "SELECT {BLOCK_COLUMNS} FROM blocks ORDER BY started_ms DESC, id DESC LIMIT $1"
            );
            db::query(sql)
                .bind(i64::from(limit))
                .fetch_all(exec)
                .await?
        }
    };
    rows.iter().map(block).collect()
}

/// Every block that ends at `since_ms` or later (in force, or recent enough to make the next
/// block of its target longer).
pub(super) async fn since(exec: db::Exec<'_>, since_ms: i64) -> StoreResult<Vec<Block>> {
    let sql = format!("SELECT {BLOCK_COLUMNS} FROM blocks WHERE ends_ms >= $1");
    db::query(sql)
        .bind(since_ms)
        .fetch_all(exec)
        .await?
        .iter()
        .map(block)
        .collect()
}
