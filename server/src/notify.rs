//! Country rules for messages: the rule set and the configured programs, asked when a
//! notification or a code is created and again when the dispatcher is about to send it (a
//! deferred message is sent only once the rules allow it at that time).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use verify_carrier::Channel;
use verify_policy::rules::{
    Category, Concern, Decision, Message, Program, RuleSet, Sender, SenderKind,
};

use crate::domain::Notification;

/// Message attribute carrying India's DLT principal entity ID.
pub const DLT_ENTITY_ID_ATTRIBUTE: &str = "dlt_entity_id";
/// Message attribute carrying India's DLT template ID.
pub const DLT_TEMPLATE_ID_ATTRIBUTE: &str = "dlt_template_id";

/// A text that is not a code, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct TextMessage<'a> {
    /// The recipient's region.
    pub region: &'a str,
    /// The recipient's time zones.
    pub time_zones: &'a [String],
    /// What it is for.
    pub category: Category,
    /// The sending program; empty for none.
    pub program_id: &'a str,
    /// The registered template; empty for none.
    pub template: &'a str,
    /// The sender to show; empty for the carrier's own.
    pub sender: &'a str,
}

/// The rules and programs of one server.
#[derive(Debug)]
pub struct NotifyPolicy {
    rules: RuleSet,
    programs: BTreeMap<String, Program>,
    no_program: Program,
}

impl NotifyPolicy {
    /// The policy over a validated rule set and the configured programs.
    pub fn new(rules: RuleSet, programs: Vec<Program>) -> NotifyPolicy {
        NotifyPolicy {
            rules,
            programs: programs.into_iter().map(|p| (p.id.clone(), p)).collect(),
            no_program: Program::new(""),
        }
    }

    /// Whether a program of that id is configured.
    pub fn has_program(&self, id: &str) -> bool {
        self.programs.contains_key(id)
    }

    /// Whether the country rules know `region` (geo permissions allow such a country unless
    /// configured otherwise).
    pub fn has_country(&self, region: &str) -> bool {
        self.rules.countries().any(|known| known == region)
    }

    /// The configured program ids, for errors.
    pub fn program_ids(&self) -> Vec<&str> {
        self.programs.keys().map(String::as_str).collect()
    }

    /// What the rules say about sending `notification` on `channel` at `now_ms`.
    pub fn evaluate(&self, notification: &Notification, channel: Channel, now_ms: i64) -> Decision {
        self.evaluate_text(
            &TextMessage {
                region: &notification.region_code,
                time_zones: &notification.time_zones,
                category: notification.category,
                program_id: &notification.program_id,
                template: &notification.template,
                sender: &notification.sender,
            },
            channel,
            now_ms,
        )
    }

    /// What the rules say about sending a text that is not a code (a notification, a
    /// campaign's message) on `channel` at `now_ms`.
    pub fn evaluate_text(&self, text: &TextMessage<'_>, channel: Channel, now_ms: i64) -> Decision {
        let program = self
            .programs
            .get(text.program_id)
            .unwrap_or(&self.no_program);
        let sender = (!text.sender.is_empty()).then(|| Sender {
            kind: SenderKind::guess(text.sender),
            address: text.sender,
        });
        let message = Message {
            region: text.region,
            time_zones: text.time_zones,
            category: text.category,
            channel,
            sender,
            program,
            template: (!text.template.is_empty()).then_some(text.template),
        };
        self.rules.evaluate(&message, instant(now_ms))
    }

    /// What the rules say about sending a one-time code to `region` on `channel` at `now_ms`.
    /// Without a program, registration rules are not checked (verifyd cannot know which of a
    /// client's registrations the code belongs to).
    pub fn evaluate_code(
        &self,
        region: &str,
        time_zones: &[String],
        channel: Channel,
        program_id: &str,
        now_ms: i64,
    ) -> Decision {
        let program = self.programs.get(program_id);
        let message = Message {
            region,
            time_zones,
            category: Category::Otp,
            channel,
            sender: None,
            program: program.unwrap_or(&self.no_program),
            template: None,
        };
        match program {
            Some(_) => self.rules.evaluate(&message, instant(now_ms)),
            None => self.rules.evaluate_unregistered(&message, instant(now_ms)),
        }
    }
}

fn instant(now_ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default()
}

/// The registrations a send-now decision attaches to the message, as carrier attributes
/// (`dlt_entity_id`, `dlt_template_id`); none for other decisions.
pub fn registration_attributes(decision: &Decision) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    if let Decision::SendNow {
        entity_id,
        template_id,
        ..
    } = decision
    {
        if let Some(id) = entity_id {
            attributes.insert(DLT_ENTITY_ID_ATTRIBUTE.to_string(), id.clone());
        }
        if let Some(id) = template_id {
            attributes.insert(DLT_TEMPLATE_ID_ATTRIBUTE.to_string(), id.clone());
        }
    }
    attributes
}

/// The request field a rule's concern is about, for the error's field violation.
pub fn field_of(concern: Concern) -> &'static str {
    match concern {
        Concern::Destination => "to",
        Concern::Channel => "channel",
        Concern::Sender => "sender",
        Concern::Program => "program_id",
        Concern::Template => "template",
        Concern::Timing => "category",
    }
}
