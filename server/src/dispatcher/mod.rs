//! The outbox dispatcher: claims due messages under its lease, decides for each whether it may
//! go now (its verification still pending, the country rules at send time), hands it to its
//! carrier, and records how that ended. Any number of dispatchers can share one database; a
//! message is held by one at a time, and a dispatcher that dies has its messages taken over
//! within seconds (see [`lease`]). Its sweep also expires verifications, runs fallback steps,
//! and applies receipts that were kept for a message whose submission is now recorded.

mod lease;
mod prepare;
mod receipts;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use verify_carrier::{Carrier, OutboundMessage};

pub use lease::WorkerIdentity;
pub use receipts::{RECEIPT_CHANNEL_CAPACITY, record_receipts};

use crate::carriers::CarrierSet;
use crate::clock::now_ms;
use crate::codes::CodeBook;
use crate::config::DispatcherSettings;
use crate::decide::Decider;
use crate::domain::{Attempt, OutboxMessage, SendOutcome};
use crate::notify::NotifyPolicy;
use crate::services::ServiceDirectory;
use crate::store::{SqlStore, StoreError};
use crate::usecases::{delivery, workflow};
use prepare::Prepared;

/// How often the sweep runs: takes over dead dispatchers, expires codes, runs due steps.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Receipts that never found their message are forgotten after this long.
const KEEP_RECEIPTS_FOR: Duration = Duration::from_secs(60 * 60);
/// How often receipts older than [`KEEP_RECEIPTS_FOR`] are looked for.
const FORGET_RECEIPTS_EVERY: Duration = Duration::from_secs(60);

/// A message handed over and ready to submit: its id, the attempt, its carrier, what it gets.
type Ready = (String, Attempt, Arc<dyn Carrier>, OutboundMessage);

/// How a submission ended, on its way to the outcome recorder, which answers once it is
/// recorded (or could not be).
struct PendingOutcome {
    message_id: String,
    attempt: Attempt,
    outcome: SendOutcome,
    recorded: oneshot::Sender<()>,
}

/// How long a campaign's message a carrier throttled waits before it goes to that carrier
/// again.
const THROTTLED_RETRY_MS: i64 = 1_000;

/// Outcomes recorded in one transaction at most.
const OUTCOME_BATCH: usize = 256;
/// Batches of outcomes written at once: one runs while the other waits for its commit, and
/// outcomes that end meanwhile gather into the next (with four, batches of a few messages
/// each cost PostgreSQL a transaction apiece: Verify with its sending ran at ~1,600/s there
/// against ~1,780/s with two, and no slower on SQLite).
const OUTCOME_WRITERS: usize = 2;

/// Sends queued messages until `shutdown` turns true, then finishes what it already handed
/// over and gives back what it claimed.
pub struct Dispatcher {
    store: Arc<SqlStore>,
    carriers: Arc<CarrierSet>,
    decider: Arc<Decider>,
    rules: Arc<NotifyPolicy>,
    codes: CodeBook,
    /// The services, for the words of their messages.
    services: Arc<ServiceDirectory>,
    settings: DispatcherSettings,
    identity: WorkerIdentity,
    /// Messages being submitted now, so the sweep can tell those this dispatcher still holds
    /// for a reason from those a lost database answer stranded.
    submitting: Mutex<HashSet<String>>,
}

impl Dispatcher {
    /// A dispatcher over its parts, with a new identity.
    pub fn new(
        store: Arc<SqlStore>,
        carriers: Arc<CarrierSet>,
        decider: Arc<Decider>,
        rules: Arc<NotifyPolicy>,
        codes: CodeBook,
        services: Arc<ServiceDirectory>,
        settings: DispatcherSettings,
    ) -> Self {
        Dispatcher {
            store,
            carriers,
            decider,
            rules,
            codes,
            services,
            settings,
            identity: WorkerIdentity::of_this_process(),
            submitting: Mutex::default(),
        }
    }

