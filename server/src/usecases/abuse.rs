//! Abuse defense in the use cases: Verify's rate limits, blocks and pumping guard, and the
//! guessing cool-off of Check, kept in the store so that they hold across replicas (the
//! rules themselves are `verify_policy::abuse`).
//!
//! What one Verify group costs its transaction: one read of the verifications its rules
//! count ([`recent_codes_of`]: the number and prefix limits and the pumping guard count the
//! codes recorded there), and a read of the counts of the other limits when a request has
//! their keys (client address, device, user, API key, and country when a limit is set on it). Counts are written in the background
//! ([`PendingCounts`]); blocks and countries' counts are read in the background
//! ([`GuardView`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as signal;
use verify_carrier::mask_number;
use verify_policy::abuse::{
    AbuseDefense, Block, BlockLadder, BlockRule, BlockTarget, BucketKey, CountryActivity,
    GeoPermission, KeyKind, LimitRefusal, RateLimit, RateLimits, RecentSend, Usage, Verdict,
};

use super::pending_counts::{HeldCounts, PendingCounts};
use super::verify::{Stored, Work};
use super::{UseCaseError, new_id};
use crate::clock::now_ms;
use crate::domain::{EventKind, block_event};
use crate::store::{
    Blocks, EventLog, RateCounts, RecordedCode, ServiceKey, SqlStore, StoreError,
    VerificationRepository, WriteTx,
};

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

/// The verifications a Verify group's rules read, in one statement (see
/// [`recent_codes_of`]): the pending ones of its numbers, and the codes recorded lately for
/// its numbers and prefixes. The limits keyed on a number or a prefix, and the pumping guard,
/// count these rows: every code sent is in its verification's row, so they need no count of
/// their own.
pub(super) struct RecentCodes {
    codes: Vec<RecordedCode>,
    by_number: HashMap<String, Vec<usize>>,
    by_prefix: HashMap<String, Vec<usize>>,
}

impl RecentCodes {
    /// The numbers among those read that have a pending verification, each with its
    /// service (a number has at most one pending verification per service).
    pub(super) fn pending_numbers(&self) -> HashSet<(&str, &str)> {
        self.codes
            .iter()
            .filter(|code| code.pending)
            .map(|code| (code.service_id.as_str(), code.e164.as_str()))
            .collect()
    }

    /// The codes read of number `e164`, or of the numbers of prefix `prefix`.
    fn of(&self, kind: KeyKind, value: &str) -> impl Iterator<Item = &RecordedCode> {
        let indexes = match kind {
            KeyKind::Number => self.by_number.get(value),
            _ => self.by_prefix.get(value),
        };
        indexes
            .into_iter()
            .flatten()
            .map(|&index| &self.codes[index])
    }

    /// What `limit` counts of a bucket keyed on a number or a prefix: each verification's
    /// codes in the slot its last one was sent by (so no code counts as older than it is).
    fn usage(&self, bucket: &BucketKey, limit: &RateLimit) -> Usage {
        let mut usage = Usage::default();
        for code in self.of(bucket.kind, &bucket.value) {
            usage.add(limit.slot_of(code.sent_by_ms), code.sends);
        }
        usage
    }
}

/// Whether a limit of this kind counts the codes in the verifications' rows (those keyed on
/// a number or a prefix) rather than counts of its own.
fn counts_recorded_codes(kind: KeyKind) -> bool {
    matches!(kind, KeyKind::Number | KeyKind::NumberPrefix)
}

