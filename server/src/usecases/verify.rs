//! Verify: start a verification of a number (or resend the code of its pending one) and queue
//! the message that carries the code, answering once both are durably stored.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use tokio::sync::oneshot;

use verify_carrier::{Channel, mask_number};
use verify_policy::abuse::{AbuseDefense, BucketKey, RateLimits, RawContext, RequestContext};
use verify_policy::messages::{check_app_hash, check_domain};
use verify_policy::rules::Decision;
use verify_policy::{ChannelRefusal, Classification, Workflow, choose_channel, classify};

use super::abuse::{
    GuardView, RecentCodes, guard_group, hold_sent, rate_limits_of, recent_codes_of, store_blocks,
};
use super::pending_counts::HeldCounts;
use super::{
    Caller, UseCaseError, UseCases, VerificationView, drop_unsent_messages, input, new_id,
};
use crate::clock::now_ms;
use crate::convert::StoredClassification;
use crate::decide::FirstStep;
use crate::domain::{
    Event, MessageSpec, OutboxMessage, Service, StoredCode, Subject, SubjectState, Verification,
    VerificationSpec, VerificationStatus, WorkflowState,
};
use crate::notify::field_of;
use crate::services::ServiceDirectory;
use crate::store::{
    EventLog, Outbox, ServiceKey, SqlStore, StoreError, VerificationRepository, WriteTx,
};

/// A Verify request as the transport parsed it.
#[derive(Debug, Clone, Default)]
pub struct VerifyInput {
    /// The number, E.164 or national with `region_hint`.
    pub to: String,
    /// The channel asked for; `None` lets verifyd choose.
    pub channel: Option<Channel>,
    /// Locale of the message; empty for the server default.
    pub locale: String,
    /// Digits in the code; 0 for the server default.
    pub code_length: u32,
    /// The client's idempotency key; empty for none.
    pub idempotency_key: String,
    /// Region for a national number; empty for none.
    pub region_hint: String,
    /// A workflow instead of the country's; empty for the configured one.
    pub workflow: String,
    /// The configured program the code is sent for; empty for none.
    pub program_id: String,
    /// What the client says about the person asking.
    pub context: RawContext,
    /// The service asked for; empty for the caller's own.
    pub service_id: String,
    /// Android SMS Retriever app hash; empty for the service's default.
    pub app_hash: String,
    /// Host of the domain-bound code line; empty for the service's default.
    pub domain: String,
}

/// What Verify did.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    /// The verification, new or the pending one for the number.
    pub view: VerificationView,
    /// This call resent the code of the pending verification.
    pub resent: bool,
    /// The idempotency key matched an earlier call; nothing was queued.
    pub replayed: bool,
    /// Why this message goes where it goes.
    pub decision: String,
}

/// A validated Verify: what to store, with the decision behind it.
pub(super) struct Plan {
    /// The service the verification belongs to, and the limits it takes from it.
    service_id: String,
    max_checks: u32,
    max_sends: u32,
    code_lifetime: std::time::Duration,
    /// Its service asks for the pumping guard at level strict.
    strict_abuse: bool,
    /// The autofill lines of its SMS.
    app_hash: String,
    autofill_domain: String,
    classification: Classification,
    e164: String,
    /// The prefix abuse defense counts the number under.
    number_prefix: String,
    first: FirstStep,
    carrier: String,
    fallback_carriers: Vec<String>,
    locale: String,
    code_length: u32,
    idempotency_key: Option<ServiceKey>,
    program_id: String,
    explanation: String,
    /// What the client says about the person asking (for rate limits).
    context: RequestContext,
    /// The request's trace (its messages continue it), taken while the request's span is
    /// current: the write that queues them may run for a group of requests at once.
    trace_parent: Option<String>,
}

impl Plan {
    /// The rate-limit buckets this request counts in.
    pub(super) fn buckets(&self, limits: &RateLimits) -> Vec<BucketKey> {
        limits.buckets(
            &self.e164,
            self.classification.region_code.as_deref(),
            &self.context,
        )
    }

