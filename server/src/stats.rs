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

use crate::store::{ConversionCount, SqlStore};

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
    pub async fn load(&self, store: &SqlStore) -> Result<usize, String> {
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
    pub async fn start(store: Arc<SqlStore>, fallback: &FallbackConfig) -> ConversionRefresher {
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
}
