//! Dispatcher registrations and heartbeats: the leases under which dispatchers hold messages.
//! Times are the database's, so that servers whose clocks disagree agree on who is alive.

use super::db;
use async_trait::async_trait;

use super::{Dialect, WriteTx};
use crate::store::{StoreError, StoreResult, WorkerRecord, Workers};

impl WriteTx {
    /// The database's clock in unix ms, as an SQL expression.
    fn database_now(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

#[async_trait]
impl Workers for WriteTx {
    async fn database_now_ms(&mut self) -> StoreResult<i64> {
        let sql = format!("SELECT {}", self.database_now());
        Ok(db::query(sql).scalar(self.conn().await?).await?)
    }

    async fn register_worker(&mut self, worker: &WorkerRecord) -> StoreResult<()> {
        let now = self.database_now();
        let sql = format!(
            "INSERT INTO dispatcher_workers (id, host, pid, started_at_ms, heartbeat_at_ms) VALUES ($1, $2, $3, $4, {now}) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at_ms = {now}"
        );
        db::query(sql)
            .bind(&worker.id)
            .bind(&worker.host)
            .bind(i64::from(worker.pid))
            .bind(worker.started_at_ms)
            .execute(self.conn().await?)
            .await?;
        Ok(())
    }

    async fn heartbeat(&mut self, id: &str) -> StoreResult<bool> {
        let sql = format!(
            "UPDATE dispatcher_workers SET heartbeat_at_ms = {} WHERE id = $1",
            self.database_now()
        );
        let updated = db::query(sql)
            .bind(id)
            .execute(self.conn().await?)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    async fn workers(&mut self) -> StoreResult<Vec<WorkerRecord>> {
        let rows = db::query(
            "SELECT id, host, pid, started_at_ms, heartbeat_at_ms FROM dispatcher_workers ORDER BY id",
        )
        .fetch_all(self.conn().await?)
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
            db::query("DELETE FROM dispatcher_workers WHERE id = $1 AND heartbeat_at_ms = $2")
                .bind(id)
                .bind(heartbeat_at_ms)
                .execute(self.conn().await?)
                .await?
                .rows_affected();
        Ok(removed == 1)
    }

    async fn unregister_worker(&mut self, id: &str) -> StoreResult<()> {
        db::query("DELETE FROM dispatcher_workers WHERE id = $1")
            .bind(id)
            .execute(self.conn().await?)
            .await?;
        Ok(())
    }
}