    /// Whether this is an idempotent retry of an earlier call (its key is among
    /// `used_keys`): it sends nothing, so no limit or guard applies to it.
    pub(super) fn is_replay(&self, used_keys: &HashSet<ServiceKey>) -> bool {
        self.idempotency_key
            .as_ref()
            .is_some_and(|key| used_keys.contains(key))
    }

    /// The number, E.164.
    pub(super) fn e164(&self) -> &str {
        &self.e164
    }

    /// The prefix abuse defense counts the number under.
    pub(super) fn number_prefix(&self) -> &str {
        &self.number_prefix
    }

    /// The number's country, if it has one.
    pub(super) fn region(&self) -> Option<&str> {
        self.classification.region_code.as_deref()
    }

    /// Whether its service asks for the pumping guard at level strict.
    pub(super) fn strict_abuse(&self) -> bool {
        self.strict_abuse
    }

    /// The number's line type, as its range says.
    pub(super) fn line_type(&self) -> Option<verify_policy::LineType> {
        self.classification.line_type
    }
}

/// How the transaction ended.
pub(super) enum Stored {
    /// A new verification, with its one message.
    Created(Verification, Box<OutboxMessage>),
    Resent(Verification),
    Replayed(Verification),
}

/// Attempts at the transaction when another Verify for the same number wins a race.
const CONTENDED_ATTEMPTS: usize = 4;

/// Verify calls that arrive together are stored by one write (group commit within the
/// write, on top of the store's): the new verifications of numbers without a pending one go
/// in with one statement per table, and only resends, replays and expiries run one by one,
/// each failing alone. On PostgreSQL a group is one transaction instead of one per call.
pub(super) struct VerifyQueue {
    waiting: std::sync::Mutex<Vec<(Work, Answer)>>,
    /// Groups being written at once, at most: one runs while the one before waits for its
    /// commit to be durable.
    slots: Arc<tokio::sync::Semaphore>,
    store: Arc<SqlStore>,
    /// The services, for the longest code lifetime the limits must read back over.
    services: Arc<ServiceDirectory>,
    /// Rate limits, blocks and the pumping guard every Verify that would send a code meets.
    defense: Arc<AbuseDefense>,
    /// The blocks and country counts the guard judges by.
    view: Arc<GuardView>,
}

/// One request's part of a group: what to store (the plan, the code, the classification
/// encoded).
pub(super) type Work = (Arc<Plan>, StoredCode, String);

/// Where a request's result goes.
type Answer = oneshot::Sender<Result<Stored, UseCaseError>>;

/// Groups written at once, at most. On PostgreSQL each group is a transaction of its own, and
/// with two the groups waited for each other's commits: four, together with the dispatcher's
/// outcomes batched once a writer is free, ran Verify with its sending ~20% faster there
/// (2,600-2,800/s against 1,900-2,400/s, alternating runs); eight, no faster than four. On
/// SQLite, where the groups queue for the one writer anyway, it makes no difference.
const GROUPS_IN_FLIGHT: usize = 4;
/// Requests in one group, at most.
const GROUP_LIMIT: usize = 256;