/// Reads the verifications the rules of a Verify group count (see [`RecentCodes`]): every
/// number's pending one and, from the start of the longest window that needs them, the
/// codes of its numbers (for limits keyed on numbers) and prefixes (for limits keyed on
/// prefixes and the pumping guard). A limit counts a verification's codes when its last one
/// was sent by, so its read reaches back a code's lifetime (`code_lifetime`) further: a
/// verification started before the window may have sent in it. Idempotent retries are not
/// limited or guarded: their prefixes are not read.
pub(super) async fn recent_codes_of(
    tx: &mut WriteTx,
    work: &[Work],
    used_keys: &HashSet<ServiceKey>,
    defense: &AbuseDefense,
    code_lifetime: Duration,
    now: i64,
) -> Result<RecentCodes, StoreError> {
    let lifetime_ms = code_lifetime.as_millis() as i64;
    let limit_since = |kind: KeyKind| {
        defense
            .limits
            .limits()
            .iter()
            .filter(|limit| limit.key == kind)
            .map(|limit| now - limit.per.as_millis() as i64 - lifetime_ms)
            .min()
    };
    let numbers_since = limit_since(KeyKind::Number).unwrap_or(i64::MAX);
    let any_strict = work.iter().any(|(plan, ..)| plan.strict_abuse());
    let pumping_since = (defense.pumping.is_on() || any_strict)
        .then(|| now - defense.pumping.window.as_millis() as i64);
    let prefixes_since = limit_since(KeyKind::NumberPrefix)
        .into_iter()
        .chain(pumping_since)
        .min();
    let mut numbers: Vec<String> = work
        .iter()
        .map(|(plan, ..)| plan.e164().to_string())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut prefixes: Vec<String> = Vec::new();
    if prefixes_since.is_some() {
        prefixes = work
            .iter()
            .filter(|(plan, ..)| !plan.is_replay(used_keys))
            .map(|(plan, ..)| plan.number_prefix().to_string())
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
    }
    let codes = tx
        .recent_codes(
            &numbers,
            numbers_since,
            &prefixes,
            prefixes_since.unwrap_or(i64::MAX),
        )
        .await?;
    let mut by_number: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_prefix: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, code) in codes.iter().enumerate() {
        by_number.entry(code.e164.clone()).or_default().push(index);
        if !code.number_prefix.is_empty() {
            by_prefix
                .entry(code.number_prefix.clone())
                .or_default()
                .push(index);
        }
    }
    Ok(RecentCodes {
        codes,
        by_number,
        by_prefix,
    })
}

/// Decides the rate limits for each request of a group in turn (see `verify::store_group_in`).
pub(super) async fn rate_limits_of(
    tx: &mut WriteTx,
    work: &[Work],
    used_keys: &HashSet<ServiceKey>,
    limits: &RateLimits,
    recent: &RecentCodes,
    pending: &PendingCounts,
    now: i64,
) -> Result<Limited, StoreError> {
    // Each request's buckets with the keys the store counts them under.
    let buckets: Vec<Vec<(BucketKey, String)>> = work
        .iter()
        .map(|(plan, ..)| {
            if plan.is_replay(used_keys) {
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
    // Buckets keyed on a number or a prefix count the codes read; the others are counted.
    let mut keys: Vec<String> = buckets
        .iter()
        .flatten()
        .filter(|(bucket, _)| !counts_recorded_codes(bucket.kind))
        .map(|(_, key)| key.clone())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut usage = usage_of(tx, limits, pending, &keys, now).await?;
    for (bucket, key) in buckets.iter().flatten() {
        if counts_recorded_codes(bucket.kind)
            && !usage.contains_key(key)
            && let Some(limit) = limits.limit(&bucket.limit)
        {
            usage.insert(key.clone(), recent.usage(bucket, limit));
        }
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
                        usage.entry(key.clone()).or_default().add(slot, 1);
                        if !counts_recorded_codes(bucket.kind) {
                            counted_in.push((key, slot));
                        }
                    }
                }
                counted.push(counted_in);
            }
            Err(refusal) => {
                refusals.push((index, rate_limited(&refusal, "request", now)));
                counted.push(Vec::new());
            }
        }
    }
    Ok(Limited {
        refusals,
        counted_in: counted,
    })
}

/// The error a refusal of a `what` (a request, a notification) becomes: its explanation, what
/// it limits, and when to retry; logged with the number masked.
fn rate_limited(refusal: &LimitRefusal, what: &str, now: i64) -> UseCaseError {
    tracing::info!(
        limit = %refusal.bucket.limit,
        key = %refusal.bucket.kind.as_str(),
        value = %refusal.bucket.shown(),
        count = refusal.count,
        "{what} refused by a rate limit"
    );
    UseCaseError::RateLimited {
        explanation: refusal.explain(now),
        subject: format!(
            "{}: {} {}",
            refusal.bucket.limit,
            refusal.bucket.kind.as_str(),
            refusal.bucket.shown()
        ),
        retry_after: retry_after(refusal.retry_at_ms, now),
    }
}

/// How long from `now` until `until_ms`, rounded up to the second (as `RetryInfo` says it).
fn retry_after(until_ms: i64, now: i64) -> Duration {
    let wait_ms = (until_ms - now).max(0) as u64;
    Duration::from_millis(wait_ms.div_ceil(1000) * 1000)
}

/// Counts the requests of a group that queued a code (a new verification or a resend) in
/// their buckets: held for the group's transaction, kept when it commits (see
/// [`PendingCounts`]).
pub(super) fn hold_sent(
    pending: &Arc<PendingCounts>,
    results: &[Result<Stored, UseCaseError>],
    counted_in: Vec<Vec<(String, i64)>>,
) -> HeldCounts {
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (result, places) in results.iter().zip(counted_in) {
        if !matches!(result, Ok(Stored::Created(..) | Stored::Resent(_))) {
            continue;
        }
        for place in places {
            *counts.entry(place).or_default() += 1;
        }
    }
    pending.hold(
        counts
            .into_iter()
            .map(|((bucket, slot), count)| (bucket, slot, count))
            .collect(),
    )
}

