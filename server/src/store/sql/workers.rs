//! Dispatcher registrations and heartbeats: the leases under which dispatchers hold messages.

use async_trait::async_trait;
use sqlx::Row;

use super::WriteTx;
use crate::store::{StoreError, StoreResult, WorkerRecord, Workers};

#[async_trait]
impl Workers for WriteTx<'_> {
    async fn register_worker(&mut self, worker: &WorkerRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dispatcher_workers (id, host, pid, started_at_ms, heartbeat_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at_ms = $5",
        )
        .bind(&worker.id)
        .bind(&worker.host)
        .bind(i64::from(worker.pid))
        .bind(worker.started_at_ms)
        .bind(worker.heartbeat_at_ms)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn heartbeat(&mut self, id: &str, now_ms: i64) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE dispatcher_workers SET heartbeat_at_ms = $1 WHERE id = $2 AND heartbeat_at_ms <= $1",
        )
        .bind(now_ms)
        .bind(id)
        .execute(self.conn())
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(true);
        }
        // A heartbeat from the past (the clock went back) still counts if the row is there.
        let present: Option<i64> =
            sqlx::query_scalar("SELECT heartbeat_at_ms FROM dispatcher_workers WHERE id = $1")
                .bind(id)
                .fetch_optional(self.conn())
                .await?;
        Ok(present.is_some())
    }

    async fn workers(&mut self) -> StoreResult<Vec<WorkerRecord>> {
        let rows = sqlx::query(
            "SELECT id, host, pid, started_at_ms, heartbeat_at_ms FROM dispatcher_workers ORDER BY id",
        )
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|row| {
                let pid: i64 = row.try_get("pid")?;
                Ok(WorkerRecord {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: u32::try_from(pid)
                        .map_err(|_| StoreError::Corrupt(format!("worker pid {pid}")))?,
                    started_at_ms: row.try_get("started_at_ms")?,
                    heartbeat_at_ms: row.try_get("heartbeat_at_ms")?,
                })
            })
            .collect()
    }

    async fn remove_worker(&mut self, id: &str, heartbeat_at_ms: i64) -> StoreResult<bool> {
        let removed =
            sqlx::query("DELETE FROM dispatcher_workers WHERE id = $1 AND heartbeat_at_ms = $2")
                .bind(id)
                .bind(heartbeat_at_ms)
                .execute(self.conn())
                .await?
                .rows_affected();
        Ok(removed == 1)
    }

    async fn unregister_worker(&mut self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM dispatcher_workers WHERE id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
