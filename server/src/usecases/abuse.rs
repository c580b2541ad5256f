//! Abuse defense in the use cases: Verify's rate limits, counted in the store so that they hold
//! across replicas (the rules themselves are `verify_policy::abuse`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as signal;
use verify_policy::abuse::{BucketKey, LimitRefusal, RateLimits, Usage};

use super::UseCaseError;
use super::verify::{Stored, Work};
use crate::clock::now_ms;
use crate::store::{RateCounts, SqlStore, StoreError, WriteTx};

/// How often counts older than every window are removed.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// What the rate limits decided for a group.
pub(super) struct Limited {
    /// The requests refused, by index, with why.
    pub(super) refusals: Vec<(usize, UseCaseError)>,
    /// Where each request allowed counts, by index, as `(bucket's key in the store, slot)`
    /// (empty for those not counted).
    pub(super) counted_in: Vec<Vec<(String, i64)>>,
}

/// Decides the rate limits for each request of a group in turn (see `verify::store_group_in`).
pub(super) async fn rate_limits_of(
    tx: &mut WriteTx,
    work: &[Work],
    used_keys: &HashSet<String>,
    limits: &RateLimits,
    now: i64,
) -> Result<Limited, StoreError> {
    // Each request's buckets with the keys the store counts them under.
    let buckets: Vec<Vec<(BucketKey, String)>> = work
        .iter()
        .map(|(plan, ..)| {
            let replay = plan
                .idempotency_key()
                .is_some_and(|key| used_keys.contains(key));
            if replay {
                return Vec::new();
            }
            plan.buckets(limits)
                .into_iter()
                .map(|bucket| {
                    let key = bucket.storage_key();
                    (bucket, key)
                })
                .collect()
        })
        .collect();
    let mut keys: Vec<String> = buckets
        .iter()
        .flatten()
        .map(|(_, key)| key.clone())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let since = limits
        .limits()
        .iter()
        .map(|limit| limit.oldest_slot_in_window(now))
        .min()
        .unwrap_or(now);
    let mut usage: HashMap<String, Usage> = HashMap::new();
    for (bucket, slot, count) in tx.rate_counts(&keys, since).await? {
        let count = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
        usage.entry(bucket).or_default().slots.push((slot, count));
    }
    let mut refusals = Vec::new();
    let mut counted = Vec::with_capacity(work.len());
    for (index, request_buckets) in buckets.into_iter().enumerate() {
        let stored: Vec<(BucketKey, Usage)> = request_buckets
            .iter()
            .map(|(bucket, key)| (bucket.clone(), usage.get(key).cloned().unwrap_or_default()))
            .collect();
        match limits.check(&stored, now) {
            Ok(()) => {
                // Counted against the requests after it in the group (in the slot's entry,
                // so that a bucket many requests share keeps one entry per slot).
                let mut counted_in = Vec::with_capacity(request_buckets.len());
                for (bucket, key) in request_buckets {
                    if let Some(limit) = limits.limit(&bucket.limit) {
                        let slot = limit.slot_of(now);
                        let slots = &mut usage.entry(key.clone()).or_default().slots;
                        match slots.iter_mut().find(|(start, _)| *start == slot) {
                            Some((_, count)) => *count = count.saturating_add(1),
                            None => slots.push((slot, 1)),
                        }
                        counted_in.push((key, slot));
                    }
                }
                counted.push(counted_in);
            }
            Err(refusal) => {
                tracing::info!(
                    limit = %refusal.bucket.limit,
                    key = %refusal.bucket.kind.as_str(),
                    value = %refusal.bucket.shown(),
                    count = refusal.count,
                    "request refused by a rate limit"
                );
                refusals.push((index, rate_limited(&refusal, now)));
                counted.push(Vec::new());
            }
        }
    }
    Ok(Limited {
        refusals,
        counted_in: counted,
    })
}

/// The error a refusal becomes: its explanation, what it limits, and when to retry.
fn rate_limited(refusal: &LimitRefusal, now: i64) -> UseCaseError {
    let wait_ms = (refusal.retry_at_ms - now).max(0) as u64;
    UseCaseError::RateLimited {
        explanation: refusal.explain(now),
        subject: format!(
            "{}: {} {}",
            refusal.bucket.limit,
            refusal.bucket.kind.as_str(),
            refusal.bucket.shown()
        ),
        retry_after: Duration::from_millis(wait_ms.div_ceil(1000) * 1000),
    }
}

/// Counts the requests of a group that queued a code (a new verification or a resend) in
/// their buckets. A failure to count is logged and does not undo the requests: limits then
/// count less, for a moment, instead of Verify failing.
pub(super) async fn count_sent(
    tx: &mut WriteTx,
    results: &[Result<Stored, UseCaseError>],
    counted_in: Vec<Vec<(String, i64)>>,
) {
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (result, places) in results.iter().zip(counted_in) {
        if !matches!(result, Ok(Stored::Created(..) | Stored::Resent(_))) {
            continue;
        }
        for place in places {
            *counts.entry(place).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return;
    }
    let counts: Vec<(String, i64, i64)> = counts
        .into_iter()
        .map(|((bucket, slot), count)| (bucket, slot, count))
        .collect();
    let counted = tx
        .isolated(move |tx| Box::pin(async move { tx.add_rate_counts(&counts).await }))
        .await;
    if let Err(error) = counted {
        tracing::warn!(%error, "counting requests for rate limits failed; they count less for now");
    }
}

/// Removes, every minute until `shutdown`, the counts of slots that left every limit's window.
pub(super) fn forget_old_counts(
    store: Arc<SqlStore>,
    limits: Arc<RateLimits>,
    mut shutdown: signal::Receiver<bool>,
) {
    let Some(longest) = limits.limits().iter().map(|limit| limit.per).max() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stopping| *stopping) => return,
                _ = tokio::time::sleep(FORGET_EVERY) => {}
            }
            let before = now_ms() - longest.as_millis() as i64 - FORGET_EVERY.as_millis() as i64;
            let forgotten = store
                .write_background(move |tx| {
                    Box::pin(async move { tx.forget_rate_counts_before(before).await })
                })
                .await;
            match forgotten {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, "old rate-limit counts removed"),
                Err(error) => tracing::warn!(%error, "removing old rate-limit counts failed"),
            }
        }
    });
}