/// How long blocks are kept after they end (for `ListBlocks` with ended ones).
const KEEP_ENDED_BLOCKS: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removes, every minute until `shutdown`, the counts of slots that left every window, and
/// blocks that ended more than a week ago.
pub(super) fn forget_old_counts(
    store: Arc<SqlStore>,
    defense: Arc<AbuseDefense>,
    mut shutdown: signal::Receiver<bool>,
) {
    let longest = defense
        .limits
        .limits()
        .iter()
        .map(|limit| limit.per)
        .chain([defense.pumping.window, defense.guessing.window])
        .max()
        .unwrap_or(FORGET_EVERY);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stopping| *stopping) => return,
                _ = tokio::time::sleep(FORGET_EVERY) => {}
            }
            let now = now_ms();
            let before = now - longest.as_millis() as i64 - FORGET_EVERY.as_millis() as i64;
            let ended_before = now - KEEP_ENDED_BLOCKS.as_millis() as i64;
            let forgotten = store
                .write_background(move |tx| {
                    Box::pin(async move {
                        let counts = tx.forget_rate_counts_before(before).await?;
                        let blocks = tx.forget_blocks_before(ended_before).await?;
                        Ok::<_, StoreError>(counts + blocks)
                    })
                })
                .await;
            match forgotten {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, "old rate-limit counts and blocks removed"),
                Err(error) => tracing::warn!(%error, "removing old rate-limit counts failed"),
            }
        }
    });
}

/// The bucket codes sent to a country are counted in for the pumping guard.
fn country_sent_bucket(region: &str) -> String {
    format!("pumping-sent|{region}")
}

/// The bucket approvals in a country are counted in for the pumping guard.
fn country_approved_bucket(region: &str) -> String {
    format!("pumping-approved|{region}")
}

/// How often a server reads the blocks again (those other replicas started or lifted).
const BLOCKS_EVERY: Duration = Duration::from_secs(1);
/// How often a server reads the countries' counts again.
const COUNTRIES_EVERY: Duration = Duration::from_secs(5);
/// How long a block this server started is kept in its view without being read back (its
/// transaction may not have committed when the view was read).
const UNREAD_BLOCK_KEPT_MS: i64 = 10_000;

/// What this server knows of the blocks (in force, or recent enough to make a target's next
/// block longer) and of the countries' counts. Read from the store in the background and
/// kept in memory, so that a Verify group or a check does not read them in its transaction:
/// blocks started or lifted by other replicas are seen within [`BLOCKS_EVERY`], this server's
/// own at once.
#[derive(Default)]
pub(super) struct GuardView {
    blocks: std::sync::RwLock<Vec<Block>>,
    /// Per country: `(slot, codes sent, approvals)`.
    countries: std::sync::RwLock<HashMap<String, Vec<CountrySlot>>>,
    /// The rate-limit counts this server decided and has not written yet.
    pub(super) pending: Arc<PendingCounts>,
}

/// A country's counts in one slot: `(slot start, codes sent, approvals)`.
type CountrySlot = (i64, u64, u64);

impl GuardView {
    /// Keeps the view up to date from `store` until `shutdown`.
    pub(super) fn follow(
        self: &Arc<Self>,
        store: Arc<SqlStore>,
        defense: Arc<AbuseDefense>,
        mut shutdown: signal::Receiver<bool>,
    ) {
        self.pending
            .write_in_background(Arc::clone(&store), shutdown.clone());
        let view = Arc::clone(self);
        let memory = defense
            .pumping
            .ladder
            .memory
            .max(defense.guessing.ladder.memory);
        tokio::spawn(async move {
            let mut countries_read_ms = 0;
            loop {
                let now = now_ms();
                match store.blocks_since(now - memory.as_millis() as i64).await {
                    Ok(blocks) => view.replace_blocks(blocks, now),
                    Err(error) => tracing::warn!(%error, "reading blocks failed"),
                }
                if defense.pumping.is_on()
                    && now - countries_read_ms >= COUNTRIES_EVERY.as_millis() as i64
                {
                    countries_read_ms = now;
                    let window = defense.pumping.window;
                    let since = slot_of(window, now - window.as_millis() as i64);
                    match store.rate_counts_under("pumping-", since).await {
                        Ok(counts) => view.replace_countries(counts),
                        Err(error) => tracing::warn!(%error, "reading country counts failed"),
                    }
                }
                tokio::select! {
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                    _ = tokio::time::sleep(BLOCKS_EVERY) => {}
                }
            }
        });
    }

