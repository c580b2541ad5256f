//! The TOML form of country rules (`policy/rules/*.toml` and configuration overrides), and its
//! validation into the compiled rules evaluation uses.

use std::str::FromStr;
use std::sync::Arc;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use verify_carrier::Channel;

use super::decision::RuleRef;
use super::message::{Category, SenderKind};
use super::window::Schedule;

/// One country's rules as written in a file, or an override of them. `country = "*"` holds
/// rules for every country (`defaults.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CountryFile {
    /// Upper-case ISO 3166-1 alpha-2 region, or `*` for every country.
    pub country: String,
    /// The country's name, for people.
    #[serde(default)]
    pub name: Option<String>,
    /// IANA zones used when a number's own zones are unknown. Required with window rules.
    #[serde(default)]
    pub time_zones: Option<Vec<String>>,
    /// Rule ids to drop: this country's own (in an override) or `default.*` ones it opts out of.
    #[serde(default)]
    pub remove: Vec<String>,
    /// The rules; one with the id of an existing rule replaces it.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec>,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Reject every message in scope (a blocked country).
    Block,
    /// Only `allowed_channels` may carry messages of the rule's categories.
    Channels,
    /// Only senders of `allowed_senders` kinds may be used.
    SenderKinds,
    /// The program must have registered what `require` lists in this country.
    Registration,
    /// Send only inside `windows`, in the recipient's local time.
    Window,
}

/// A registration a rule can require of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// `entity_id` (India: the DLT principal entity ID).
    EntityId,
    /// A template ID for the message's template name or category.
    TemplateId,
    /// The sender address is among the program's registered `senders`.
    Sender,
}

/// One rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable id, starting with the country (`IN.`) or `default.` in `defaults.toml`.
    pub id: String,
    /// What the rule does.
    pub kind: RuleKind,
    /// Why, for people; shown in explanations.
    pub reason: String,
    /// The citation. Say when it is a carrier requirement or industry practice, not law.
    pub source: String,
    /// A link to the source.
    #[serde(default)]
    pub url: Option<String>,
    /// Categories the rule applies to; default all (window rules must list them).
    #[serde(default)]
    pub categories: Option<Vec<Category>>,
    /// Channels the rule applies to; default all, but `["sms"]` for `sender_kinds` and
    /// `registration`.
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
    /// `channels` rules: the channels allowed.
    #[serde(default)]
    pub allowed_channels: Option<Vec<Channel>>,
    /// `sender_kinds` rules: the sender kinds allowed.
    #[serde(default)]
    pub allowed_senders: Option<Vec<SenderKind>>,
    /// `registration` rules: what must be registered.
    #[serde(default)]
    pub require: Option<Vec<Requirement>>,
    /// `registration` rules with `sender`: the sender kinds that must be registered; default all.
    #[serde(default)]
    pub sender_kinds: Option<Vec<SenderKind>>,
    /// `window` rules: `"09:00-21:00"` or `"mon-fri 07:00-21:00"`; any one allows.
    #[serde(default)]
    pub windows: Option<Vec<String>>,
}

/// A rule file or override that cannot be used, naming the file (or config key) and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct RulesError {
    /// The file or configuration key the rules came from.
    pub origin: String,
    /// What is wrong, naming the rule and field.
    pub message: String,
}

impl RulesError {
    pub(crate) fn new(origin: &str, message: impl Into<String>) -> RulesError {
        RulesError {
            origin: origin.to_string(),
            message: message.into(),
        }
    }
}

/// What a compiled rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    Block,
    Channels(u8),
    SenderKinds(u8),
    Registration {
        entity: bool,
        template: bool,
        sender_kinds: Option<u8>,
    },
    Window(Schedule),
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) meta: RuleRef,
    pub(crate) kind: RuleKind,
    pub(crate) categories: u8,
    pub(crate) channels: u8,
    pub(crate) effect: Effect,
}

impl Rule {
    pub(crate) fn applies(&self, category: Category, channel: Channel) -> bool {
        self.categories & category.bit() != 0 && self.channels & channel_bit(channel) != 0
    }
}

pub(crate) fn channel_bit(channel: Channel) -> u8 {
    match channel {
        Channel::Sms => 1,
        Channel::Voice => 2,
    }
}

const ALL_CHANNELS: u8 = 0b11;
const ALL_CATEGORIES: u8 = 0b1111;
const ALL_SENDER_KINDS: u8 = 0b1111;

/// Parses a zone name as libphonenumber or a person writes it (legacy names included).
pub(crate) fn parse_zone(name: &str) -> Option<Tz> {
    Tz::from_str(name).ok()
}

/// Checks that `country` is `*` or a region libphonenumber knows.
pub(crate) fn check_country(origin: &str, country: &str) -> Result<(), RulesError> {
    if country == "*" {
        return Ok(());
    }
    let known = country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && crate::classify::parse_region_hint(country).is_ok_and(|r| r.is_some());
    if known {
        Ok(())
    } else {
        Err(RulesError::new(
            origin,
            format!(
                "field `country`: `{country}` is not an upper-case ISO 3166-1 alpha-2 region (or `*`)"
            ),
        ))
    }
}

