//! What to do with each claimed message just before sending: its subject still wants it (a
//! verification still pending, a notification the country rules allow at this moment), and
//! what the carrier is handed: the text, the code, and the registrations rules require.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use verify_carrier::{Carrier, OneTimeCode, OutboundMessage};
use verify_policy::messages::{Wording, render_for};
use verify_policy::routing::LAST_RESORT_ATTRIBUTE;
use verify_policy::rules::Decision;

use crate::carriers::CarrierSet;
use crate::codes::CodeBook;
use crate::domain::campaign::{Recipient, line_of_message};
use crate::domain::message::HELD_UNTIL_RESUMED;
use crate::domain::{
    Campaign, CampaignStatus, Notification, OutboxMessage, SendOutcome, Service, Subject,
    Verification,
};
use crate::notify::{NotifyPolicy, registration_attributes};
use crate::services::ServiceDirectory;
use crate::store::SqlStore;
use crate::usecases::campaign::text_of;

/// The decision for one claimed message.
pub enum Prepared {
    /// Hand it to `carrier`.
    Send {
        /// The message.
        message_id: String,
        /// Its carrier.
        carrier: Arc<dyn Carrier>,
        /// What the carrier gets.
        outbound: OutboundMessage,
    },
    /// Not now: its subject could not be read; give it back to the queue.
    Release {
        /// The message.
        message_id: String,
    },
    /// Do not hand it over; settle it with `outcome`.
    Settle {
        /// The message.
        message_id: String,
        /// Its attempts so far, as claimed.
        attempt: u32,
        /// Why it does not go.
        outcome: SendOutcome,
    },
}

/// Decides for each claimed message, loading their subjects in two reads.
pub async fn prepare(
    store: &SqlStore,
    carriers: &CarrierSet,
    rules: &NotifyPolicy,
    codes: &CodeBook,
    services: &ServiceDirectory,
    claimed: Vec<OutboxMessage>,
    now_ms: i64,
) -> Vec<Prepared> {
    // A service created on another replica a moment ago is read before its first code goes.
    if claimed
        .iter()
        .any(|m| services.get(&m.service_id).is_none())
        && let Err(error) = services.reload_for_miss().await
    {
        tracing::warn!(%error, "reading the stored services failed");
    }
    let ids_of = |wanted: fn(&Subject) -> Option<&str>| -> Vec<String> {
        claimed
            .iter()
            .filter_map(|m| wanted(&m.subject).map(str::to_string))
            .collect()
    };
    let verification_ids = ids_of(|s| match s {
        Subject::Verification(id) => Some(id),
        Subject::Notification(_) | Subject::Block(_) | Subject::Campaign(_) => None,
    });
    let notification_ids = ids_of(|s| match s {
        Subject::Notification(id) => Some(id),
        Subject::Verification(_) | Subject::Block(_) | Subject::Campaign(_) => None,
    });
    let campaigns = load_campaigns(store, &claimed).await;
    let (verifications, notifications) = tokio::join!(
        store.verifications_for_dispatch(&verification_ids),
        store.notifications_for_dispatch(&notification_ids)
    );
    let verifications: Option<HashMap<String, Verification>> = match verifications {
        Ok(found) => Some(found.into_iter().map(|v| (v.id.clone(), v)).collect()),
        Err(error) => {
            tracing::error!(%error, "loading the verifications of claimed messages failed");
            None
        }
    };
    let notifications: Option<HashMap<String, Notification>> = match notifications {
        Ok(found) => Some(found.into_iter().map(|n| (n.id.clone(), n)).collect()),
        Err(error) => {
            tracing::error!(%error, "loading the notifications of claimed messages failed");
            None
        }
    };
    claimed
        .into_iter()
        .map(|message| {
            let settle = |outcome| Prepared::Settle {
                message_id: message.id.clone(),
                attempt: message.attempt,
                outcome,
            };
            let Some(carrier) = carriers.get(&message.carrier) else {
                return settle(SendOutcome::Refused {
                    reason: format!(
                        "carrier `{}` is not configured on this server",
                        message.carrier
                    ),
                    temporary: true,
                });
            };
            let outbound = match &message.subject {
                Subject::Verification(id) => match verifications.as_ref().map(|v| v.get(id)) {
                    Some(Some(verification)) => {
                        let service = services.get(&verification.service_id);
                        for_code(
                            codes,
                            rules,
                            service.as_deref(),
                            verification,
                            &message,
                            now_ms,
                        )
                    }
                    Some(None) => Err(missing_subject(&message)),
                    None => {
                        return Prepared::Release {
                            message_id: message.id,
                        };
                    }
                },
                Subject::Notification(id) => match notifications.as_ref().map(|n| n.get(id)) {
                    Some(Some(notification)) => {
                        for_notification(rules, notification, &message, now_ms)
                    }
                    Some(None) => Err(missing_subject(&message)),
                    None => {
                        return Prepared::Release {
                            message_id: message.id,
                        };
                    }
                },
                Subject::Campaign(id) => match campaigns.as_ref().map(|c| c.get(id)) {
                    Some(Some((campaign, recipients))) => {
                        match line_of_message(id, &message.id).and_then(|l| recipients.get(&l)) {
                            Some(recipient) => {
                                for_campaign(rules, campaign, recipient, &message, now_ms)
                            }
                            None => Err(missing_subject(&message)),
                        }
                    }
                    Some(None) => Err(missing_subject(&message)),
                    None => {
                        return Prepared::Release {
                            message_id: message.id,
                        };
                    }
                },
                // Blocks send nothing; a message naming one is refused as missing its subject.
                Subject::Block(_) => Err(missing_subject(&message)),
            };
            match outbound {
                Ok(outbound) => Prepared::Send {
                    message_id: message.id.clone(),
                    carrier: Arc::clone(carrier),
                    outbound,
                },
                Err(outcome) => settle(outcome),
            }
        })
        .collect()
}