    /// The blocks known of `targets`.
    pub(super) fn blocks_of(&self, targets: &HashSet<BlockTarget>) -> Vec<Block> {
        self.blocks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|block| targets.contains(&block.target))
            .cloned()
            .collect()
    }

    /// Adds blocks this server started (or replaces them, lifted).
    pub(super) fn add(&self, blocks: &[Block]) {
        let mut known = self
            .blocks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for block in blocks {
            known.retain(|other| other.id != block.id);
            known.push(block.clone());
        }
    }

    /// The blocks as read from the store, with those this server started lately that the
    /// read did not see yet.
    fn replace_blocks(&self, read: Vec<Block>, now: i64) {
        let mut known = self
            .blocks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ids: HashSet<&str> = read.iter().map(|block| block.id.as_str()).collect();
        let unread: Vec<Block> = known
            .iter()
            .filter(|block| {
                !ids.contains(block.id.as_str()) && block.started_ms > now - UNREAD_BLOCK_KEPT_MS
            })
            .cloned()
            .collect();
        *known = read;
        known.extend(unread);
    }

    fn replace_countries(&self, counts: Vec<(String, i64, i64)>) {
        let mut countries: HashMap<String, Vec<CountrySlot>> = HashMap::new();
        for (bucket, slot, count) in counts {
            let mut parts = bucket.split('|');
            let count = count.max(0) as u64;
            let (region, sent, approved) = match (parts.next(), parts.next()) {
                (Some("pumping-sent"), Some(region)) => (region, count, 0),
                (Some("pumping-approved"), Some(region)) => (region, 0, count),
                _ => continue,
            };
            countries
                .entry(region.to_string())
                .or_default()
                .push((slot, sent, approved));
        }
        *self
            .countries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = countries;
    }

    /// A country's codes sent (those older than the guard's grace) and approvals in the
    /// guard's window, after `after` (when it was last under watch) if given.
    fn country_activity(
        &self,
        region: &str,
        after: Option<i64>,
        pumping: &verify_policy::abuse::PumpingGuard,
        now: i64,
    ) -> CountryActivity {
        let window = pumping.window;
        let oldest = slot_of(window, now - window.as_millis() as i64);
        let matured = slot_of(window, now - pumping.conversion_grace.as_millis() as i64);
        let after = after.map(|started| slot_of(window, started));
        let countries = self
            .countries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut activity = CountryActivity::default();
        for &(slot, sent, approved) in countries.get(region).into_iter().flatten() {
            if slot < oldest || after.is_some_and(|after| slot <= after) {
                continue;
            }
            activity.approved += approved;
            if slot <= matured {
                activity.sent += sent;
            }
        }
        activity
    }
}

/// The bucket wrong codes for a number are counted in: one per round, a round ending when a
/// cool-off starts (`cool_off_started`, 0 before the first), so that the codes that started a
/// cool-off do not count toward the next.
fn guessing_bucket(e164: &str, cool_off_started: i64) -> String {
    format!("guessing|{e164}|{cool_off_started}")
}

/// The slot of the guard's counts: a sixtieth of its window, at least a second.
fn slot_of(window: Duration, at_ms: i64) -> i64 {
    let slot = ((window.as_millis() / 60) as i64).max(1000);
    at_ms - at_ms.rem_euclid(slot)
}

/// The error a block becomes: its explanation, what it blocks, and when it ends.
pub(super) fn blocked(block: &Block, now: i64) -> UseCaseError {
    UseCaseError::RateLimited {
        explanation: block.explain(now),
        subject: format!("{} {}: {}", block.rule, block.id, block.target.shown()),
        retry_after: retry_after(block.ends_ms, now),
    }
}

/// What the blocks and the pumping guard decided for a group.
pub(super) struct Guarded {
    /// The requests refused, by index, with why.
    pub(super) refusals: Vec<(usize, UseCaseError)>,
    /// Blocks the group started (stored with it).
    pub(super) new_blocks: Vec<Block>,
    /// Where each request allowed counts for the pumping guard, by index, as `(bucket,
    /// slot)`.
    pub(super) counted_in: Vec<Vec<(String, i64)>>,
}