impl VerifyQueue {
    /// A queue storing through `store`.
    pub(super) fn new(
        store: Arc<SqlStore>,
        services: Arc<ServiceDirectory>,
        defense: Arc<AbuseDefense>,
        view: Arc<GuardView>,
    ) -> Arc<VerifyQueue> {
        Arc::new(VerifyQueue {
            waiting: Default::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(GROUPS_IN_FLIGHT)),
            store,
            services,
            defense,
            view,
        })
    }

    /// Stores one request with the group it joins; answers once that group is committed.
    async fn store(self: &Arc<Self>, work: Work) -> Result<Stored, UseCaseError> {
        let (answer, answered) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((work, answer));
        Arc::clone(self).write_next_group();
        answered
            .await
            .unwrap_or_else(|_| Err(UseCaseError::internal("storage", "the write was dropped")))
    }

    /// Starts writing the requests waiting, when fewer than [`GROUPS_IN_FLIGHT`] groups are
    /// being written; a group that ends starts the next, so no request is left waiting.
    /// Every holder of a slot looks at the queue again after giving the slot back, so a
    /// request queued while the slots were taken is always picked up.
    fn write_next_group(self: Arc<Self>) {
        loop {
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                return;
            };
            let group: Vec<_> = {
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                let count = waiting.len().min(GROUP_LIMIT);
                waiting.drain(..count).collect()
            };
            if !group.is_empty() {
                tokio::spawn(async move {
                    self.write_group(group).await;
                    drop(slot);
                    self.write_next_group();
                });
                return;
            }
            drop(slot);
            if self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
            {
                return;
            }
        }
    }

    async fn write_group(&self, group: Vec<(Work, Answer)>) {
        // A caller that gave up (its deadline passed) is not stored.
        let (work, answers): (Vec<Work>, Vec<_>) = group
            .into_iter()
            .filter(|(_, answer)| !answer.is_closed())
            .unzip();
        if work.is_empty() {
            return;
        }
        let lifetime = self.services.longest_code_lifetime();
        let defense = Arc::clone(&self.defense);
        let view = Arc::clone(&self.view);
        let written = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    Ok::<_, UseCaseError>(store_group_in(tx, work, lifetime, &defense, &view).await)
                })
            })
            .await;
        match written {
            Ok((results, held)) => {
                held.keep();
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
            Err(error) => {
                let reason = error.to_string();
                for answer in answers {
                    let _ = answer.send(Err(UseCaseError::internal("storage", &reason)));
                }
            }
        }
    }
}

/// The write of a group (see [`VerifyQueue`]): a result for each request, in order, and the
/// rate-limit counts of those that sent a code, to keep once the write commits.
async fn store_group_in(
    tx: &mut WriteTx,
    work: Vec<Work>,
    lifetime: std::time::Duration,
    defense: &AbuseDefense,
    view: &GuardView,
) -> (Vec<Result<Stored, UseCaseError>>, HeldCounts) {
    let mut results: Vec<Option<Result<Stored, UseCaseError>>> =
        work.iter().map(|_| None).collect();
    let now = now_ms();
    let used_keys = match keys_in_use(tx, &work).await {
        Ok(keys) => keys,
        Err(error) => return (failed_group(&work, &error), HeldCounts::none()),
    };
    // Rate limits: each request that could send a code is counted against the counts stored
    // and the requests before it in the group; one over a limit is refused, alone. An
    // idempotent retry of an earlier request sends nothing and is not limited.
    let recent = match recent_codes_of(tx, &work, &used_keys, defense, lifetime, now).await {
        Ok(recent) => recent,
        Err(error) => return (failed_group(&work, &error), HeldCounts::none()),
    };
    let limited = rate_limits_of(
        tx,
        &work,
        &used_keys,
        &defense.limits,
        &recent,
        &view.pending,
        now,
    )
    .await;
    let mut limited = match limited {
        Ok(limited) => limited,
        Err(error) => return (failed_group(&work, &error), HeldCounts::none()),
    };
    let refused: HashSet<usize> = limited.refusals.iter().map(|(index, _)| *index).collect();
    for (index, refusal) in limited.refusals {
        results[index] = Some(Err(refusal));
    }
    // Blocks and the pumping guard, for the requests the limits allowed.
    let guarded = guard_group(&work, &recent, &refused, &used_keys, defense, view, now);
    for (index, refusal) in guarded.refusals {
        results[index] = Some(Err(refusal));
    }
    for (counted, pumping) in limited.counted_in.iter_mut().zip(guarded.counted_in) {
        counted.extend(pumping);
    }
    store_blocks(tx, guarded.new_blocks, now).await;
    let fresh = new_numbers_of(&work, &recent, &used_keys, &results);
    if !fresh.is_empty() {
        let mut events = Vec::with_capacity(2 * fresh.len());
        let mut verifications = Vec::with_capacity(fresh.len());
        let mut messages = Vec::with_capacity(fresh.len());
        for &index in &fresh {
            let (plan, code, classification_json) = &work[index];
            let (verification, message, recorded) =
                start_verification(plan, code, classification_json.clone(), now);
            verifications.push(verification);
            messages.push(message);
            events.extend(recorded);
        }
        // Moved into the write and handed back when it kept them (on the writer's thread on
        // SQLite: no copies).
        let inserted = tx
            .isolated(move |tx| {
                Box::pin(async move {
                    tx.insert_verifications(&verifications).await?;
                    tx.insert_messages(&messages).await?;
                    tx.record(events);
                    for v in &verifications {
                        if let Some(key) = &v.idempotency_key {
                            let key = ServiceKey {
                                service_id: v.service_id.clone(),
                                key: key.clone(),
                            };
                            tx.remember_verification_key(&key, &v.id, &v.to_e164, now)
                                .await?;
                        }
                    }
                    Ok::<_, StoreError>((verifications, messages))
                })
            })
            .await;
        match inserted {
            Ok((verifications, messages)) => {
                for ((index, verification), message) in
                    fresh.into_iter().zip(verifications).zip(messages)
                {
                    results[index] = Some(Ok(Stored::Created(verification, Box::new(message))));
                }
            }
            Err(error) => {
                // Their events went with the savepoint; each goes one by one below.
                tracing::debug!(%error, "a group of new verifications goes in one by one");
            }
        }
    }
    // One by one in the order of their numbers, the rows they lock: two groups written at
    // once on PostgreSQL then never wait for each other in a circle.
    let mut one_by_one: Vec<(usize, Work)> = work
        .into_iter()
        .enumerate()
        .filter(|(index, _)| results[*index].is_none())
        .collect();
    one_by_one.sort_by(|(_, (a, ..)), (_, (b, ..))| a.e164.cmp(&b.e164));
    for (index, (plan, code, classification_json)) in one_by_one {
        let result = tx
            .isolated(move |tx| {
                Box::pin(async move { store_in(tx, &plan, &code, classification_json).await })
            })
            .await;
        results[index] = Some(result);
    }
    let results: Vec<_> = results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| Err(UseCaseError::internal("storage", "not stored")))
        })
        .collect();
    let held = hold_sent(&view.pending, &results, limited.counted_in);
    (results, held)
}

