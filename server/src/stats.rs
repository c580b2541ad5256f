//! Measured conversion for the `adaptive` fallback strategy: counts loaded from the database in
//! the background every `[fallback.adaptive]` `stats_refresh` and kept in memory, where every
//! Verify reads them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use verify_policy::FallbackConfig;
use verify_policy::fallback::{
    Conversion, ConversionStats, ConversionTable, MIN_STATS_REFRESH, NoConversionStats,
};

use crate::store::{ConversionCount, Store};

/// How far back conversion is measured.
pub const CONVERSION_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Conversion counts held in memory, replaced whole at each load; cheap to read.
#[derive(Debug, Default)]
pub struct StoredConversionStats {
    table: RwLock<Arc<ConversionTable>>,
}

impl StoredConversionStats {
    /// Empty counts (`adaptive` runs the ordered workflow until the first load).
    pub fn new() -> Self {
        StoredConversionStats::default()
    }

    /// Replaces the counts with `counts`.
    pub fn replace(&self, counts: &[ConversionCount]) {
        let table = Arc::new(table_of(counts));
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// Loads the counts of the last [`CONVERSION_WINDOW`] from `store`; returns the number of
    /// (region, channel, carrier) rows.
    pub async fn load(&self, store: &dyn Store) -> Result<usize, String> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let since_ms = now_ms.saturating_sub(CONVERSION_WINDOW.as_millis() as i64);
        let counts = store
            .conversion_counts(since_ms)
            .await
            .map_err(|e| e.to_string())?;
        self.replace(&counts);
        Ok(counts.len())
    }
}

impl ConversionStats for StoredConversionStats {
    fn conversion(
        &self,
        region: &str,
        channel: verify_policy::Channel,
        carrier: &str,
    ) -> Conversion {
        let table = Arc::clone(&self.table.read().unwrap_or_else(|e| e.into_inner()));
        table.conversion(region, channel, carrier)
    }
}

/// The counts as the strategy reads them.
fn table_of(counts: &[ConversionCount]) -> ConversionTable {
    let mut table = ConversionTable::new();
    for count in counts {
        table.set(
            &count.region,
            count.channel,
            &count.carrier,
            Conversion {
                sent: count.sent,
                verified: count.verified.min(count.sent),
            },
        );
    }
    table
}

/// The background load of conversion counts, when some country uses `adaptive`.
pub struct ConversionRefresher {
    stats: Arc<dyn ConversionStats>,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl std::fmt::Debug for ConversionRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversionRefresher")
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl ConversionRefresher {
    /// Loads the counts once, then every `stats_refresh` in the background, when `fallback`
    /// uses `adaptive` anywhere; otherwise does nothing and [`stats`](Self::stats) measures
    /// nothing. A failed load keeps the previous counts and is logged.
    pub async fn start(store: Arc<dyn Store>, fallback: &FallbackConfig) -> ConversionRefresher {
        if !fallback.uses_adaptive() {
            return ConversionRefresher {
                stats: Arc::new(NoConversionStats),
                running: None,
            };
        }
        // Validated with the configuration; never a zero period here either.
        let every = fallback.adaptive.stats_refresh.max(MIN_STATS_REFRESH);
        let stats = Arc::new(StoredConversionStats::new());
        log_load(stats.load(store.as_ref()).await);
        tracing::info!(every = ?every, "adaptive fallback: loading conversion counts in the background");
        let (stop, mut stopped) = watch::channel(false);
        let task = {
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stopped.wait_for(|stop| *stop) => break,
                        _ = ticks.tick() => {}
                    }
                    tokio::select! {
                        _ = stopped.wait_for(|stop| *stop) => break,
                        loaded = stats.load(store.as_ref()) => log_load(loaded),
                    }
                }
            })
        };
        ConversionRefresher {
            stats,
            running: Some((stop, task)),
        }
    }

    /// The counts, for the decider.
    pub fn stats(&self) -> Arc<dyn ConversionStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the background load (a load in progress is dropped) and waits for it to end.
    /// Dropping the refresher stops it too, without waiting.
    pub async fn stop(self) {
        if let Some((stop, task)) = self.running {
            let _ = stop.send(true);
            if let Err(error) = task.await {
                tracing::error!(%error, "conversion counts task failed");
            }
        }
    }
}