/// Decides blocks and the pumping guard for each request of a group in turn that the rate
/// limits allowed (`refused` holds those they refused; `used_keys` the idempotent retries,
/// which send nothing and are not guarded): a request to a blocked number, prefix or country
/// is refused; one the pumping guard finds suspect starts a block (refused unless the guard
/// only monitors). Each request allowed counts for the ones after it.
pub(super) fn guard_group(
    work: &[Work],
    recent: &RecentCodes,
    refused: &HashSet<usize>,
    used_keys: &HashSet<ServiceKey>,
    defense: &AbuseDefense,
    view: &GuardView,
    now: i64,
) -> Guarded {
    let pumping = &defense.pumping;
    // Each request's number, prefix and country; `None` for those not guarded.
    let subjects: Vec<Option<(String, String, Option<String>)>> = work
        .iter()
        .enumerate()
        .map(|(index, (plan, ..))| {
            (!refused.contains(&index) && !plan.is_replay(used_keys)).then(|| {
                let region = plan.region().map(str::to_string);
                (
                    plan.e164().to_string(),
                    plan.number_prefix().to_string(),
                    region,
                )
            })
        })
        .collect();
    let targets: HashSet<BlockTarget> = subjects
        .iter()
        .flatten()
        .flat_map(|(number, prefix, region)| targets_of(number, prefix, region.as_deref()))
        .collect();
    let mut blocks = view.blocks_of(&targets);
    let mut prefix_sends: HashMap<String, Vec<RecentSend>> = HashMap::new();
    let mut countries: HashMap<String, CountryActivity> = HashMap::new();
    let window_start = now - pumping.window.as_millis() as i64;
    let any_strict = work.iter().any(|(plan, ..)| plan.strict_abuse());
    if pumping.is_on() || any_strict {
        for (_, prefix, _) in subjects.iter().flatten() {
            if prefix_sends.contains_key(prefix) {
                continue;
            }
            let sends = recent
                .of(KeyKind::NumberPrefix, prefix)
                .filter(|code| code.created_at_ms >= window_start)
                .map(|code| RecentSend {
                    e164: code.e164.clone(),
                    approved: code.approved,
                    at_ms: code.created_at_ms,
                })
                .collect();
            prefix_sends.insert(prefix.clone(), sends);
        }
        let regions: HashSet<&str> = subjects
            .iter()
            .flatten()
            .filter_map(|(.., region)| region.as_deref())
            .collect();
        for region in regions {
            let after = last_block_start(&blocks, &BlockTarget::country(region));
            countries.insert(
                region.to_string(),
                view.country_activity(region, after, pumping, now),
            );
        }
        // Only the codes sent after a prefix's last block count: a block that ended (or was
        // lifted) needs new evidence to start again.
        for (prefix, sends) in &mut prefix_sends {
            if let Some(started) = last_block_start(&blocks, &BlockTarget::prefix(prefix)) {
                sends.retain(|send| send.at_ms > started);
            }
        }
    }
    let mut guarded = Guarded {
        refusals: Vec::new(),
        new_blocks: Vec::new(),
        counted_in: vec![Vec::new(); work.len()],
    };
    for (index, subject) in subjects.into_iter().enumerate() {
        let Some((number, prefix, region)) = subject else {
            continue;
        };
        let mine = targets_of(&number, &prefix, region.as_deref());
        let in_force = longest_in_force(
            blocks.iter().filter(|block| mine.contains(&block.target)),
            now,
        );
        if let Some(block) = in_force {
            guarded.refusals.push((index, blocked(block, now)));
            continue;
        }
        let (plan, ..) = &work[index];
        // The service's own level, when it asks for a stricter one.
        let pumping = defense.pumping_for(plan.strict_abuse());
        if !pumping.is_on() {
            continue;
        }
        // A country converting badly is put under watch (never blocked as a whole).
        let mut watched = false;
        if let Some(region) = &region {
            let target = BlockTarget::country(region);
            watched = blocks
                .iter()
                .any(|block| block.target == target && block.is_active(now));
            let activity = countries.get(region).copied().unwrap_or_default();
            if !watched && let Some(verdict) = pumping.judge_country(region, activity) {
                let watch = start_block(verdict, &blocks, &pumping.ladder, false, now);
                view.add(std::slice::from_ref(&watch));
                blocks.push(watch.clone());
                guarded.new_blocks.push(watch);
                watched = true;
            }
        }
        let sends = prefix_sends.entry(prefix.clone()).or_default();
        if let Some(verdict) =
            pumping.judge(&number, &prefix, plan.line_type(), sends, watched, now)
        {
            let already = blocks
                .iter()
                .find(|block| block.target == verdict.target && block.is_active(now))
                .cloned();
            let block = match already {
                Some(block) => block,
                None => {
                    let block =
                        start_block(verdict, &blocks, &pumping.ladder, pumping.enforces(), now);
                    view.add(std::slice::from_ref(&block));
                    blocks.push(block.clone());
                    guarded.new_blocks.push(block.clone());
                    block
                }
            };
            if block.enforced {
                guarded.refusals.push((index, blocked(&block, now)));
                continue;
            }
        }
        // Allowed: the requests after it in the group see its code.
        sends.push(RecentSend {
            e164: number.clone(),
            approved: false,
            at_ms: now,
        });
        if let Some(region) = &region {
            guarded.counted_in[index]
                .push((country_sent_bucket(region), slot_of(pumping.window, now)));
        }
    }
    guarded
}