/// Parses the zones of a file.
pub(crate) fn compile_zones(origin: &str, names: &[String]) -> Result<Vec<Tz>, RulesError> {
    names
        .iter()
        .map(|name| {
            parse_zone(name).ok_or_else(|| {
                RulesError::new(
                    origin,
                    format!("field `time_zones`: `{name}` is not an IANA time zone"),
                )
            })
        })
        .collect()
}

/// Validates one rule of `country` and compiles it.
pub(crate) fn compile_rule(
    origin: &str,
    country: &str,
    spec: &RuleSpec,
) -> Result<Rule, RulesError> {
    let fail = |field: &str, message: String| {
        RulesError::new(
            origin,
            format!("rule `{}`: field `{field}`: {message}", spec.id),
        )
    };
    let prefix = if country == "*" { "default" } else { country };
    let id_ok = spec
        .id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        });
    if !id_ok {
        return Err(fail(
            "id",
            format!("must be `{prefix}.<name>` with letters, digits, `_`, `-` and `.`"),
        ));
    }
    for (field, value) in [("reason", &spec.reason), ("source", &spec.source)] {
        if value.trim().is_empty() {
            return Err(fail(field, "must not be empty".into()));
        }
    }
    let categories = match &spec.categories {
        Some(list) if list.is_empty() => return Err(fail("categories", "is empty".into())),
        Some(list) => list.iter().fold(0, |mask, c| mask | c.bit()),
        None if spec.kind == RuleKind::Window => {
            return Err(fail(
                "categories",
                "a window rule must list its categories (OTP is never deferred unless named)"
                    .into(),
            ));
        }
        None => ALL_CATEGORIES,
    };
    let channels = match &spec.channels {
        Some(list) if list.is_empty() => return Err(fail("channels", "is empty".into())),
        Some(list) => channel_mask(list),
        None if matches!(spec.kind, RuleKind::SenderKinds | RuleKind::Registration) => {
            channel_bit(Channel::Sms)
        }
        None => ALL_CHANNELS,
    };
    // Fields that belong to one kind only.
    let owned: [(&str, bool, RuleKind); 5] = [
        (
            "allowed_channels",
            spec.allowed_channels.is_some(),
            RuleKind::Channels,
        ),
        (
            "allowed_senders",
            spec.allowed_senders.is_some(),
            RuleKind::SenderKinds,
        ),
        ("require", spec.require.is_some(), RuleKind::Registration),
        (
            "sender_kinds",
            spec.sender_kinds.is_some(),
            RuleKind::Registration,
        ),
        ("windows", spec.windows.is_some(), RuleKind::Window),
    ];
    for (field, present, owner) in owned {
        if present && owner != spec.kind {
            return Err(fail(
                field,
                format!(
                    "belongs to `{}` rules, not `{}`",
                    kind_name(owner),
                    kind_name(spec.kind)
                ),
            ));
        }
    }
    let missing = |field: &str| {
        fail(
            field,
            format!("is required for `{}` rules", kind_name(spec.kind)),
        )
    };
    let effect = match spec.kind {
        RuleKind::Block => Effect::Block,
        RuleKind::Channels => {
            let list = spec
                .allowed_channels
                .as_ref()
                .ok_or_else(|| missing("allowed_channels"))?;
            Effect::Channels(channel_mask(list))
        }
        RuleKind::SenderKinds => {
            let list = spec
                .allowed_senders
                .as_ref()
                .ok_or_else(|| missing("allowed_senders"))?;
            Effect::SenderKinds(list.iter().fold(0, |mask, k| mask | k.bit()))
        }
        RuleKind::Registration => {
            let list = spec.require.as_ref().ok_or_else(|| missing("require"))?;
            if list.is_empty() {
                return Err(fail("require", "is empty".into()));
            }
            let sender = list.contains(&Requirement::Sender);
            if spec.sender_kinds.is_some() && !sender {
                return Err(fail(
                    "sender_kinds",
                    "only means something when `require` includes \"sender\"".into(),
                ));
            }
            Effect::Registration {
                entity: list.contains(&Requirement::EntityId),
                template: list.contains(&Requirement::TemplateId),
                sender_kinds: sender.then(|| {
                    spec.sender_kinds
                        .as_ref()
                        .map_or(ALL_SENDER_KINDS, |l| l.iter().fold(0, |m, k| m | k.bit()))
                }),
            }
        }
        RuleKind::Window => {
            let texts = spec.windows.as_ref().ok_or_else(|| missing("windows"))?;
            Effect::Window(Schedule::parse(texts).map_err(|e| fail("windows", e))?)
        }
    };
    Ok(Rule {
        meta: RuleRef {
            id: Arc::from(spec.id.as_str()),
            reason: Arc::from(spec.reason.trim()),
            source: Arc::from(spec.source.trim()),
            url: spec.url.as_deref().map(Arc::from),
        },
        kind: spec.kind,
        categories,
        channels,
        effect,
    })
}

fn channel_mask(list: &[Channel]) -> u8 {
    list.iter().fold(0, |mask, c| mask | channel_bit(*c))
}

fn kind_name(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Block => "block",
        RuleKind::Channels => "channels",
        RuleKind::SenderKinds => "sender_kinds",
        RuleKind::Registration => "registration",
        RuleKind::Window => "window",
    }
}
