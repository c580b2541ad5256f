//! Notify: send a message that is not a code under the recipient country's rules: now, held
//! as a durable scheduled message until the rules allow it, or refused naming the rule.

use std::sync::Arc;

use verify_carrier::{Channel, mask_number};
use verify_policy::classify;
use verify_policy::rules::{Category, Decision, RuleRef};

use super::abuse::guard_notify;
use super::pending_counts::HeldCounts;
use super::{Caller, NotificationView, UseCaseError, UseCases, input, new_id};
use crate::clock::now_ms;
use crate::domain::{MessageSpec, Notification, OutboxMessage, SubjectState};
use crate::notify::field_of;
use crate::store::{EventLog, NotificationRepository, Outbox, ServiceKey};

/// Longest Notify body, in characters (ten concatenated SMS parts).
const MAX_NOTIFY_BODY_CHARS: usize = 1600;
/// Longest sender, in characters.
const MAX_SENDER_CHARS: usize = 20;

/// A Notify request as the transport parsed it.
#[derive(Debug, Clone, Default)]
pub struct NotifyInput {
    /// The recipient, E.164 or national with `region_hint`.
    pub to: String,
    /// Region for a national number; empty for none.
    pub region_hint: String,
    /// What it is for; `None` when the request did not say.
    pub category: Option<Category>,
    /// The configured program sending it; empty for none.
    pub program_id: String,
    /// The registered template the body follows; empty for none.
    pub template: String,
    /// The text.
    pub body: String,
    /// The sender to show; empty for the carrier's own.
    pub sender: String,
    /// The client's idempotency key; empty for none.
    pub idempotency_key: String,
    /// What the client says about the person the message is for.
    pub context: verify_policy::abuse::RawContext,
    /// The service sending it; empty for the caller's own.
    pub service_id: String,
}

/// What Notify did.
#[derive(Debug, Clone)]
pub struct NotifyOutcome {
    /// The notification and its message.
    pub view: NotificationView,
    /// The rule that deferred it; `None` when it is sent now.
    pub deferred_by: Option<RuleRef>,
    /// The idempotency key matched an earlier call; nothing new was stored.
    pub replayed: bool,
}