/// The block `verdict` starts now: the next strike of its target and rule, as long as
/// `ladder` says; logged as a warning.
fn start_block(
    verdict: Verdict,
    earlier: &[Block],
    ladder: &BlockLadder,
    enforced: bool,
    now: i64,
) -> Block {
    let strike = ladder.next_strike(&verdict.target, verdict.rule, earlier, now);
    let block = verdict.into_block(new_id("blk"), strike, ladder, enforced, now);
    tracing::warn!(
        block = %block.id,
        rule = %block.rule,
        target = %block.target.shown(),
        enforced = block.enforced,
        "abuse defense: {}",
        block.explain(now)
    );
    block
}

/// What a request for `number` (of `prefix`, in `region`) may be blocked by.
fn targets_of(number: &str, prefix: &str, region: Option<&str>) -> Vec<BlockTarget> {
    let mut targets = vec![BlockTarget::number(number), BlockTarget::prefix(prefix)];
    targets.extend(region.map(BlockTarget::country));
    targets
}

/// Of `blocks`, the one in force at `now` that lasts longest (when it ends, none of them
/// refuses).
fn longest_in_force<'a>(blocks: impl Iterator<Item = &'a Block>, now: i64) -> Option<&'a Block> {
    blocks
        .filter(|block| block.refuses(now))
        .max_by_key(|block| block.ends_ms)
}

/// When the last block of `target` started, if it had one in the blocks read.
fn last_block_start(blocks: &[Block], target: &BlockTarget) -> Option<i64> {
    blocks
        .iter()
        .filter(|block| &block.target == target)
        .map(|block| {
            block
                .lifted_ms
                .unwrap_or(block.started_ms)
                .max(block.started_ms)
        })
        .max()
}

/// Abuse defense for one Notify, in its write: a notification to a number, prefix or country
/// under a block in force is refused, and the rate limits keyed on what the client says of
/// the person asking (IP address and network, device, user) and on the API key count it and
/// refuse it when full (the counts are held for the write: kept once it commits). The limits
/// keyed on the number, its prefix and country count codes only: an alert to many people of
/// one range is not pumping.
pub(super) async fn guard_notify(
    tx: &mut WriteTx,
    defense: &AbuseDefense,
    view: &GuardView,
    e164: &str,
    region: &str,
    context: &verify_policy::abuse::RequestContext,
    now: i64,
) -> Result<HeldCounts, UseCaseError> {
    let limits = &defense.limits;
    let prefix = limits.prefix_of(e164, Some(region));
    let targets = targets_of(e164, &prefix, Some(region))
        .into_iter()
        .collect();
    if let Some(block) = longest_in_force(view.blocks_of(&targets).iter(), now) {
        return Err(blocked(block, now));
    }
    let buckets: Vec<(BucketKey, String)> = limits
        .buckets(e164, Some(region), context)
        .into_iter()
        .filter(|bucket| {
            !matches!(
                bucket.kind,
                KeyKind::Number | KeyKind::NumberPrefix | KeyKind::Country
            )
        })
        .map(|bucket| {
            let key = bucket.storage_key();
            (bucket, key)
        })
        .collect();
    if buckets.is_empty() {
        return Ok(HeldCounts::none());
    }
    let keys: Vec<String> = buckets.iter().map(|(_, key)| key.clone()).collect();
    let mut usage = usage_of(tx, limits, &view.pending, &keys, now).await?;
    let counted: Vec<(BucketKey, Usage)> = buckets
        .iter()
        .map(|(bucket, key)| (bucket.clone(), usage.remove(key).unwrap_or_default()))
        .collect();
    if let Err(refusal) = limits.check(&counted, now) {
        return Err(rate_limited(&refusal, "notification", now));
    }
    let counts: Vec<(String, i64, i64)> = buckets
        .into_iter()
        .filter_map(|(bucket, key)| {
            let slot = limits.limit(&bucket.limit)?.slot_of(now);
            Some((key, slot, 1))
        })
        .collect();
    Ok(view.pending.hold(counts))
}