/// The requests of a group that start a verification of a number with none pending, each
/// number and idempotency key once (the others go one by one: a resend, a replay, an expiry,
/// or a second call for the same number after the first).
fn new_numbers_of(
    work: &[Work],
    recent: &RecentCodes,
    used_keys: &HashSet<ServiceKey>,
    results: &[Option<Result<Stored, UseCaseError>>],
) -> Vec<usize> {
    let pending = recent.pending_numbers();
    let mut numbers_seen = HashSet::new();
    let mut keys_seen = HashSet::new();
    work.iter()
        .enumerate()
        .filter(|(index, (plan, ..))| {
            results[*index].is_none()
                && !pending.contains(&(plan.service_id.as_str(), plan.e164.as_str()))
                && numbers_seen.insert((plan.service_id.as_str(), plan.e164.as_str()))
                && plan
                    .idempotency_key
                    .as_ref()
                    .is_none_or(|key| !used_keys.contains(key) && keys_seen.insert(key.clone()))
        })
        .map(|(index, _)| index)
        .collect()
}

/// The idempotency keys of a group's requests that earlier calls already used.
async fn keys_in_use(tx: &mut WriteTx, work: &[Work]) -> Result<HashSet<ServiceKey>, StoreError> {
    let keys: Vec<ServiceKey> = work
        .iter()
        .filter_map(|(plan, ..)| plan.idempotency_key.clone())
        .collect();
    Ok(tx
        .verification_keys_in_use(&keys)
        .await?
        .into_iter()
        .collect())
}

/// Every request of a group failed by a storage error.
fn failed_group(work: &[Work], error: &StoreError) -> Vec<Result<Stored, UseCaseError>> {
    let reason = error.to_string();
    work.iter()
        .map(|_| Err(UseCaseError::internal("storage", &reason)))
        .collect()
}