impl UseCases {
    /// Stores a notification and its message (due now, or scheduled by a rule), or refuses it
    /// naming the rule.
    pub async fn notify(
        &self,
        caller: &Caller,
        request: NotifyInput,
    ) -> Result<NotifyOutcome, UseCaseError> {
        let service = self.service_for(caller, &request.service_id).await?;
        input::validate_number_input("to", &request.to)?;
        let context = input::request_context(&request.context)?;
        let category = request.category.ok_or_else(|| {
            UseCaseError::invalid(
                "category",
                "set one of MESSAGE_CATEGORY_OTP, _TRANSACTIONAL, _ALERT or _MARKETING",
            )
        })?;
        let body = request.body.trim();
        if body.is_empty() {
            return Err(UseCaseError::invalid("body", "must not be empty"));
        }
        if body.chars().count() > MAX_NOTIFY_BODY_CHARS {
            return Err(UseCaseError::invalid(
                "body",
                format!("longer than {MAX_NOTIFY_BODY_CHARS} characters"),
            ));
        }
        let sender = request.sender.trim();
        if sender.chars().count() > MAX_SENDER_CHARS {
            return Err(UseCaseError::invalid(
                "sender",
                format!("longer than {MAX_SENDER_CHARS} characters"),
            ));
        }
        let program_id = request.program_id.trim();
        self.check_program(program_id)?;
        if request.template.len() > input::MAX_ID_LENGTH {
            return Err(UseCaseError::invalid(
                "template",
                format!("longer than {} characters", input::MAX_ID_LENGTH),
            ));
        }
        let idempotency_key = input::idempotency_key(&request.idempotency_key)?;
        let hint = input::region_hint(&request.region_hint)?;
        let classification = classify(&request.to, hint);
        let (Some(e164), Some(region)) = (
            classification.e164.clone().filter(|_| classification.valid),
            classification.region_code.clone(),
        ) else {
            return Err(UseCaseError::invalid(
                "to",
                format!("invalid phone number: {}", classification.detail),
            ));
        };
        // Geo permissions as for codes.
        let monitored = self.geo_permission(&e164, Some(&region))?;
        let channel = Channel::Sms;
        let routes = self.decider.routes_for(Some(&region), &e164, channel);
        let Some((first, rest)) = routes.split_first() else {
            return Err(UseCaseError::precondition(
                "to",
                format!("no configured route carries {channel} to {region}"),
            ));
        };
        let now = now_ms();
        let mut notification = Notification {
            id: new_id("nt"),
            service_id: service.id.clone(),
            to_e164: e164,
            region_code: region,
            time_zones: classification.time_zones.clone(),
            category,
            program_id: program_id.to_string(),
            template: request.template.trim().to_string(),
            body: body.to_string(),
            sender: sender.to_string(),
            decision: String::new(),
            idempotency_key,
            created_at_ms: now,
        };
        let decision = self.rules.evaluate(&notification, channel, now);
        if let (Decision::Reject { .. }, Some(concern)) = (&decision, decision.concern()) {
            return Err(UseCaseError::precondition(
                field_of(concern),
                decision.explain(),
            ));
        }
        notification.decision = format!(
            "{}; route {}: {}",
            decision.explain(),
            first.carrier,
            first.reason
        );
        if let Some(monitored) = monitored {
            notification.decision = format!("{monitored}; {}", notification.decision);
        }
        let spec = MessageSpec {
            id: new_id("msg"),
            service_id: service.id.clone(),
            subject: notification.subject(),
            channel,
            carrier: first.carrier.clone(),
            fallback_carriers: rest.iter().map(|c| c.carrier.clone()).collect(),
            step: 0,
            trace_parent: crate::telemetry::current_traceparent(),
        };
        let (message, event) = match &decision {
            Decision::Defer { until, .. } => OutboxMessage::schedule(
                spec,
                until.timestamp_millis(),
                &notification.decision,
                SubjectState::Notification,
                now,
            ),
            _ => OutboxMessage::queue(
                spec,
                &notification.decision,
                SubjectState::Notification,
                now,
            ),
        };

        let stored = (notification.clone(), message.clone());
        let defense = Arc::clone(&self.defense);
        let view = Arc::clone(&self.guard_view);
        let (earlier, held) = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let (notification, message) = stored;
                    let key = notification.idempotency_key.as_ref().map(|key| ServiceKey {
                        service_id: notification.service_id.clone(),
                        key: key.clone(),
                    });
                    if let Some(key) = &key
                        && let Some(earlier) = tx.notification_for_key(key).await?
                    {
                        tx.discard();
                        return Ok::<_, UseCaseError>((Some(earlier), HeldCounts::none()));
                    }
                    let held = guard_notify(
                        tx,
                        &defense,
                        &view,
                        &notification.to_e164,
                        &notification.region_code,
                        &context,
                        now,
                    )
                    .await?;
                    tx.insert_notification(&notification).await?;
                    tx.insert_message(&message).await?;
                    tx.record([event]);
                    Ok((None, held))
                })
            })
            .await?;
        held.keep();
        if let Some(earlier) = earlier {
            if earlier.to_e164 != notification.to_e164 {
                return Err(UseCaseError::precondition(
                    "idempotency_key",
                    format!(
                        "already used for notification {} to another number",
                        earlier.id
                    ),
                ));
            }
            let view = self.notification_view(earlier).await?;
            let deferred_by = self.deferring_rule(&view);
            return Ok(NotifyOutcome {
                view,
                deferred_by,
                replayed: true,
            });
        }
        tracing::info!(
            notification = %notification.id,
            to = %mask_number(&notification.to_e164),
            category = %notification.category.as_str(),
            scheduled = matches!(decision, Decision::Defer { .. }),
            carrier = %message.carrier,
            "notification stored"
        );
        Ok(NotifyOutcome {
            deferred_by: decision
                .rule()
                .filter(|_| matches!(decision, Decision::Defer { .. }))
                .cloned(),
            view: NotificationView {
                notification,
                message,
            },
            replayed: false,
        })
    }

    /// For a replayed notification: the rule that holds its message now, if it is scheduled.
    fn deferring_rule(&self, view: &NotificationView) -> Option<RuleRef> {
        if view.message.status != crate::domain::DeliveryStatus::Scheduled {
            return None;
        }
        let decision = self.rules.evaluate(
            &view.notification,
            view.message.channel,
            view.notification.created_at_ms,
        );
        match decision {
            Decision::Defer { rule, .. } => Some(rule),
            _ => None,
        }
    }
}