/// Stores the blocks a group started. A failure is logged and does not undo the group's
/// requests (the requests it refused stay refused; the next one judges again).
pub(super) async fn store_blocks(tx: &mut WriteTx, blocks: Vec<Block>, now: i64) {
    if blocks.is_empty() {
        return;
    }
    let stored = tx
        .isolated(move |tx| {
            Box::pin(async move {
                tx.insert_blocks(&blocks).await?;
                tx.record(
                    blocks
                        .iter()
                        .map(|block| block_event(block, EventKind::DestinationBlocked, now)),
                );
                Ok::<_, StoreError>(())
            })
        })
        .await;
    if let Err(error) = stored {
        tracing::warn!(%error, "storing blocks failed");
    }
}

/// What is counted in the rate-limit buckets `keys`, in every slot some limit's window holds.
async fn usage_of(
    tx: &mut WriteTx,
    limits: &RateLimits,
    pending: &PendingCounts,
    keys: &[String],
    now: i64,
) -> Result<HashMap<String, Usage>, StoreError> {
    let since = limits
        .limits()
        .iter()
        .map(|limit| limit.oldest_slot_in_window(now))
        .min()
        .unwrap_or(now);
    let mut usage: HashMap<String, Usage> = HashMap::new();
    if keys.is_empty() {
        return Ok(usage);
    }
    // Read with this server's mark, which says which of its counts the read shows.
    let (rows, seen) = counts_with_mark(tx, pending, keys, since).await?;
    for (bucket, slot, count) in rows {
        usage
            .entry(bucket)
            .or_default()
            .add(slot, stored_count(count));
    }
    // With the counts this server has not written yet.
    for key in keys {
        for (slot, count) in pending.of(key, since, seen) {
            usage
                .entry(key.clone())
                .or_default()
                .add(slot, stored_count(count));
        }
    }
    Ok(usage)
}

/// The stored counts of `keys` in slots from `since` on, without this server's mark, and the
/// mark (how many of this server's writes the read shows), read in one statement.
async fn counts_with_mark(
    tx: &mut WriteTx,
    pending: &PendingCounts,
    keys: &[String],
    since: i64,
) -> Result<(Vec<(String, i64, i64)>, i64), StoreError> {
    let mut asked = keys.to_vec();
    asked.push(pending.mark_bucket().to_string());
    let mut rows = tx.rate_counts(&asked, since).await?;
    let seen = pending.mark_in(&rows);
    rows.retain(|(bucket, ..)| bucket != pending.mark_bucket());
    Ok((rows, seen))
}

/// A count as the store keeps it (a signed integer) as the rules count it.
fn stored_count(count: i64) -> u32 {
    u32::try_from(count.max(0)).unwrap_or(u32::MAX)
}

/// What Check's guard does around one check of a pending verification of `e164`.
pub(super) struct CheckGuard<'a> {
    defense: &'a AbuseDefense,
    view: &'a GuardView,
    e164: String,
    region: Option<String>,
}

impl<'a> CheckGuard<'a> {
    /// The guard of a check of a verification of `e164` (in `region`).
    pub(super) fn new(
        defense: &'a AbuseDefense,
        view: &'a GuardView,
        e164: &str,
        region: Option<&str>,
    ) -> Self {
        CheckGuard {
            defense,
            view,
            e164: e164.to_string(),
            region: region.map(str::to_string),
        }
    }

    /// The blocks of the number that a cool-off may grow from (known before the check); the
    /// check is refused if one is in force.
    pub(super) fn before(&self, now: i64) -> Result<Vec<Block>, UseCaseError> {
        if !self.defense.guessing.is_on() {
            return Ok(Vec::new());
        }
        let blocks = self
            .view
            .blocks_of(&[BlockTarget::number(&self.e164)].into());
        if let Some(block) = longest_in_force(blocks.iter(), now) {
            return Err(blocked(block, now));
        }
        Ok(blocks)
    }