impl UseCases {
    /// Starts a verification, or resends the pending one's code, or replays an idempotent
    /// retry, in the service the request names (or the caller's own).
    pub async fn verify(
        &self,
        caller: &Caller,
        request: VerifyInput,
    ) -> Result<VerifyOutcome, UseCaseError> {
        let service = self.service_for(caller, &request.service_id).await?;
        let plan = Arc::new(self.plan_verification(&request, &service)?);
        let code = self
            .codes
            .issue(plan.code_length)
            .map_err(|e| UseCaseError::internal("code generation", e))?;
        // Encoded here, not in the write, which runs one at a time on SQLite.
        let classification_json = serde_json::to_string(
            &StoredClassification::from_classification(&plan.classification),
        )
        .map_err(|e| UseCaseError::internal("classification encoding", e))?;
        let mut attempt = 0;
        let stored = loop {
            attempt += 1;
            let work = (Arc::clone(&plan), code.clone(), classification_json.clone());
            match self.verify_queue.store(work).await {
                Err(UseCaseError::Contended(_)) if attempt < CONTENDED_ATTEMPTS => {
                    tracing::debug!(
                        attempt,
                        "verification raced another for the same number; retrying"
                    );
                }
                other => break other?,
            }
        };
        let (verification, created_message, resent, replayed) = match stored {
            Stored::Created(v, message) => (v, Some(*message), false, false),
            Stored::Resent(v) => (v, None, true, false),
            Stored::Replayed(v) => (v, None, false, true),
        };
        tracing::info!(
            verification = %verification.id,
            to = %mask_number(&verification.to_e164),
            channel = %verification.channel,
            carrier = %plan.carrier,
            resent,
            replayed,
            "verification queued"
        );
        let decision = if replayed {
            verification.decision.clone()
        } else {
            plan.explanation.clone()
        };
        let view = match created_message {
            // A new verification has exactly the message just stored: no need to read it back.
            Some(message) => VerificationView {
                verification,
                messages: vec![message],
            },
            None => self.view_of(verification).await?,
        };
        Ok(VerifyOutcome {
            view,
            resent,
            replayed,
            decision,
        })
    }

