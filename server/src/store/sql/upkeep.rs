//! PostgreSQL upkeep of the busy tables: the planner's statistics kept current while they grow,
//! and the event inbox cleared of the rows the sequencer moved out.
//!
//! PostgreSQL plans a statement from the statistics `ANALYZE` last gathered. A table that has
//! grown from nothing since (a new deployment, a burst of traffic) is planned as if it were
//! still small: the lookup of a group's numbers then reads every pending verification instead
//! of probing the one-pending-per-number index, and a batch's `id IN (...)` scans the table,
//! each costing milliseconds where a plan from current statistics costs microseconds.
//! Autovacuum catches up only after its nap (a minute by default) and its own queue, so this
//! task analyzes a table itself once the rows changed since its last analysis pass a share of
//! its size.
//!
//! The event inbox holds only the few events not yet sequenced, but every event passes
//! through it: thousands of deleted rows a second under load, which each sequencer pass would
//! step over until autovacuum comes by. This task vacuums it once enough have piled up.
//!
//! Both skip a table another process holds (`SKIP_LOCKED`), so they never make autovacuum give
//! up its own run, nor wait for another replica doing the same; the inbox is vacuumed without
//! truncating it, which would lock out every commit that records events.

use std::time::Duration;

use sqlx::AnyPool;
use tokio::task::JoinHandle;

use super::db;
use crate::store::StoreResult;

/// The tables whose plans matter on the hot path (the event log is read by its cursor, or
/// by subject through its index, whatever the statistics say).
const BUSY_TABLES: [&str; 2] = ["verifications", "messages"];
/// How often the counters of changed rows are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Rows changed since the last analysis that always call for a new one...
const CHANGED_ROWS: f64 = 1_000.0;
/// ...plus this share of the rows the table had then.
const CHANGED_SHARE: f64 = 0.2;

/// Dead rows in the event inbox that call for a vacuum.
const DEAD_INBOX_ROWS: i64 = 2_000;

/// Every [`LOOK_EVERY`] from now on: analyzes each busy table that changed enough since its
/// last analysis (by anyone: autovacuum, another replica, this task), or was never analyzed,
/// and vacuums the event inbox when enough deleted rows piled up in it.
pub(super) fn keep_up(pool: AnyPool) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = analyze_changed(&pool).await {
                tracing::warn!(%error, "refreshing the planner's statistics failed; trying again");
            }
            if let Err(error) = vacuum_inbox(&pool).await {
                tracing::warn!(%error, "vacuuming the event inbox failed; trying again");
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    })
}

/// One look: analyzes the busy tables that need it.
async fn analyze_changed(pool: &AnyPool) -> StoreResult<()> {
    let rows = db::query(
        "SELECT CAST(s.relname AS TEXT) AS name, s.n_mod_since_analyze AS changed, \
         CAST(GREATEST(c.reltuples, 0) AS BIGINT) AS analyzed_rows, \
         CAST(CASE WHEN s.last_analyze IS NULL AND s.last_autoanalyze IS NULL THEN 1 ELSE 0 END AS BIGINT) AS never \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = current_schema() AND s.relname IN ($1, $2)",
    )
    .bind(BUSY_TABLES[0])
    .bind(BUSY_TABLES[1])
    .fetch_all(db::Exec::Pool(pool))
    .await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        let changed: i64 = row.try_get("changed")?;
        let analyzed_rows: i64 = row.try_get("analyzed_rows")?;
        let never = row.try_get::<i64>("never")? == 1;
        if needs_analysis(changed, analyzed_rows, never) {
            // The name is one of BUSY_TABLES (the query filters on them), not outside input.
            let Some(table) = BUSY_TABLES.iter().find(|table| **table == name) else {
                continue;
            };
            db::query(format!("ANALYZE (SKIP_LOCKED) {table}"))
                .execute(db::Exec::Pool(pool))
                .await?;
            tracing::debug!(
                table,
                changed,
                analyzed_rows,
                "planner statistics refreshed"
            );
        }
    }
    Ok(())
}

/// Vacuums the event inbox if enough deleted rows piled up in it.
async fn vacuum_inbox(pool: &AnyPool) -> StoreResult<()> {
    let dead: Option<i64> = db::query(
        "SELECT n_dead_tup AS dead FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND relname = 'event_inbox'",
    )
    .fetch_optional(db::Exec::Pool(pool))
    .await?
    .map(|row| row.try_get("dead"))
    .transpose()?;
    if dead.is_some_and(|dead| dead >= DEAD_INBOX_ROWS) {
        db::query("VACUUM (SKIP_LOCKED, TRUNCATE false) event_inbox")
            .execute(db::Exec::Pool(pool))
            .await?;
        tracing::debug!(dead, "event inbox vacuumed");
    }
    Ok(())
}

/// Whether a table with `changed` rows changed since its last analysis, which counted
/// `analyzed_rows`, is to be analyzed again.
fn needs_analysis(changed: i64, analyzed_rows: i64, never_analyzed: bool) -> bool {
    let changed = changed as f64;
    (never_analyzed && changed > 0.0)
        || changed >= CHANGED_ROWS + CHANGED_SHARE * analyzed_rows as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_analyzed_again_once_a_share_of_it_changed() {
        assert!(needs_analysis(1, 0, true));
        assert!(!needs_analysis(0, 0, true));
        assert!(!needs_analysis(999, 0, false));
        assert!(needs_analysis(1_000, 0, false));
        assert!(!needs_analysis(20_999, 100_000, false));
        assert!(needs_analysis(21_000, 100_000, false));
    }
}
