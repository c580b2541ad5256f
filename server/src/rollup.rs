//! The conversion rollup: follows the event log from its stored cursor and adds each batch of
//! events to the hourly and daily tallies that `GetConversionStats` reads, in one transaction
//! with the cursor's move. The cursor moves by compare-and-set, so replicas sharing a database
//! may all run it and each event is still counted once; a crash between batches loses nothing
//! (the batch is read again).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use verify_policy::routing::RoutePlan;

use crate::domain::conversion::Rollup;
use crate::domain::{RecordedEvent, Subject};
use crate::store::SqlStore;

/// Events folded per transaction at most.
const BATCH: u32 = 5_000;
/// How long it waits for new events before looking again (events other replicas record on
/// SQLite are not announced).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The wait after a failed batch.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Starts following the event log until `stopping` turns true.
pub fn start(
    store: Arc<SqlStore>,
    routes: RoutePlan,
    mut stopping: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut events_changed = store.event_signal();
        let mut cursor: Option<i64> = None;
        loop {
            if *stopping.borrow() {
                return;
            }
            let outcome = match cursor {
                None => store
                    .conversion_rollup_cursor()
                    .await
                    .map(|at| {
                        cursor = Some(at);
                        Progress::Moved
                    })
                    .map_err(|e| e.to_string()),
                Some(at) => roll_up_after(&store, &routes, at).await,
            };
            let wait = match outcome {
                Ok(Progress::Moved) => continue,
                Ok(Progress::To(next)) => {
                    cursor = Some(next);
                    continue;
                }
                Ok(Progress::Lost) => {
                    // Another replica rolled these events up: read its cursor.
                    cursor = None;
                    continue;
                }
                Ok(Progress::CaughtUp) => IDLE_POLL,
                Err(error) => {
                    tracing::warn!(%error, "conversion rollup failed; trying again");
                    cursor = None;
                    RETRY_DELAY
                }
            };
            tokio::select! {
                _ = stopping.changed() => {}
                _ = events_changed.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    })
}

/// What one round did.
enum Progress {
    /// Read the cursor.
    Moved,
    /// Rolled events up to this cursor.
    To(i64),
    /// Found the cursor moved by another replica.
    Lost,
    /// No event after the cursor.
    CaughtUp,
}

async fn roll_up_after(
    store: &SqlStore,
    routes: &RoutePlan,
    cursor: i64,
) -> Result<Progress, String> {
    let events = store
        .events_after(cursor, None, None, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = events.last().map(|e| e.cursor) else {
        return Ok(Progress::CaughtUp);
    };
    let rollup = fold(store, routes, &events).await?;
    let moved = store
        .write_background(move |tx| {
            Box::pin(async move { tx.add_conversion_rollup(cursor, last, &rollup).await })
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(if moved {
        Progress::To(last)
    } else {
        Progress::Lost
    })
}

/// Folds `events` into tallies, reading their verifications' records.
async fn fold(
    store: &SqlStore,
    routes: &RoutePlan,
    events: &[RecordedEvent],
) -> Result<Rollup, String> {
    let mut seen = HashSet::new();
    let ids: Vec<String> = events
        .iter()
        .filter_map(|recorded| match &recorded.event.subject {
            Subject::Verification(id) if seen.insert(id.as_str()) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let records = store
        .verification_records(&ids)
        .await
        .map_err(|e| e.to_string())?;
    let mut rollup = Rollup::new();
    for recorded in events {
        if let Subject::Verification(id) = &recorded.event.subject
            && let Some(record) = records.get(id)
        {
            rollup.count(&recorded.event, record, |region, carrier| {
                routes.declared_cost(region, carrier)
            });
        }
    }
    Ok(rollup)
}
