//! The `verify.v1.VerifyService` handlers: validate at the boundary, decide with the policy
//! crate, persist through the store, answer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use verify_carrier::Channel;
use verify_policy::{ChannelRefusal, Workflow, choose_channel, classify, parse_region_hint};

use crate::codes::CodeBook;
use crate::config::CodeSettings;
use crate::convert::{self, StoredClassification};
use crate::decide::Decider;
use crate::errors::{failed_precondition, internal, invalid_argument};
use crate::notify::{NotifyPolicy, field_of_rule};
use crate::proto;
use crate::proto::verify_service_server::VerifyService;
use crate::store::{
    CheckTarget, NOTIFICATION_ID_PREFIX, NewVerification, NotificationRecord, NotificationStatus,
    Store, StoreError, VerifyOutcome,
};
use verify_policy::rules::{Category, Decision};

/// Longest verification id, idempotency key or number text accepted.
const MAX_ID_LENGTH: usize = 128;
const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 255;
const MAX_NUMBER_INPUT_LENGTH: usize = 250;
/// Longest Notify body, in characters (ten concatenated SMS parts).
const MAX_NOTIFY_BODY_CHARS: usize = 1600;
/// Events read from the store per round of a watch.
const WATCH_BATCH: u32 = 500;
/// How often a watcher looks for events other processes recorded.
const WATCH_POLL: Duration = Duration::from_millis(500);

/// The service state shared by all requests.
pub struct VerifyApi {
    store: Arc<dyn Store>,
    codes: CodeBook,
    settings: CodeSettings,
    decider: Arc<Decider>,
    notify: Arc<NotifyPolicy>,
    shutdown: watch::Receiver<bool>,
}

impl VerifyApi {
    /// The service over its parts; `shutdown` turning true ends open event streams.
    pub fn new(
        store: Arc<dyn Store>,
        codes: CodeBook,
        settings: CodeSettings,
        decider: Arc<Decider>,
        notify: Arc<NotifyPolicy>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        VerifyApi {
            store,
            codes,
            settings,
            decider,
            notify,
            shutdown,
        }
    }

    /// A named program must be configured; empty names none.
    fn check_program(&self, program_id: &str) -> Result<(), Status> {
        if program_id.is_empty() || self.notify.has_program(program_id) {
            return Ok(());
        }
        Err(invalid_argument(
            "program_id",
            format!(
                "no program `{program_id}` is configured (configured: {})",
                self.notify.program_ids().join(", ")
            ),
        ))
    }

    async fn verification_response(&self, id: &str) -> Result<proto::Verification, Status> {
        let Some(record) = self.store.verification(id).await? else {
            return Err(StoreError::NotFound {
                field: "verification_id",
                value: id.to_string(),
            }
            .into());
        };
        let messages = self.store.messages(id).await?;
        Ok(convert::verification(&record, &messages))
    }
}