    fn submitting(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.submitting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs until `shutdown` is true and every message handed over has an outcome.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let worker = this.identity.id.clone();
        if !this.register(&mut shutdown).await {
            return;
        }
        // The lease is renewed until the messages handed over have their outcomes, after the
        // loop below ends: a stopping dispatcher is not taken for dead while it drains.
        let heartbeat = tokio::spawn(lease::keep_alive(
            Arc::clone(&this.store),
            this.identity.clone(),
            this.settings.lease(),
        ));
        let (outcomes, outcome_queue) = mpsc::channel(OUTCOME_BATCH * 4);
        let recorder = tokio::spawn(Arc::clone(&this).record_outcomes(outcome_queue));
        let slots = Arc::new(Semaphore::new(this.settings.max_in_flight));
        let mut in_flight = JoinSet::new();
        let mut signal = this.store.event_signal();
        let mut last_sweep = 0i64;
        let mut last_forget = 0i64;
        tracing::info!(worker, "dispatcher started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = now_ms();
            if now - last_sweep >= SWEEP_EVERY.as_millis() as i64 {
                last_sweep = now;
                this.sweep(now).await;
            }
            if now - last_forget >= FORGET_RECEIPTS_EVERY.as_millis() as i64 {
                last_forget = now;
                this.forget_old_receipts(now).await;
            }
            let free = slots
                .available_permits()
                .min(this.settings.batch_size as usize) as u32;
            let round_started = std::time::Instant::now();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match delivery::claim(&this.store, &worker, now, free).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, "claiming due messages failed");
                        Vec::new()
                    }
                }
            };
            let got = claimed.len() as u32;
            let claim_took = round_started.elapsed();
            if got > 0 {
                // Each send continues the trace of the request that queued its message.
                let traces: std::collections::HashMap<String, Option<String>> = claimed
                    .iter()
                    .map(|m| (m.id.clone(), m.trace_parent.clone()))
                    .collect();
                let ready = this.prepare_and_hand_off(claimed).await;
                tracing::debug!(
                    claimed = got,
                    claim_ms = claim_took.as_millis() as u64,
                    round_ms = round_started.elapsed().as_millis() as u64,
                    "dispatch round"
                );
                for (message_id, attempt, carrier, outbound) in ready {
                    let span = tracing::info_span!(
                        "send",
                        otel.name = "send",
                        message_id = %message_id,
                        carrier = %carrier.name(),
                    );
                    crate::telemetry::continue_from(
                        &span,
                        traces.get(&message_id).and_then(Option::as_deref),
                    );
                    let permit = Arc::clone(&slots)
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    this.submitting().insert(message_id.clone());
                    let this = Arc::clone(&this);
                    let outcomes = outcomes.clone();
                    in_flight.spawn(tracing::Instrument::instrument(
                        async move {
                            this.send(&message_id, &attempt, carrier, outbound, &outcomes)
                                .await;
                            this.submitting().remove(&message_id);
                            drop(permit);
                        },
                        span,
                    ));
                }
            }
            while in_flight.try_join_next().is_some() {}
            if got == free && free > 0 {
                continue; // More may be due right now.
            }
            tokio::select! {
                _ = shutdown.wait_for(|stopping| *stopping) => break,
                _ = signal.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(this.settings.poll_interval_ms)) => {}
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            "dispatcher stopping; finishing messages handed to carriers"
        );
        while in_flight.join_next().await.is_some() {}
        drop(outcomes);
        let _ = recorder.await;
        heartbeat.abort();
        match delivery::release_worker(&this.store, &worker, now_ms()).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "claimed messages given back to the queue"),
            Err(error) => {
                tracing::error!(%error, "giving back claimed messages failed; another dispatcher takes them over")
            }
        }
        tracing::info!("dispatcher stopped");
    }

    /// Registers this dispatcher, retrying until the database answers; `false` on shutdown.
    async fn register(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut delay = Duration::from_millis(100);
        loop {
            match delivery::register_worker(&self.store, &self.identity.record()).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::error!(%error, "registering the dispatcher failed; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return false,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn sweep(&self, now: i64) {
        let lease = self.settings.lease();
        let taken = delivery::take_over_dead_workers(
            &self.store,
            |worker, database_now| self.identity.takes_for_dead(worker, lease, database_now),
            |carrier| {
                self.carriers
                    .get(carrier)
                    .is_some_and(|c| c.capabilities().deduplicates_submissions)
            },
            now,
        )
        .await;
        match taken {
            Ok(0) => {}
            Ok(count) => tracing::warn!(count, "messages of stopped dispatchers taken over"),
            Err(error) => tracing::error!(%error, "taking over stopped dispatchers failed"),
        }
        self.settle_stranded(now).await;
        match delivery::apply_kept_receipts(&self.store, now).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "kept receipts applied to their messages"),
            Err(error) => tracing::error!(%error, "applying kept receipts failed"),
        }
        match workflow::expire_due(&self.store, now).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "verifications expired"),
            Err(error) => tracing::error!(%error, "expiring verifications failed"),
        }
        if let Err(error) = workflow::run_due_steps(&self.store, &self.decider, now).await {
            tracing::error!(%error, "running workflow steps failed");
        }
    }

    /// Messages this dispatcher holds with no reason to: between rounds it claims nothing, so a
    /// claimed one was stranded (a claim whose commit answer was lost, a give-back that failed)
    /// and goes back to the queue; one being handed over that no submission is running for
    /// (its outcome could not be recorded) is settled as its takeover would be.
    async fn settle_stranded(&self, now: i64) {
        let submitting = self.submitting().clone();
        let settled = delivery::settle_stranded(
            &self.store,
            &self.identity.id,
            |message| submitting.contains(&message.id),
            |carrier| {
                self.carriers
                    .get(carrier)
                    .is_some_and(|c| c.capabilities().deduplicates_submissions)
            },
            now,
        )
        .await;
        match settled {
            Ok(0) => {}
            Ok(count) => tracing::warn!(
                count,
                "messages this dispatcher held with no submission running were settled"
            ),
            Err(error) => tracing::error!(%error, "settling stranded messages failed"),
        }
    }

    async fn forget_old_receipts(&self, now: i64) {
        let before = now - KEEP_RECEIPTS_FOR.as_millis() as i64;
        match delivery::forget_receipts_before(&self.store, before).await {
            Ok(0) => {}
            Ok(count) => tracing::warn!(
                count,
                "receipts that matched no message within an hour were dropped"
            ),
            Err(error) => tracing::error!(%error, "dropping old receipts failed"),
        }
    }

    /// Decides for each claimed message, settles those that will not go, and marks the others
    /// as being handed over; returns those this dispatcher still holds, ready to submit.
    async fn prepare_and_hand_off(&self, claimed: Vec<OutboxMessage>) -> Vec<Ready> {
        let now = now_ms();
        let prepare_started = std::time::Instant::now();
        let prepared = prepare::prepare(
            &self.store,
            &self.carriers,
            &self.rules,
            &self.codes,
            &self.services,
            claimed,
            now,
        )
        .await;
        let mut settled = Vec::new();
        let mut ready = Vec::new();
        let mut later = Vec::new();
        for item in prepared {
            match item {
                Prepared::Settle {
                    message_id,
                    attempt,
                    outcome,
                } => settled.push((message_id, attempt, outcome)),
                Prepared::Release { message_id } => later.push(message_id),
                Prepared::Send {
                    message_id,
                    carrier,
                    outbound,
                } => ready.push((message_id, carrier, outbound)),
            }
        }
        let ids: Vec<String> = ready.iter().map(|(id, _, _)| id.clone()).collect();
        let worker = &self.identity.id;
        if !later.is_empty()
            && let Err(error) = delivery::release_claims(&self.store, worker, &later, now).await
        {
            tracing::error!(%error, "giving claimed messages back failed; the next sweep does");
        }
        let prepare_took = prepare_started.elapsed();
        let handed = self
            .retrying(|| {
                delivery::settle_and_hand_off(&self.store, worker, settled.clone(), &ids, now_ms())
            })
            .await;
        tracing::debug!(
            prepare_ms = prepare_took.as_millis() as u64,
            hand_off_ms = (prepare_started.elapsed() - prepare_took).as_millis() as u64,
            "claimed messages prepared and handed over"
        );
        match handed {
            Ok(handed) => {
                // The attempt number of each message handed over, looked up once per message.
                let numbers: HashMap<String, u32> = handed.into_iter().collect();
                ready
                    .into_iter()
                    .filter_map(|(id, carrier, outbound)| {
                        let number = *numbers.get(&id)?;
                        let attempt = Attempt {
                            worker: worker.clone(),
                            number,
                        };
                        Some((id, attempt, carrier, outbound))
                    })
                    .collect()
            }
            Err(error) => {
                // Nothing was handed over: they stay claimed by this live dispatcher, which
                // gives them back now (or, failing that, at its next sweep).
                tracing::error!(%error, count = ids.len(), "handing messages over failed; giving them back");
                let claimed: Vec<String> = settled
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .chain(ids)
                    .collect();
                if let Err(error) =
                    delivery::release_claims(&self.store, worker, &claimed, now_ms()).await
                {
                    tracing::error!(%error, "giving claimed messages back failed; the next sweep does");
                }
                Vec::new()
            }
        }
    }

    /// Hands one message to its carrier and records how that ended (with the outcomes of
    /// other submissions that ended meanwhile, in one transaction). A carrier that does not
    /// answer in time may have sent the message: it is maybe sent, never failed over.
    async fn send(
        &self,
        message_id: &str,
        attempt: &Attempt,
        carrier: Arc<dyn Carrier>,
        outbound: OutboundMessage,
        outcomes: &mpsc::Sender<PendingOutcome>,
    ) {
        let timeout = Duration::from_millis(self.settings.submit_timeout_ms);
        let name = carrier.name().to_string();
        let started = std::time::Instant::now();
        let call = tracing::info_span!(
            "carrier submit",
            otel.name = "carrier submit",
            otel.kind = "client",
            carrier = %name,
        );
        let answer = tracing::Instrument::instrument(
            tokio::time::timeout(timeout, carrier.submit(outbound)),
            call,
        )
        .await;
        let kind = match &answer {
            Ok(Ok(_)) => "accepted",
            Ok(Err(error)) if !error.is_maybe_sent() => "refused",
            _ => "maybe_sent",
        };
        crate::metrics::metrics().submitted(&name, kind, started.elapsed());
        let outcome = match answer {
            Ok(Ok(accepted)) => {
                tracing::debug!(message = %message_id, carrier = %name, "submitted");
                SendOutcome::Accepted {
                    carrier_message_id: accepted.carrier_message_id,
                }
            }
            Ok(Err(error)) if error.is_maybe_sent() => {
                tracing::warn!(message = %message_id, carrier = %name, %error, "no answer after the message went out; not resent");
                SendOutcome::MaybeSent {
                    reason: format!("{name}: {error}"),
                }
            }
            Ok(Err(error)) if error.kind() == verify_carrier::ErrorKind::RateLimited => {
                tracing::debug!(message = %message_id, carrier = %name, %error, "carrier throttled message");
                SendOutcome::Throttled {
                    reason: format!("{name}: {error}"),
                    retry_after_ms: THROTTLED_RETRY_MS,
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(message = %message_id, carrier = %name, %error, "carrier refused message");
                SendOutcome::Refused {
                    reason: format!("{name}: {error}"),
                    temporary: error.is_temporary(),
                }
            }
            Err(_) => {
                tracing::warn!(message = %message_id, carrier = %name, timeout_ms = timeout.as_millis() as u64, "carrier did not answer in time; not resent");
                SendOutcome::MaybeSent {
                    reason: format!("{name}: no answer within {} ms", timeout.as_millis()),
                }
            }
        };
        let (recorded, done) = oneshot::channel();
        let pending = PendingOutcome {
            message_id: message_id.to_string(),
            attempt: attempt.clone(),
            outcome,
            recorded,
        };
        if outcomes.send(pending).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Records the outcomes of submissions as they end: those that ended together in one
    /// transaction. If that fails, each is recorded alone (one bad row does not hold up the
    /// others), retrying.
    async fn record_outcomes(self: Arc<Self>, mut queue: mpsc::Receiver<PendingOutcome>) {
        // Batches hold different messages, so two may be written at once (on PostgreSQL each
        // is its own transaction; on SQLite they queue for the one writer anyway).
        let writers = Arc::new(Semaphore::new(OUTCOME_WRITERS));
        let mut writing = JoinSet::new();
        let mut batch = Vec::with_capacity(OUTCOME_BATCH);
        loop {
            // A writer first, then the batch: outcomes that end while both writers are busy
            // gather in the queue and go together, instead of one waiting alone for a writer
            // (with this and four Verify groups at once, PostgreSQL ran 2.4 statements and
            // 0.34 transactions per verification, against about 4 and 0.46 before).
            let permit = Arc::clone(&writers)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            if queue.recv_many(&mut batch, OUTCOME_BATCH).await == 0 {
                break;
            }
            let this = Arc::clone(&self);
            let taken = std::mem::replace(&mut batch, Vec::with_capacity(OUTCOME_BATCH));
            writing.spawn(async move {
                this.record_outcome_batch(taken).await;
                drop(permit);
            });
            while writing.try_join_next().is_some() {}
        }
        while writing.join_next().await.is_some() {}
    }

    /// Records one batch of outcomes in one transaction; if that fails, each alone, retrying.
    async fn record_outcome_batch(&self, batch: Vec<PendingOutcome>) {
        let outcomes: Vec<(String, Attempt, SendOutcome)> = batch
            .iter()
            .map(|p| (p.message_id.clone(), p.attempt.clone(), p.outcome.clone()))
            .collect();
        if let Err(error) = delivery::record_outcomes(&self.store, &outcomes, now_ms()).await {
            tracing::warn!(%error, outcomes = outcomes.len(), "recording send outcomes together failed; recording each alone");
            for (message_id, attempt, outcome) in &outcomes {
                let recorded = self
                    .retrying(|| {
                        delivery::record_outcome(
                            &self.store,
                            message_id,
                            attempt,
                            outcome.clone(),
                            now_ms(),
                        )
                    })
                    .await;
                if let Err(error) = recorded {
                    tracing::error!(message = %message_id, %error, "recording the send outcome failed; the sweep settles the message");
                }
            }
        }
        for pending in batch {
            let _ = pending.recorded.send(());
        }
    }

    /// Runs a store write until it succeeds, backing off, for at most about six seconds: the
    /// outcome of a submission must not be lost to a passing database error.
    async fn retrying<'a, T, F, Fut>(&'a self, mut write: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + 'a,
    {
        let mut delay = Duration::from_millis(100);
        for _ in 0..6 {
            match write().await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    tracing::warn!(%error, "store write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        write().await
    }
}