fn log_load(loaded: Result<usize, String>) {
    match loaded {
        Ok(rows) => tracing::debug!(rows, "conversion counts loaded"),
        Err(error) => {
            tracing::warn!(%error, "conversion counts not loaded; keeping the previous ones")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqlStore;
    use sqlx::AnyPool;
    use verify_policy::Channel;

    fn count(
        region: &str,
        channel: Channel,
        carrier: &str,
        sent: u64,
        verified: u64,
    ) -> ConversionCount {
        ConversionCount {
            region: region.into(),
            channel,
            carrier: carrier.into(),
            sent,
            verified,
        }
    }

    #[test]
    fn counts_become_the_strategys_table_and_are_replaced_whole() {
        let stats = StoredConversionStats::new();
        assert_eq!(
            stats.conversion("HN", Channel::Sms, "a"),
            Conversion::default()
        );
        stats.replace(&[
            count("HN", Channel::Sms, "a", 10, 4),
            count("HN", Channel::Voice, "b", 5, 9),
        ]);
        assert_eq!(
            stats.conversion("HN", Channel::Sms, "a"),
            Conversion {
                sent: 10,
                verified: 4
            }
        );
        // Never more verified than sent.
        assert_eq!(stats.conversion("HN", Channel::Voice, "b").verified, 5);
        assert_eq!(
            stats.conversion("SV", Channel::Sms, "a"),
            Conversion::default()
        );
        stats.replace(&[count("SV", Channel::Sms, "a", 1, 1)]);
        assert_eq!(
            stats.conversion("HN", Channel::Sms, "a"),
            Conversion::default()
        );
        assert_eq!(stats.conversion("SV", Channel::Sms, "a").sent, 1);
    }

    async fn insert_verification(
        pool: &AnyPool,
        id: &str,
        region: Option<&str>,
        status: &str,
        updated_at_ms: i64,
    ) {
        sqlx::query(
            "INSERT INTO verifications (id, to_e164, region_code, status, channel, locale, code_length, \
             code_nonce, code_check, max_checks, max_sends, classification, created_at_ms, expires_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, 'sms', 'en', 6, $5, $5, 5, 5, '{}', 0, 999999999, $6)",
        )
        .bind(id)
        .bind(format!("+{id}"))
        .bind(region)
        .bind(status)
        .bind(vec![0u8; 4])
        .bind(updated_at_ms)
        .execute(pool)
        .await
        .unwrap();
    }

    async fn insert_message(
        pool: &AnyPool,
        id: &str,
        verification_id: &str,
        (channel, carrier, status): (&str, &str, &str),
        created_at_ms: i64,
    ) {
        sqlx::query(
            "INSERT INTO messages (id, verification_id, channel, carrier, status, due_at_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
        )
        .bind(id)
        .bind(verification_id)
        .bind(channel)
        .bind(carrier)
        .bind(status)
        .bind(created_at_ms)
        .execute(pool)
        .await
        .unwrap();
    }

    /// The store query on SQLite (the e2e tests cover PostgreSQL): what counts as sent, and
    /// which message an approval is credited to.
    #[tokio::test]
    async fn the_store_counts_sent_messages_and_credits_the_last_one_before_approval() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("stats.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        let pool = AnyPool::connect(&url).await.unwrap();

        // Approved on the call: the SMS before it is sent, not verified.
        insert_verification(&pool, "v1", Some("HN"), "approved", 5_000).await;
        insert_message(&pool, "m1", "v1", ("sms", "hn-sms", "delivered"), 1_000).await;
        insert_message(&pool, "m2", "v1", ("voice", "hn-voice", "submitted"), 2_000).await;
        // Approved on the SMS; the call queued afterwards was canceled (not sent).
        insert_verification(&pool, "v2", Some("HN"), "approved", 3_000).await;
        insert_message(&pool, "m3", "v2", ("sms", "hn-sms", "submitted"), 1_000).await;
        insert_message(&pool, "m4", "v2", ("voice", "hn-voice", "canceled"), 2_000).await;
        // Expired after a failed SMS and a call: both sent, none verified.
        insert_verification(&pool, "v3", Some("HN"), "expired", 9_000).await;
        insert_message(&pool, "m5", "v3", ("sms", "hn-sms", "failed"), 1_000).await;
        insert_message(&pool, "m6", "v3", ("voice", "hn-voice", "delivered"), 2_000).await;
        // Still queued or sending: not sent.
        insert_verification(&pool, "v4", Some("HN"), "pending", 1_000).await;
        insert_message(&pool, "m7", "v4", ("sms", "hn-sms", "queued"), 1_000).await;
        insert_message(&pool, "m8", "v4", ("sms", "hn-sms", "sending"), 1_000).await;
        // Without a region: left out. Before the window: left out.
        insert_verification(&pool, "v5", None, "approved", 5_000).await;
        insert_message(&pool, "m9", "v5", ("sms", "hn-sms", "delivered"), 1_000).await;
        insert_verification(&pool, "v6", Some("HN"), "approved", 5_000).await;
        insert_message(&pool, "m10", "v6", ("sms", "hn-sms", "delivered"), 10).await;
        // Another country.
        insert_verification(&pool, "v7", Some("SV"), "approved", 5_000).await;
        insert_message(&pool, "m11", "v7", ("sms", "sv-sms", "delivered"), 1_000).await;

        let counts = store.conversion_counts(500).await.unwrap();
        assert_eq!(
            counts,
            vec![
                count("HN", Channel::Sms, "hn-sms", 3, 1),
                count("HN", Channel::Voice, "hn-voice", 2, 1),
                count("SV", Channel::Sms, "sv-sms", 1, 1),
            ]
        );
        let stats = StoredConversionStats::new();
        assert_eq!(
            stats.load(&store).await.unwrap(),
            0,
            "all older than a week"
        );
        store.close().await;
    }
}