use crate::clock::now_ms;

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A verification id: present and of sane length (unknown ones are NOT_FOUND later).
fn validate_id(field: &str, id: &str) -> Result<(), Status> {
    if id.trim().is_empty() {
        return Err(invalid_argument(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LENGTH {
        return Err(invalid_argument(
            field,
            format!("longer than {MAX_ID_LENGTH} characters"),
        ));
    }
    Ok(())
}

fn validate_number_input(field: &str, number: &str) -> Result<(), Status> {
    if number.trim().is_empty() {
        return Err(invalid_argument(
            field,
            "must not be empty; give the number in E.164, e.g. +14155550123",
        ));
    }
    if number.len() > MAX_NUMBER_INPUT_LENGTH {
        return Err(invalid_argument(
            field,
            format!("longer than {MAX_NUMBER_INPUT_LENGTH} characters"),
        ));
    }
    Ok(())
}

/// A client's idempotency key: empty is none, and it has a length limit.
fn idempotency_key(key: &str) -> Result<Option<String>, Status> {
    match key {
        "" => Ok(None),
        key if key.len() > MAX_IDEMPOTENCY_KEY_LENGTH => Err(invalid_argument(
            "idempotency_key",
            format!("longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters"),
        )),
        key => Ok(Some(key.to_string())),
    }
}

fn validate_locale(locale: &str) -> Result<(), Status> {
    let well_formed = locale.len() <= 35
        && locale.split(['-', '_']).all(|part| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if well_formed {
        Ok(())
    } else {
        Err(invalid_argument(
            "locale",
            format!("`{locale}` is not a language tag such as en, es-MX or pt-BR"),
        ))
    }
}

fn requested_channel(value: i32) -> Result<Option<Channel>, Status> {
    match proto::Channel::try_from(value) {
        Ok(proto::Channel::Unspecified) => Ok(None),
        Ok(proto::Channel::Sms) => Ok(Some(Channel::Sms)),
        Ok(proto::Channel::Voice) => Ok(Some(Channel::Voice)),
        Err(_) => Err(invalid_argument(
            "channel",
            format!(
                "unknown value {value}; use CHANNEL_SMS, CHANNEL_VOICE, or leave it unset to let verifyd choose"
            ),
        )),
    }
}

fn region_hint(hint: &str) -> Result<Option<verify_policy::TerritoryId>, Status> {
    parse_region_hint(hint).map_err(|e| invalid_argument("region_hint", e.to_string()))
}

fn validate_code(code: &str) -> Result<(), Status> {
    if code.is_empty() {
        return Err(invalid_argument("code", "must not be empty"));
    }
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_argument("code", "must contain digits only"));
    }
    if !(4..=10).contains(&code.len()) {
        return Err(invalid_argument(
            "code",
            format!("must be 4 to 10 digits, got {}", code.len()),
        ));
    }
    Ok(())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEventsResponse, Status>> + Send>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<proto::ClassifyBatchResponse, Status>> + Send>>;

/// Most numbers in one ClassifyBatch chunk.
const MAX_BATCH_CHUNK: usize = 10_000;
/// Chunks classified at once per stream (in order on the way out).
const BATCH_CHUNKS_IN_FLIGHT: usize = 4;

/// Classifies one chunk on a blocking thread (it is pure CPU work).
async fn classify_chunk(
    index: u64,
    chunk: proto::ClassifyBatchRequest,
) -> Result<proto::ClassifyBatchResponse, Status> {
    if chunk.numbers.len() > MAX_BATCH_CHUNK {
        return Err(invalid_argument(
            "numbers",
            format!(
                "chunk {index} has {} numbers; send at most {MAX_BATCH_CHUNK} per chunk",
                chunk.numbers.len()
            ),
        ));
    }
    let hint = region_hint(&chunk.region_hint)?;
    tokio::task::spawn_blocking(move || proto::ClassifyBatchResponse {
        classifications: chunk
            .numbers
            .iter()
            .map(|number| convert::classification(&classify(number, hint)))
            .collect(),
        chunk_index: index,
    })
    .await
    .map_err(|e| internal("batch classification", e))
}

#[tonic::async_trait]
impl VerifyService for VerifyApi {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let request = request.into_inner();
        validate_number_input("to", &request.to)?;
        let requested = requested_channel(request.channel)?;
        let code_length = match request.code_length {
            0 => self.settings.length,
            n @ 4..=10 => n,
            n => {
                return Err(invalid_argument(
                    "code_length",
                    format!("must be between 4 and 10, got {n}"),
                ));
            }
        };
        let locale = if request.locale.is_empty() {
            self.settings.default_locale.clone()
        } else {
            validate_locale(&request.locale)?;
            request.locale.clone()
        };
        let idempotency_key = idempotency_key(&request.idempotency_key)?;
        let hint = region_hint(&request.region_hint)?;
        let program_id = request.program_id.trim().to_string();
        self.check_program(&program_id)?;
        let workflow = match request.workflow.trim() {
            "" => None,
            text => Some(
                Workflow::parse(text).map_err(|e| invalid_argument("workflow", e.to_string()))?,
            ),
        };

        let classification = classify(&request.to, hint);
        let decision =
            choose_channel(requested, &classification).map_err(|refusal| match refusal {
                ChannelRefusal::InvalidNumber(reason) => {
                    invalid_argument("to", format!("invalid phone number: {reason}"))
                }
                ChannelRefusal::Unreachable(reason) => {
                    let field = if requested.is_some() { "channel" } else { "to" };
                    failed_precondition(field, reason)
                }
            })?;
        let region = classification.region_code.clone();
        // The channel check above refuses what no workflow may send (SMS to a landline,
        // premium-rate numbers); the strategy then picks the step, channel and route.
        let first = self
            .decider
            .start(&classification, requested, workflow.as_ref())
            .map_err(|reason| failed_precondition("channel", reason))?;
        let mut carriers = first.carriers.clone().into_iter();
        let carrier = carriers.next().ok_or_else(|| {
            failed_precondition(
                "channel",
                format!(
                    "no configured route carries {} to {}",
                    first.channel,
                    region.as_deref().unwrap_or("this number")
                ),
            )
        })?;
        let fallback_carriers: Vec<String> = carriers.collect();
        // Country rules for a code (category OTP): blocked countries, channels, and with a
        // program its registrations. A code is never held for later: a rule that would defer
        // it refuses it.
        let rules = self.notify.evaluate_code(
            region.as_deref().unwrap_or_default(),
            &classification.time_zones,
            first.channel,
            &program_id,
            now_ms(),
        );
        match &rules {
            Decision::SendNow { .. } => {}
            Decision::Reject { rule, .. } => {
                return Err(failed_precondition(
                    field_of_rule(&rule.id),
                    rules.explain(),
                ));
            }
            Decision::Defer { rule, .. } => {
                return Err(failed_precondition(
                    field_of_rule(&rule.id),
                    format!("a code cannot wait: {}", rules.explain()),
                ));
            }
        }
        let explanation = if first.channel == decision.channel {
            format!(
                "{}; {}; {}",
                rules.explain(),
                decision.reason,
                first.explanation
            )
        } else {
            format!("{}; {}", rules.explain(), first.explanation)
        };
        let code = self
            .codes
            .issue(code_length)
            .map_err(|e| internal("code generation", e))?;
        let now = now_ms();
        let new = NewVerification {
            id: new_id("vf"),
            message_id: new_id("msg"),
            to_e164: classification.e164.clone().unwrap_or_default(),
            region_code: region,
            channel: first.channel,
            carrier: carrier.clone(),
            fallback_carriers,
            locale,
            code_length,
            code,
            max_checks: self.settings.max_checks,
            max_sends: self.settings.max_sends,
            idempotency_key,
            classification_json: serde_json::to_string(&StoredClassification::from_classification(
                &classification,
            ))
            .map_err(|e| internal("classification encoding", e))?,
            decision: explanation.clone(),
            strategy: first.strategy.to_string(),
            workflow: first.workflow.to_string(),
            step: first.step as u32,
            step_deadline_ms: first.wait.map(|wait| now + wait.as_millis() as i64),
            program_id,
            now_ms: now,
            ttl_ms: (self.settings.ttl_seconds * 1000) as i64,
        };
        let (record, resent, replayed) = match self.store.start_verification(new).await? {
            VerifyOutcome::Created(record) => (record, false, false),
            VerifyOutcome::Resent(record) => (record, true, false),
            VerifyOutcome::Replayed(record) => (record, false, true),
        };
        tracing::info!(
            verification = %record.id,
            to = %verify_carrier::mask_number(&record.to_e164),
            channel = %record.channel,
            carrier,
            resent,
            replayed,
            "verification queued"
        );
        let messages = self.store.messages(&record.id).await?;
        Ok(Response::new(proto::VerifyResponse {
            verification: Some(convert::verification(&record, &messages)),
            resent,
            replayed,
            decision: if replayed {
                record.decision.clone()
            } else {
                explanation
            },
        }))
    }

    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let request = request.into_inner();
        let target = match request.target {
            Some(proto::check_request::Target::VerificationId(id)) => {
                validate_id("verification_id", &id)?;
                CheckTarget::Id(id)
            }
            Some(proto::check_request::Target::To(to)) => {
                validate_number_input("to", &to)?;
                let classification = classify(&to, None);
                match classification.e164 {
                    Some(e164) if classification.valid => CheckTarget::Number(e164),
                    _ => {
                        return Err(invalid_argument(
                            "to",
                            format!("invalid phone number: {}", classification.detail),
                        ));
                    }
                }
            }
            None => {
                return Err(invalid_argument(
                    "verification_id",
                    "set verification_id (or to) to say which verification to check",
                ));
            }
        };
        validate_code(&request.code)?;
        let (result, record) = self
            .store
            .check(target, &request.code, &self.codes, now_ms())
            .await?;
        tracing::info!(verification = %record.id, result = ?result, "code checked");
        let messages = self.store.messages(&record.id).await?;
        Ok(Response::new(proto::CheckResponse {
            result: convert::check_result(result) as i32,
            checks_left: record.checks_left(),
            verification: Some(convert::verification(&record, &messages)),
        }))
    }

    async fn classify(
        &self,
        request: Request<proto::ClassifyRequest>,
    ) -> Result<Response<proto::ClassifyResponse>, Status> {
        let request = request.into_inner();
        if request.number.len() > MAX_NUMBER_INPUT_LENGTH {
            return Err(invalid_argument(
                "number",
                format!("longer than {MAX_NUMBER_INPUT_LENGTH} characters"),
            ));
        }
        let hint = region_hint(&request.region_hint)?;
        let classification = classify(&request.number, hint);
        Ok(Response::new(proto::ClassifyResponse {
            classification: Some(convert::classification(&classification)),
        }))
    }

    type ClassifyBatchStream = BatchStream;

    async fn classify_batch(
        &self,
        request: Request<tonic::Streaming<proto::ClassifyBatchRequest>>,
    ) -> Result<Response<Self::ClassifyBatchStream>, Status> {
        use futures::StreamExt;
        let chunks = request.into_inner();
        let answers = chunks
            .enumerate()
            .map(|(index, chunk)| async move {
                match chunk {
                    Ok(chunk) => classify_chunk(index as u64, chunk).await,
                    Err(status) => Err(status),
                }
            })
            .buffered(BATCH_CHUNKS_IN_FLIGHT);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_verification(
        &self,
        request: Request<proto::GetVerificationRequest>,
    ) -> Result<Response<proto::GetVerificationResponse>, Status> {
        let id = request.into_inner().verification_id;
        validate_id("verification_id", &id)?;
        Ok(Response::new(proto::GetVerificationResponse {
            verification: Some(self.verification_response(&id).await?),
        }))
    }

    async fn cancel_verification(
        &self,
        request: Request<proto::CancelVerificationRequest>,
    ) -> Result<Response<proto::CancelVerificationResponse>, Status> {
        let id = request.into_inner().verification_id;
        validate_id("verification_id", &id)?;
        self.store.cancel(&id, now_ms()).await?;
        tracing::info!(verification = %id, "verification canceled");
        Ok(Response::new(proto::CancelVerificationResponse {
            verification: Some(self.verification_response(&id).await?),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn notify(
        &self,
        request: Request<proto::NotifyRequest>,
    ) -> Result<Response<proto::NotifyResponse>, Status> {
        let request = request.into_inner();
        validate_number_input("to", &request.to)?;
        let category = match proto::MessageCategory::try_from(request.category) {
            Ok(proto::MessageCategory::Otp) => Category::Otp,
            Ok(proto::MessageCategory::Transactional) => Category::Transactional,
            Ok(proto::MessageCategory::Alert) => Category::Alert,
            Ok(proto::MessageCategory::Marketing) => Category::Marketing,
            _ => {
                return Err(invalid_argument(
                    "category",
                    "set one of MESSAGE_CATEGORY_OTP, _TRANSACTIONAL, _ALERT or _MARKETING",
                ));
            }
        };
        let body = request.body.trim();
        if body.is_empty() {
            return Err(invalid_argument("body", "must not be empty"));
        }
        if body.chars().count() > MAX_NOTIFY_BODY_CHARS {
            return Err(invalid_argument(
                "body",
                format!("longer than {MAX_NOTIFY_BODY_CHARS} characters"),
            ));
        }
        let sender = request.sender.trim();
        if sender.chars().count() > 20 {
            return Err(invalid_argument("sender", "longer than 20 characters"));
        }
        let program_id = request.program_id.trim();
        self.check_program(program_id)?;
        if request.template.len() > MAX_ID_LENGTH {
            return Err(invalid_argument(
                "template",
                format!("longer than {MAX_ID_LENGTH} characters"),
            ));
        }
        let idempotency_key = idempotency_key(&request.idempotency_key)?;
        let hint = region_hint(&request.region_hint)?;
        let classification = classify(&request.to, hint);
        let (Some(e164), Some(region)) = (
            classification.e164.clone().filter(|_| classification.valid),
            classification.region_code.clone(),
        ) else {
            return Err(invalid_argument(
                "to",
                format!("invalid phone number: {}", classification.detail),
            ));
        };
        let channel = Channel::Sms;
        let routes = self.decider.routes_for(Some(&region), &e164, channel);
        let Some((first, rest)) = routes.split_first() else {
            return Err(failed_precondition(
                "to",
                format!("no configured route carries {channel} to {region}"),
            ));
        };
        let now = now_ms();
        let mut record = NotificationRecord {
            id: new_id(NOTIFICATION_ID_PREFIX.trim_end_matches('_')),
            to_e164: e164,
            region_code: region,
            time_zones: classification.time_zones.clone(),
            category: category.as_str().to_string(),
            program_id: program_id.to_string(),
            template: request.template.trim().to_string(),
            body: body.to_string(),
            sender: sender.to_string(),
            channel,
            carrier: first.carrier.clone(),
            fallback_carriers: rest.iter().map(|c| c.carrier.clone()).collect(),
            status: NotificationStatus::Queued,
            due_at_ms: now,
            carrier_message_id: None,
            detail: String::new(),
            decision: String::new(),
            idempotency_key,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let decision = self.notify.evaluate(&record, now);
        let route = format!("route {}: {}", first.carrier, first.reason);
        let (action, rule) = match &decision {
            Decision::Reject { rule, .. } => {
                return Err(failed_precondition(
                    field_of_rule(&rule.id),
                    decision.explain(),
                ));
            }
            Decision::SendNow { .. } => (proto::PolicyAction::SendNow, None),
            Decision::Defer { until, rule, .. } => {
                record.status = NotificationStatus::Scheduled;
                record.due_at_ms = until.timestamp_millis();
                (proto::PolicyAction::Defer, Some(rule.clone()))
            }
        };
        record.decision = format!("{}; {route}", decision.explain());
        let (stored, replayed) = self.store.create_notification(record).await?;
        tracing::info!(
            notification = %stored.id,
            to = %verify_carrier::mask_number(&stored.to_e164),
            category = %stored.category,
            action = action.as_str_name(),
            carrier = %stored.carrier,
            replayed,
            "notification stored"
        );
        Ok(Response::new(proto::NotifyResponse {
            decision: Some(proto::PolicyDecision {
                action: action as i32,
                rule_id: rule.as_ref().map(|r| r.id.to_string()).unwrap_or_default(),
                rule_source: rule.map(|r| r.source.to_string()).unwrap_or_default(),
                explanation: stored.decision.clone(),
                send_at: Some(convert::timestamp(stored.due_at_ms)),
                channel: convert::channel(stored.channel) as i32,
                carrier: stored.carrier.clone(),
            }),
            notification: Some(convert::notification(&stored)),
            replayed,
        }))
    }

    async fn get_notification(
        &self,
        request: Request<proto::GetNotificationRequest>,
    ) -> Result<Response<proto::GetNotificationResponse>, Status> {
        let id = request.into_inner().notification_id;
        validate_id("notification_id", &id)?;
        match self.store.notification(&id).await? {
            Some(record) => Ok(Response::new(proto::GetNotificationResponse {
                notification: Some(convert::notification(&record)),
            })),
            None => Err(Status::not_found(format!(
                "notification_id: no notification {id}"
            ))),
        }
    }

    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let request = request.into_inner();
        let filter = match (
            request.verification_id.as_str(),
            request.notification_id.as_str(),
        ) {
            ("", "") => None,
            (id, "") => {
                validate_id("verification_id", id)?;
                Some(id.to_string())
            }
            ("", id) => {
                validate_id("notification_id", id)?;
                if !id.starts_with(NOTIFICATION_ID_PREFIX) {
                    return Err(invalid_argument(
                        "notification_id",
                        format!(
                            "`{id}` is not a notification id (they start with {NOTIFICATION_ID_PREFIX})"
                        ),
                    ));
                }
                Some(id.to_string())
            }
            _ => {
                return Err(invalid_argument(
                    "notification_id",
                    "set verification_id or notification_id, not both",
                ));
            }
        };
        let mut cursor = i64::try_from(request.after_cursor)
            .map_err(|_| invalid_argument("after_cursor", "too large"))?;
        let store = Arc::clone(&self.store);
        let mut shutdown = self.shutdown.clone();
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut signal = store.event_signal();
            loop {
                // Mark the signal seen before reading, so an event recorded during the read
                // wakes the next wait instead of being missed.
                signal.borrow_and_update();
                let batch = match store
                    .events_after(cursor, filter.as_deref(), WATCH_BATCH)
                    .await
                {
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = sender.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                let full = batch.len() as u32 == WATCH_BATCH;
                for event in &batch {
                    cursor = event.cursor;
                    let item = proto::WatchEventsResponse {
                        event: Some(convert::event(event)),
                    };
                    // A client that stops reading must not hold up shutdown.
                    tokio::select! {
                        sent = sender.send(Ok(item)) => {
                            if sent.is_err() {
                                return; // The client went away.
                            }
                        }
                        _ = shutdown.wait_for(|stopping| *stopping) => return,
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = signal.changed() => {}
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let status = validate_code("12a4").unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with("code: "),
            "{}",
            status.message()
        );
        assert!(
            validate_code("123")
                .unwrap_err()
                .message()
                .contains("4 to 10 digits")
        );
        assert!(
            validate_number_input("to", " ")
                .unwrap_err()
                .message()
                .starts_with("to: ")
        );
        assert!(
            requested_channel(9)
                .unwrap_err()
                .message()
                .starts_with("channel: ")
        );
        assert!(validate_locale("es-MX").is_ok());
        assert!(validate_locale("es MX").is_err());
        assert!(
            region_hint("QQQ")
                .unwrap_err()
                .message()
                .starts_with("region_hint: ")
        );
    }
}