    /// Validates the request and decides the channel, workflow and route, and whether the
    /// country rules allow a code now.
    fn plan_verification(
        &self,
        request: &VerifyInput,
        service: &Service,
    ) -> Result<Plan, UseCaseError> {
        input::validate_number_input("to", &request.to)?;
        let context = input::request_context(&request.context)?;
        let code_length = match request.code_length {
            0 => service.code_length,
            n @ 4..=10 => n,
            n => {
                return Err(UseCaseError::invalid(
                    "code_length",
                    format!("must be between 4 and 10, got {n}"),
                ));
            }
        };
        let locale = if request.locale.is_empty() {
            service.default_locale.clone()
        } else {
            input::validate_locale(&request.locale)?;
            request.locale.clone()
        };
        let idempotency_key =
            input::idempotency_key(&request.idempotency_key)?.map(|key| ServiceKey {
                service_id: service.id.clone(),
                key,
            });
        let hint = input::region_hint(&request.region_hint)?;
        let program_id = request.program_id.trim().to_string();
        self.check_program(&program_id)?;
        let workflow = match request.workflow.trim() {
            "" => service.workflow.clone(),
            text => Some(
                Workflow::parse(text)
                    .map_err(|e| UseCaseError::invalid("workflow", e.to_string()))?,
            ),
        };
        let app_hash = match request.app_hash.trim() {
            "" => service.app_hash.clone(),
            hash => {
                check_app_hash(hash).map_err(|reason| UseCaseError::invalid("app_hash", reason))?;
                hash.to_string()
            }
        };
        let autofill_domain = match request.domain.trim() {
            "" => service.domain.clone(),
            domain => {
                check_domain(domain).map_err(|reason| UseCaseError::invalid("domain", reason))?
            }
        };
        let requested = request.channel;
        if let Some(channel) = requested
            && !service.allows(channel)
        {
            return Err(UseCaseError::invalid(
                "channel",
                format!(
                    "service `{}` allows only {}",
                    service.id,
                    service.channel_names()
                ),
            ));
        }
        let classification = classify(&request.to, hint);
        let channel_choice =
            choose_channel(requested, &classification).map_err(|refusal| match refusal {
                ChannelRefusal::InvalidNumber(reason) => {
                    UseCaseError::invalid("to", format!("invalid phone number: {reason}"))
                }
                ChannelRefusal::Unreachable(reason) => {
                    let field = if requested.is_some() { "channel" } else { "to" };
                    UseCaseError::precondition(field, reason)
                }
            })?;
        let region = classification.region_code.clone();
        // Abuse defense that needs no counts: geo permissions, and at `strict` the number
        // types pumping favours.
        let monitored = self.geo_permission(
            classification.e164.as_deref().unwrap_or_default(),
            region.as_deref(),
        )?;
        if let Some(reason) = self
            .defense
            .pumping_for(service.strict_abuse)
            .refuses_line_type(classification.line_type)
        {
            return Err(UseCaseError::precondition("to", reason));
        }
        // The channel check above refuses what no workflow may send (SMS to a landline,
        // premium-rate numbers); the strategy then picks the step, channel and route.
        let first = self
            .decider
            .start(&classification, requested, workflow.as_ref(), service)
            .map_err(|reason| UseCaseError::precondition("channel", reason))?;
        let mut carriers = first.carriers.clone().into_iter();
        let carrier = carriers.next().ok_or_else(|| {
            UseCaseError::precondition(
                "channel",
                format!(
                    "no configured route carries {} to {}",
                    first.channel,
                    region.as_deref().unwrap_or("this number")
                ),
            )
        })?;
        // Country rules for a code (category OTP): blocked countries, channels, and with a
        // program its registrations. A code is never held for later: a rule that would defer
        // it refuses it.
        let rules = self.rules.evaluate_code(
            region.as_deref().unwrap_or_default(),
            &classification.time_zones,
            first.channel,
            &program_id,
            now_ms(),
        );
        let field = rules.concern().map(field_of);
        match (&rules, field) {
            (Decision::Reject { .. }, Some(field)) => {
                return Err(UseCaseError::precondition(field, rules.explain()));
            }
            (Decision::Defer { .. }, Some(field)) => {
                return Err(UseCaseError::precondition(
                    field,
                    format!("a code cannot wait: {}", rules.explain()),
                ));
            }
            _ => {}
        }
        let mut explanation = if first.channel == channel_choice.channel {
            format!(
                "{}; {}; {}",
                rules.explain(),
                channel_choice.reason,
                first.explanation
            )
        } else {
            format!("{}; {}", rules.explain(), first.explanation)
        };
        if let Some(monitored) = monitored {
            explanation = format!("{monitored}; {explanation}");
        }
        let e164 = classification.e164.clone().unwrap_or_default();
        Ok(Plan {
            service_id: service.id.clone(),
            max_checks: service.max_checks,
            max_sends: service.max_sends,
            code_lifetime: service.code_lifetime,
            strict_abuse: service.strict_abuse,
            app_hash,
            autofill_domain,
            number_prefix: self
                .defense
                .limits
                .prefix_of(&e164, classification.region_code.as_deref()),
            e164,
            classification,
            fallback_carriers: carriers.collect(),
            carrier,
            first,
            locale,
            code_length,
            idempotency_key,
            program_id,
            explanation,
            context,
            trace_parent: crate::telemetry::current_traceparent(),
        })
    }

    /// A named program must be configured; empty names none.
    pub(super) fn check_program(&self, program_id: &str) -> Result<(), UseCaseError> {
        if program_id.is_empty() || self.rules.has_program(program_id) {
            return Ok(());
        }
        Err(UseCaseError::invalid(
            "program_id",
            format!(
                "no program `{program_id}` is configured (configured: {})",
                self.rules.program_ids().join(", ")
            ),
        ))
    }
}

