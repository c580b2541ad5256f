//! What policy answers for one message: send now, defer to a time, or reject, each naming the
//! rule behind it so that responses and events can say why.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

/// The identity of a rule, for explanations: id, why it exists and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// Stable id, `<COUNTRY>.<authority>.<what>`, e.g. `IN.trai.marketing_hours`.
    pub id: Arc<str>,
    /// What the rule does and why, for people.
    pub reason: Arc<str>,
    /// The citation: a regulation and section, or the carrier or vendor requirement it is.
    pub source: Arc<str>,
    /// A link to the source, where there is one.
    pub url: Option<Arc<str>>,
}

/// The part of a message a refusal is about, so a client can be told which field to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern {
    /// The recipient (a blocked country).
    Destination,
    /// The channel (SMS where only voice may go, or the reverse).
    Channel,
    /// The sender shown (its kind, or that it is not registered).
    Sender,
    /// The sending program's registration (India's DLT entity).
    Program,
    /// The registered template the message follows.
    Template,
    /// When it is sent (outside the allowed hours).
    Timing,
}

/// Policy's answer for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it now.
    SendNow {
        /// The rules that applied to the message and allowed it.
        applied: Vec<RuleRef>,
        /// The registered entity ID a registration rule required (India: DLT PE ID); the
        /// carrier attaches it, e.g. as the `dlt_entity_id` attribute.
        entity_id: Option<String>,
        /// The registered template ID a registration rule required (India: DLT template ID),
        /// e.g. the `dlt_template_id` attribute.
        template_id: Option<String>,
    },
    /// Keep it, durably, and send it at `until`, when the window opens in every zone of the
    /// number. The dispatcher should ask again then (rules may have changed).
    Defer {
        /// The first instant the message may go.
        until: DateTime<Utc>,
        /// The rule that forbids sending now.
        rule: RuleRef,
        /// The rule's windows as written, e.g. `09:00-21:00`.
        local_window: String,
        /// What is outside the window, e.g. `MARKETING to IN at 22:00 Asia/Kolkata`.
        detail: String,
    },
    /// Never send it, because of `rule`.
    Reject {
        /// The rule that forbids it.
        rule: RuleRef,
        /// The part of the message the rule objects to.
        concern: Concern,
        /// Why, in one sentence about this message.
        reason: String,
    },
}

impl Decision {
    /// One human sentence: what happens and why, with the rule id and its source.
    pub fn explain(&self) -> String {
        match self {
            Decision::SendNow { applied, .. } => {
                if applied.is_empty() {
                    return "sent now: no country rule applies".to_string();
                }
                let mut text = String::from("sent now: allowed by ");
                for (i, rule) in applied.iter().enumerate() {
                    if i > 0 {
                        text.push_str(", ");
                    }
                    text.push_str(&rule.id);
                }
                text
            }
            Decision::Defer {
                until,
                rule,
                local_window,
                detail,
            } => {
                let mut text = String::with_capacity(160);
                let _ = write!(
                    text,
                    "{detail} is outside {local_window} ({}, {}): deferred to {}",
                    rule.id,
                    rule.source,
                    until.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
                text
            }
            Decision::Reject { rule, reason, .. } => {
                format!("{reason} ({}, {}): rejected", rule.id, rule.source)
            }
        }
    }

    /// What a defer or a reject is about; `None` when the message is sent now.
    pub fn concern(&self) -> Option<Concern> {
        match self {
            Decision::SendNow { .. } => None,
            Decision::Defer { .. } => Some(Concern::Timing),
            Decision::Reject { concern, .. } => Some(*concern),
        }
    }

    /// The rule that stopped the message now, for a defer or a reject.
    pub fn rule(&self) -> Option<&RuleRef> {
        match self {
            Decision::SendNow { .. } => None,
            Decision::Defer { rule, .. } | Decision::Reject { rule, .. } => Some(rule),
        }
    }
}
