//! Country rules for Notify messages: the rule set and the configured programs, asked when a
//! notification is created and again when the dispatcher is about to send it (a deferred
//! message is sent only once the rules allow it at that time).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use verify_policy::rules::{Category, Decision, Message, Program, RuleSet, Sender, SenderKind};

use crate::store::NotificationRecord;

/// The rules and programs of one server.
#[derive(Debug)]
pub struct NotifyPolicy {
    rules: RuleSet,
    programs: BTreeMap<String, Program>,
    no_program: Program,
}

/// A stored category name back to the category.
pub fn category(name: &str) -> Option<Category> {
    Category::ALL.into_iter().find(|c| c.as_str() == name)
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

    /// The configured program ids, for errors.
    pub fn program_ids(&self) -> Vec<&str> {
        self.programs.keys().map(String::as_str).collect()
    }

    /// What the rules say about `notification` at `now_ms`.
    pub fn evaluate(&self, notification: &NotificationRecord, now_ms: i64) -> Decision {
        let now = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
        let program = self
            .programs
            .get(&notification.program_id)
            .unwrap_or(&self.no_program);
        let sender = (!notification.sender.is_empty()).then(|| Sender {
            kind: SenderKind::guess(&notification.sender),
            address: &notification.sender,
        });
        let message = Message {
            region: &notification.region_code,
            time_zones: &notification.time_zones,
            category: category(&notification.category).unwrap_or(Category::Marketing),
            channel: notification.channel,
            sender,
            program,
            template: (!notification.template.is_empty()).then_some(notification.template.as_str()),
        };
        self.rules.evaluate(&message, now)
    }
}

impl NotifyPolicy {
    /// What the rules say about sending a one-time code to `region` on `channel` at `now_ms`.
    /// Without a program, registration rules are not checked (verifyd cannot know which of a
    /// client's registrations the code belongs to).
    pub fn evaluate_code(
        &self,
        region: &str,
        time_zones: &[String],
        channel: verify_carrier::Channel,
        program_id: &str,
        now_ms: i64,
    ) -> Decision {
        let now = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
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
            Some(_) => self.rules.evaluate(&message, now),
            None => self.rules.evaluate_unregistered(&message, now),
        }
    }
}

/// The request field a refusing rule is about, for the error's field violation.
pub fn field_of_rule(rule_id: &str) -> &'static str {
    if rule_id.contains("template") {
        "template"
    } else if rule_id.contains("sender")
        || rule_id.contains("header")
        || rule_id.contains("signature")
    {
        "sender"
    } else if rule_id.contains("entity") {
        "program_id"
    } else if rule_id.contains("blocked") {
        "to"
    } else {
        "category"
    }
}