/// A message whose subject is not stored (the database lost a row): it cannot be sent.
fn missing_subject(message: &OutboxMessage) -> SendOutcome {
    SendOutcome::NotSent {
        reason: format!("not sent: {} is missing", message.subject),
    }
}

/// The message carrying a verification's code, or why it does not go.
fn for_code(
    codes: &CodeBook,
    rules: &NotifyPolicy,
    service: Option<&Service>,
    verification: &Verification,
    message: &OutboxMessage,
    now_ms: i64,
) -> Result<OutboundMessage, SendOutcome> {
    verification
        .may_send(now_ms)
        .map_err(|reason| SendOutcome::NotSent { reason })?;
    let code = codes.code_of(&verification.code, verification.code_length);
    // A resend keeps the first expiry, so say what is left of it.
    let left = Duration::from_millis((verification.expires_at_ms - now_ms).max(0) as u64);
    // With a program, the registrations the country requires go with the code (India's DLT
    // entity and OTP template IDs).
    let mut attributes = if verification.program_id.is_empty() {
        BTreeMap::new()
    } else {
        registration_attributes(&rules.evaluate_code(
            verification.region_code.as_deref().unwrap_or_default(),
            &[],
            message.channel,
            &verification.program_id,
            now_ms,
        ))
    };
    mark_last_resort(&mut attributes, message);
    Ok(OutboundMessage {
        message_id: message.id.clone(),
        verification_id: verification.id.clone(),
        to: verification.to_e164.clone(),
        region_code: verification.region_code.clone(),
        channel: message.channel,
        // A service that no longer exists (removed from the configuration) leaves the
        // shipped words.
        body: render_for(
            message.channel,
            &verification.locale,
            code.expose(),
            left,
            Wording {
                app_hash: &verification.app_hash,
                domain: &verification.autofill_domain,
                ..service
                    .map(|s| s.wording(message.channel, &verification.locale))
                    .unwrap_or_default()
            },
        ),
        code,
        locale: verification.locale.clone(),
        sender: None,
        attributes,
    })
}

/// A notification's message if the country rules allow it now; held again, or refused, with
/// the rule otherwise.
fn for_notification(
    rules: &NotifyPolicy,
    notification: &Notification,
    message: &OutboxMessage,
    now_ms: i64,
) -> Result<OutboundMessage, SendOutcome> {
    let attributes = allowed_now(
        &rules.evaluate(notification, message.channel, now_ms),
        message,
    )?;
    Ok(OutboundMessage {
        message_id: message.id.clone(),
        // Carriers that echo a reference (and the sim outbox) see the notification id.
        verification_id: notification.id.clone(),
        to: notification.to_e164.clone(),
        region_code: Some(notification.region_code.clone()),
        channel: message.channel,
        body: notification.body.clone(),
        code: OneTimeCode::new(""),
        locale: "en".to_string(),
        sender: (!notification.sender.is_empty()).then(|| notification.sender.clone()),
        attributes,
    })
}