/// One request's part of a write: replay an idempotent retry, or resend the pending
/// verification's code, or (expiring a pending one past its lifetime) create a new
/// verification.
async fn store_in(
    tx: &mut WriteTx,
    plan: &Plan,
    code: &StoredCode,
    classification_json: String,
) -> Result<Stored, UseCaseError> {
    let now = now_ms();
    if let Some(key) = &plan.idempotency_key
        && let Some((earlier_id, earlier_to)) = tx.verification_for_key(key).await?
    {
        if earlier_to != plan.e164 {
            return Err(UseCaseError::precondition(
                "idempotency_key",
                format!("already used for verification {earlier_id} of another number"),
            ));
        }
        let earlier = tx.lock_verification(&earlier_id).await?.ok_or_else(|| {
            UseCaseError::internal(
                "storage",
                format!("idempotency key names missing {earlier_id}"),
            )
        })?;
        tx.discard();
        return Ok(Stored::Replayed(earlier));
    }
    if let Some(mut pending) = tx
        .lock_pending_verification_of(&plan.service_id, &plan.e164)
        .await?
    {
        if pending.is_live(now) {
            pending.resend(plan.first.channel, now)?;
            let (message, queued) = OutboxMessage::queue(
                message_spec(plan, pending.subject(), pending.workflow.step),
                &format!("resend of the same code; {}", plan.explanation),
                SubjectState::Verification(VerificationStatus::Pending),
                now,
            );
            tx.save_verification(&pending).await?;
            tx.insert_message(&message).await?;
            tx.record([queued]);
            remember_key(tx, plan, &pending.id, now).await?;
            return Ok(Stored::Resent(pending));
        }
        if let Some(expired) = pending.expire_if_due(now) {
            tx.save_verification(&pending).await?;
            tx.record([expired]);
            drop_unsent_messages(tx, &pending, now).await?;
        }
    }

    let (verification, message, events) = start_verification(plan, code, classification_json, now);
    tx.insert_verification(&verification).await?;
    tx.insert_message(&message).await?;
    tx.record(events);
    remember_key(tx, plan, &verification.id, now).await?;
    Ok(Stored::Created(verification, Box::new(message)))
}

/// A new verification of `plan` and its first message, with their events.
fn start_verification(
    plan: &Plan,
    code: &StoredCode,
    classification_json: String,
    now: i64,
) -> (Verification, OutboxMessage, [Event; 2]) {
    let first = &plan.first;
    let (verification, created) = Verification::start(
        VerificationSpec {
            id: new_id("vf"),
            service_id: plan.service_id.clone(),
            to_e164: plan.e164.clone(),
            number_prefix: plan.number_prefix.clone(),
            region_code: plan.classification.region_code.clone(),
            channel: first.channel,
            locale: plan.locale.clone(),
            code_length: plan.code_length,
            code: code.clone(),
            max_checks: plan.max_checks,
            max_sends: plan.max_sends,
            idempotency_key: plan.idempotency_key.as_ref().map(|key| key.key.clone()),
            classification_json,
            ttl_ms: plan.code_lifetime.as_millis() as i64,
            workflow: WorkflowState {
                strategy: first.strategy.to_string(),
                workflow: first.workflow.to_string(),
                step: first.step as u32,
                step_deadline_ms: first.wait.map(|wait| now + wait.as_millis() as i64),
                step_failure: String::new(),
            },
            decision: plan.explanation.clone(),
            program_id: plan.program_id.clone(),
            app_hash: plan.app_hash.clone(),
            autofill_domain: plan.autofill_domain.clone(),
        },
        now,
    );
    let (message, queued) = OutboxMessage::queue(
        message_spec(plan, verification.subject(), verification.workflow.step),
        &plan.explanation,
        SubjectState::Verification(verification.status),
        now,
    );
    (verification, message, [created, queued])
}

/// The first message of a verification (or a resend), as `plan` routes it.
fn message_spec(plan: &Plan, subject: Subject, step: u32) -> MessageSpec {
    MessageSpec {
        id: new_id("msg"),
        service_id: plan.service_id.clone(),
        subject,
        channel: plan.first.channel,
        carrier: plan.carrier.clone(),
        fallback_carriers: plan.fallback_carriers.clone(),
        step,
        trace_parent: plan.trace_parent.clone(),
    }
}

async fn remember_key(
    tx: &mut WriteTx,
    plan: &Plan,
    verification_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    match &plan.idempotency_key {
        Some(key) => {
            tx.remember_verification_key(key, verification_id, &plan.e164, now)
                .await
        }
        None => Ok(()),
    }
}