    /// Counts a check's outcome: an approval for the pumping guard's country counts, a wrong
    /// code against the number (cooling it off when it reaches the limit).
    pub(super) async fn after(
        &self,
        tx: &mut WriteTx,
        approved: bool,
        wrong: bool,
        earlier: &[Block],
        now: i64,
    ) -> Result<HeldCounts, StoreError> {
        let defense = self.defense;
        let pending = &self.view.pending;
        let mut held = HeldCounts::none();
        if approved
            && defense.pumping.is_on()
            && let Some(region) = &self.region
        {
            let slot = slot_of(defense.pumping.window, now);
            held.join(pending.hold(vec![(country_approved_bucket(region), slot, 1)]));
        }
        let guessing = &defense.guessing;
        if !wrong || !guessing.is_on() {
            return Ok(held);
        }
        // Counted in the window since the last cool-off started.
        let last_cool_off = earlier
            .iter()
            .filter(|block| block.rule == BlockRule::Guessing)
            .map(|block| block.started_ms)
            .max()
            .unwrap_or(0);
        let bucket = guessing_bucket(&self.e164, last_cool_off);
        let since = slot_of(guessing.window, now - guessing.window.as_millis() as i64);
        let (rows, seen) =
            counts_with_mark(tx, pending, std::slice::from_ref(&bucket), since).await?;
        let stored: i64 = rows.iter().map(|(.., count)| count).sum();
        let unwritten: i64 = pending
            .of(&bucket, since, seen)
            .iter()
            .map(|(_, count)| count)
            .sum();
        // With this one.
        let wrong = stored_count(stored + unwritten + 1);
        held.join(pending.hold(vec![(bucket, slot_of(guessing.window, now), 1)]));
        if let Some(verdict) = guessing.judge(&self.e164, wrong) {
            let block = start_block(verdict, earlier, &guessing.ladder, true, now);
            self.view.add(std::slice::from_ref(&block));
            tx.insert_blocks(std::slice::from_ref(&block)).await?;
            tx.record([block_event(&block, EventKind::DestinationBlocked, now)]);
        }
        Ok(held)
    }
}

/// Blocks `ListBlocks` answers with when the request says nothing.
const DEFAULT_BLOCK_LIST: u32 = 100;
/// Most blocks one `ListBlocks` answers with.
const MAX_BLOCK_LIST: u32 = 1000;

impl super::UseCases {
    /// Geo permissions for a message to `e164` in `region`: refused (`FAILED_PRECONDITION`
    /// naming the setting) if its country is blocked; with the setting's sentence for the
    /// decision (and a log line) if it is monitored.
    pub(super) fn geo_permission(
        &self,
        e164: &str,
        region: Option<&str>,
    ) -> Result<Option<String>, UseCaseError> {
        let in_rule_set = region.is_some_and(|region| self.rules.has_country(region));
        let geo = self.defense.geo.decide(region, in_rule_set);
        match geo.permission {
            GeoPermission::Block => Err(UseCaseError::FailedPrecondition {
                field: "to",
                reason: geo.reason,
            }),
            GeoPermission::Monitor => {
                tracing::info!(to = %mask_number(e164), "{}", geo.reason);
                Ok(Some(geo.reason))
            }
            GeoPermission::Allow => Ok(None),
        }
    }

    /// The blocks abuse defense started, newest first: those in force, or with
    /// `include_ended` also those kept after they ended or were lifted; at most `limit` (0 for
    /// the default, 100).
    pub async fn list_blocks(
        &self,
        caller: &super::Caller,
        include_ended: bool,
        limit: u32,
    ) -> Result<Vec<Block>, UseCaseError> {
        caller.require_admin("ListBlocks")?;
        let limit = match limit {
            0 => DEFAULT_BLOCK_LIST,
            n if n > MAX_BLOCK_LIST => {
                return Err(UseCaseError::InvalidArgument {
                    field: "limit",
                    reason: format!("at most {MAX_BLOCK_LIST}, got {n}"),
                });
            }
            n => n,
        };
        let active_at = (!include_ended).then(now_ms);
        Ok(self.store.list_blocks(active_at, limit).await?)
    }

    /// Lifts block `id` for `by` (an API key's name); lifting one that ended or was lifted
    /// changes nothing.
    pub async fn unblock(&self, caller: &super::Caller, id: &str) -> Result<Block, UseCaseError> {
        caller.require_admin("Unblock")?;
        super::input::validate_id("block_id", id)?;
        let by = caller.name();
        let now = now_ms();
        let (id, by) = (id.to_string(), by.to_string());
        let block = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let block = tx.lift_block(&id, now, &by).await?;
                    let block = block.ok_or(UseCaseError::NotFound {
                        resource: "block",
                        field: "block_id",
                        value: id,
                    })?;
                    if block.lifted_ms == Some(now) {
                        tx.record([block_event(&block, EventKind::BlockLifted, now)]);
                    } else {
                        tx.discard();
                    }
                    Ok::<_, UseCaseError>(block)
                })
            })
            .await?;
        if block.lifted_ms == Some(now) {
            self.guard_view.add(std::slice::from_ref(&block));
            tracing::info!(
                block = %block.id,
                target = %block.target.shown(),
                by = block.lifted_by.as_deref().unwrap_or_default(),
                "block lifted"
            );
        }
        Ok(block)
    }
}