/// The campaigns of the claimed messages with the recipients they carry texts to, by
/// campaign id and line; `None` when they could not be read.
async fn load_campaigns(
    store: &SqlStore,
    claimed: &[OutboxMessage],
) -> Option<HashMap<String, (Campaign, HashMap<u64, Recipient>)>> {
    let mut lines: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for message in claimed {
        if let Subject::Campaign(id) = &message.subject
            && let Some(line) = line_of_message(id, &message.id)
        {
            lines.entry(id).or_default().push(line);
        }
    }
    let mut loaded = HashMap::with_capacity(lines.len());
    for (id, lines) in lines {
        let read = async {
            let campaign = store.campaigns_for_dispatch(&[id.to_string()]).await?;
            let recipients = store.recipients_for_dispatch(id, &lines).await?;
            Ok::<_, crate::store::StoreError>((campaign, recipients))
        };
        match read.await {
            Ok((mut campaign, recipients)) => {
                if let Some(campaign) = campaign.pop() {
                    let recipients = recipients.into_iter().map(|r| (r.line, r)).collect();
                    loaded.insert(id.to_string(), (campaign, recipients));
                }
            }
            Err(error) => {
                tracing::error!(%error, "loading the campaigns of claimed messages failed");
                return None;
            }
        }
    }
    Some(loaded)
}

/// A campaign's message to one recipient if the campaign sends and the country rules allow
/// it now; held (the campaign paused, the recipient's window closed), dropped (the campaign
/// ended) or refused by a rule otherwise.
fn for_campaign(
    rules: &NotifyPolicy,
    campaign: &Campaign,
    recipient: &Recipient,
    message: &OutboxMessage,
    now_ms: i64,
) -> Result<OutboundMessage, SendOutcome> {
    if !campaign.sends_at(now_ms) {
        return Err(match campaign.status {
            CampaignStatus::Paused | CampaignStatus::Scheduled => SendOutcome::Deferred {
                until_ms: HELD_UNTIL_RESUMED,
                reason: format!("campaign {}: held until it is resumed", campaign.status),
            },
            status => SendOutcome::NotSent {
                reason: if campaign.past_deadline(now_ms) {
                    "not sent: the campaign's deadline passed".to_string()
                } else {
                    format!("not sent: the campaign is {status}")
                },
            },
        });
    }
    let time_zones = verify_policy::classify(&recipient.to_e164, None).time_zones;
    let decision = rules.evaluate_text(
        &text_of(campaign, &recipient.region_code, &time_zones),
        message.channel,
        now_ms,
    );
    let attributes = allowed_now(&decision, message)?;
    Ok(OutboundMessage {
        message_id: message.id.clone(),
        // Carriers that echo a reference (and the sim outbox) see the campaign id.
        verification_id: campaign.id.clone(),
        to: recipient.to_e164.clone(),
        region_code: Some(recipient.region_code.clone()),
        channel: message.channel,
        body: campaign.spec.text_for(&recipient.locale, &recipient.values),
        code: OneTimeCode::new(""),
        locale: if recipient.locale.is_empty() {
            campaign.spec.default_locale.clone()
        } else {
            recipient.locale.clone()
        },
        sender: Some(campaign.spec.sender_for(&recipient.region_code))
            .filter(|sender| !sender.is_empty())
            .map(str::to_string),
        attributes,
    })
}

/// The carrier attributes of a text the rules allow now (its registrations, and whether it is
/// on its last route); held until its window, or refused, naming the rule, otherwise.
fn allowed_now(
    decision: &Decision,
    message: &OutboxMessage,
) -> Result<BTreeMap<String, String>, SendOutcome> {
    match decision {
        Decision::Reject { .. } => Err(SendOutcome::Rejected {
            reason: format!("not sent: {}", decision.explain()),
        }),
        Decision::Defer { until, .. } => Err(SendOutcome::Deferred {
            until_ms: until.timestamp_millis(),
            reason: decision.explain(),
        }),
        Decision::SendNow { .. } => {
            let mut attributes = registration_attributes(decision);
            mark_last_resort(&mut attributes, message);
            Ok(attributes)
        }
    }
}

/// With no route left after this one, the route's breaker must not stop the message.
fn mark_last_resort(attributes: &mut BTreeMap<String, String>, message: &OutboxMessage) {
    if message.fallback_carriers.is_empty() {
        attributes.insert(LAST_RESORT_ATTRIBUTE.to_string(), "true".to_string());
    }
}
