//! Country rules as data: which channels, senders and registrations a country requires, and
//! when (in the recipient's local time) each category of message may be sent.
//!
//! Rules ship in `policy/rules/*.toml` (embedded in the binary) and configuration can replace,
//! add or remove them. [`RuleSet::evaluate`] answers per message, on an injected clock: send
//! now, defer to an instant, or reject, always naming the rule and its source.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use verify_policy::rules::{Category, Decision, Message, Program, RuleSet};
//! use verify_policy::Channel;
//!
//! let rules = RuleSet::builtin();
//! let program = Program::new("shop");
//! let zones = vec!["America/New_York".to_string()];
//! let message = Message {
//!     region: "US",
//!     time_zones: &zones,
//!     category: Category::Marketing,
//!     channel: Channel::Sms,
//!     sender: None,
//!     program: &program,
//!     template: None,
//! };
//! // 21:30 in New York: after the TCPA's 21:00.
//! let now = Utc.with_ymd_and_hms(2026, 11, 26, 2, 30, 0).unwrap();
//! let decision = rules.evaluate(&message, now);
//! assert!(matches!(decision, Decision::Defer { .. }), "{}", decision.explain());
//! ```

mod decision;
mod file;
mod message;
mod window;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use decision::{Concern, Decision, RuleRef};
pub use file::{CountryFile, Requirement, RuleKind, RuleSpec, RulesError};
pub use message::{Category, Message, Program, Registration, Sender, SenderKind};

use file::{Effect, Rule, check_country, compile_rule, compile_zones, parse_zone};
use window::{SEARCH_DAYS, Schedule, next_allowed};

/// The rule files shipped with verifyd, embedded so the binary needs no files at run time.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "policy/rules/defaults.toml",
        include_str!("../../rules/defaults.toml"),
    ),
    ("policy/rules/BR.toml", include_str!("../../rules/BR.toml")),
    ("policy/rules/CA.toml", include_str!("../../rules/CA.toml")),
    ("policy/rules/CN.toml", include_str!("../../rules/CN.toml")),
    ("policy/rules/DE.toml", include_str!("../../rules/DE.toml")),
    ("policy/rules/FR.toml", include_str!("../../rules/FR.toml")),
    ("policy/rules/GB.toml", include_str!("../../rules/GB.toml")),
    ("policy/rules/HN.toml", include_str!("../../rules/HN.toml")),
    ("policy/rules/ID.toml", include_str!("../../rules/ID.toml")),
    ("policy/rules/IN.toml", include_str!("../../rules/IN.toml")),
    ("policy/rules/JP.toml", include_str!("../../rules/JP.toml")),
    ("policy/rules/MX.toml", include_str!("../../rules/MX.toml")),
    ("policy/rules/NG.toml", include_str!("../../rules/NG.toml")),
    ("policy/rules/SV.toml", include_str!("../../rules/SV.toml")),
    ("policy/rules/US.toml", include_str!("../../rules/US.toml")),
];

/// The `[policy.rules]` table of the server configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Start from the shipped rules (`policy/rules/*.toml`); `false` starts empty.
    #[serde(default = "yes")]
    pub builtin: bool,
    /// Regions to which nothing is sent, e.g. `["KP"]`. None by default.
    #[serde(default)]
    pub blocked_countries: Vec<String>,
    /// Per-country overrides, in the rule file format, applied in order.
    #[serde(default, rename = "override")]
    pub overrides: Vec<CountryFile>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            builtin: true,
            blocked_countries: Vec::new(),
            overrides: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The rules of one country (or of every country, for the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CountryRules {
    name: Option<String>,
    zones: Vec<Tz>,
    rules: Vec<Rule>,
    /// `default.*` rules this country opts out of.
    removed_defaults: Vec<String>,
}

/// Every country's rules, ready to evaluate messages against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    defaults: CountryRules,
    countries: BTreeMap<String, CountryRules>,
}

/// The outcome of checking one refusal rule.
enum Check {
    Pass,
    Skipped,
    Refuse(Concern, String),
}

impl RuleSet {
    /// A set with no rules: everything is sent now.
    pub fn empty() -> RuleSet {
        RuleSet::default()
    }

    /// The shipped rules. Every shipped file is checked by the crate's tests, so this does not
    /// fail in a released build.
    pub fn builtin() -> RuleSet {
        let mut set = RuleSet::empty();
        for (origin, text) in BUILTIN_FILES {
            if let Err(error) = set.merge_toml(origin, text) {
                panic!("shipped rule file is invalid: {error}");
            }
        }
        set
    }

    /// The shipped rules (unless `builtin = false`), then the configured overrides and
    /// blocked countries. Errors name the override (`policy.rules.override[2]`) and field.
    pub fn from_config(config: &RulesConfig) -> Result<RuleSet, RulesError> {
        let mut set = if config.builtin {
            RuleSet::builtin()
        } else {
            RuleSet::empty()
        };
        for (index, file) in config.overrides.iter().enumerate() {
            set.merge(&format!("policy.rules.override[{index}]"), file)?;
        }
        for region in &config.blocked_countries {
            set.block_country(region)?;
        }
        Ok(set)
    }

    /// Parses a rule file (or override) in TOML and merges it; `origin` names it in errors.
    pub fn merge_toml(&mut self, origin: &str, text: &str) -> Result<(), RulesError> {
        let file: CountryFile =
            toml::from_str(text).map_err(|e| RulesError::new(origin, e.to_string()))?;
        self.merge(origin, &file)
    }

    /// Merges one country's rules: a rule with a known id replaces it, a new id is added,
    /// `remove` drops rules, `time_zones` and `name` replace the old ones when given. On error
    /// the set is unchanged.
    pub fn merge(&mut self, origin: &str, file: &CountryFile) -> Result<(), RulesError> {
        let country = file.country.as_str();
        check_country(origin, country)?;
        let mut entry = if country == "*" {
            self.defaults.clone()
        } else {
            self.countries.get(country).cloned().unwrap_or_default()
        };
        if let Some(name) = &file.name {
            entry.name = Some(name.clone());
        }
        if let Some(zones) = &file.time_zones {
            entry.zones = compile_zones(origin, zones)?;
        }
        for id in &file.remove {
            if let Some(at) = entry.rules.iter().position(|r| &*r.meta.id == id) {
                entry.rules.remove(at);
            } else if country != "*" && self.defaults.rules.iter().any(|r| &*r.meta.id == id) {
                if !entry.removed_defaults.contains(id) {
                    entry.removed_defaults.push(id.clone());
                }
            } else {
                return Err(RulesError::new(
                    origin,
                    format!("field `remove`: there is no rule `{id}` to remove for {country}"),
                ));
            }
        }
        let mut seen: Vec<&str> = Vec::with_capacity(file.rules.len());
        for spec in &file.rules {
            if seen.contains(&spec.id.as_str()) {
                return Err(RulesError::new(
                    origin,
                    format!("rule `{}`: field `id`: used twice in one file", spec.id),
                ));
            }
            seen.push(&spec.id);
            let rule = compile_rule(origin, country, spec)?;
            match entry.rules.iter_mut().find(|r| r.meta.id == rule.meta.id) {
                Some(old) => *old = rule,
                None => entry.rules.push(rule),
            }
        }
        if country != "*"
            && entry.zones.is_empty()
            && let Some(rule) = entry.rules.iter().find(|r| r.kind == RuleKind::Window)
        {
            return Err(RulesError::new(
                origin,
                format!(
                    "field `time_zones`: required, since rule `{}` is a window in local time",
                    rule.meta.id
                ),
            ));
        }
        if country == "*" {
            self.defaults = entry;
        } else {
            self.countries.insert(country.to_string(), entry);
        }
        Ok(())
    }

    /// Blocks every message to `region` (the `blocked_countries` setting), with the rule
    /// `<REGION>.config.blocked`.
    pub fn block_country(&mut self, region: &str) -> Result<(), RulesError> {
        let origin = "policy.rules.blocked_countries";
        check_country(origin, region)?;
        if region == "*" {
            return Err(RulesError::new(
                origin,
                "`*` would block every country; list regions",
            ));
        }
        let spec = RuleSpec {
            id: format!("{region}.config.blocked"),
            kind: RuleKind::Block,
            reason: format!("the operator of this server does not send to {region}"),
            source: "verifyd configuration ([policy.rules] blocked_countries)".into(),
            url: None,
            categories: None,
            channels: None,
            allowed_channels: None,
            allowed_senders: None,
            require: None,
            sender_kinds: None,
            windows: None,
        };
        let rule = compile_rule(origin, region, &spec)?;
        let entry = self.countries.entry(region.to_string()).or_default();
        entry.rules.retain(|r| r.meta.id != rule.meta.id);
        entry.rules.insert(0, rule);
        Ok(())
    }

    /// The country's name as its rule file gives it, for listings.
    pub fn country_name(&self, region: &str) -> Option<&str> {
        self.countries.get(region)?.name.as_deref()
    }

    /// Regions with rules of their own.
    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.countries.keys().map(String::as_str)
    }

    /// The rules that apply to `region` (defaults it keeps, then its own), for listings.
    pub fn rules(&self, region: &str) -> impl Iterator<Item = &RuleRef> {
        self.effective(region).map(|rule| &rule.meta)
    }

    fn effective<'s>(&'s self, region: &str) -> impl Iterator<Item = &'s Rule> + Clone + 's {
        let country = self.countries.get(region);
        let removed: &'s [String] = country.map_or(&[], |c| c.removed_defaults.as_slice());
        self.defaults
            .rules
            .iter()
            .filter(move |rule| !removed.iter().any(|id| **id == *rule.meta.id))
            .chain(country.into_iter().flat_map(|c| c.rules.iter()))
    }

    /// Decides on `message` at `now`. Refusals (blocked country, channel, sender kind,
    /// registrations) come first; then windows, which defer to the first instant allowed in
    /// every one of the number's zones. Reads no clock of its own.
    pub fn evaluate(&self, message: &Message<'_>, now: DateTime<Utc>) -> Decision {
        self.decide(message, now, true)
    }

    /// Like [`RuleSet::evaluate`], without the registration rules: for a message whose sending
    /// program is not known (a Verify that names none), so only blocks, channels, sender kinds
    /// and windows apply.
    pub fn evaluate_unregistered(&self, message: &Message<'_>, now: DateTime<Utc>) -> Decision {
        self.decide(message, now, false)
    }

    fn decide(&self, message: &Message<'_>, now: DateTime<Utc>, registrations: bool) -> Decision {
        let in_scope = self
            .effective(message.region)
            .filter(|rule| rule.applies(message.category, message.channel));
        let mut applied = Vec::new();
        let mut entity_id = None;
        let mut template_id = None;
        for kind in [
            RuleKind::Block,
            RuleKind::Channels,
            RuleKind::SenderKinds,
            RuleKind::Registration,
        ] {
            if kind == RuleKind::Registration && !registrations {
                continue;
            }
            for rule in in_scope.clone().filter(|rule| rule.kind == kind) {
                match check(rule, message, &mut entity_id, &mut template_id) {
                    Check::Pass => applied.push(rule.meta.clone()),
                    Check::Skipped => {}
                    Check::Refuse(concern, reason) => {
                        return Decision::Reject {
                            rule: rule.meta.clone(),
                            concern,
                            reason,
                        };
                    }
                }
            }
        }
        let windows = in_scope.filter_map(|rule| match &rule.effect {
            Effect::Window(schedule) => Some((rule, schedule)),
            _ => None,
        });
        if windows.clone().next().is_some() {
            let zones = self.zones(message);
            let outside = windows.clone().find_map(|(rule, schedule)| {
                zones
                    .iter()
                    .find(|&&zone| !schedule.allows(zone, now))
                    .map(|&zone| (rule, schedule, zone))
            });
            if let Some((rule, schedule, zone)) = outside {
                let schedules: Vec<&Schedule> = windows.map(|(_, s)| s).collect();
                return defer_or_reject(message, now, rule, schedule, zone, &zones, &schedules);
            }
            applied.extend(windows.map(|(rule, _)| rule.meta.clone()));
        }
        Decision::SendNow {
            applied,
            entity_id,
            template_id,
        }
    }

    /// The number's zones, or the country's when none of them is known.
    fn zones(&self, message: &Message<'_>) -> Vec<Tz> {
        let mut zones: Vec<Tz> = Vec::with_capacity(message.time_zones.len().max(1));
        for zone in message
            .time_zones
            .iter()
            .filter_map(|name| parse_zone(name))
        {
            if !zones.contains(&zone) {
                zones.push(zone);
            }
        }
        if zones.is_empty()
            && let Some(country) = self.countries.get(message.region)
        {
            zones.extend_from_slice(&country.zones);
        }
        if zones.is_empty() {
            zones.push(Tz::UTC);
        }
        zones
    }
}

fn defer_or_reject(
    message: &Message<'_>,
    now: DateTime<Utc>,
    rule: &Rule,
    schedule: &Schedule,
    zone: Tz,
    zones: &[Tz],
    schedules: &[&Schedule],
) -> Decision {
    let local = now.with_timezone(&zone);
    let uses_days = schedule.text.bytes().any(|b| b.is_ascii_alphabetic());
    let clock = if uses_days {
        local.format("%a %H:%M")
    } else {
        local.format("%H:%M")
    };
    let detail = format!(
        "{} to {} at {clock} {}",
        message.category,
        message.region,
        zone.name()
    );
    match next_allowed(schedules, zones, now) {
        Some(until) => Decision::Defer {
            until,
            rule: rule.meta.clone(),
            local_window: schedule.text.clone(),
            detail,
        },
        None => Decision::Reject {
            rule: rule.meta.clone(),
            concern: Concern::Timing,
            reason: format!(
                "{detail} is outside {}, and no time in the next {SEARCH_DAYS} days is inside the windows in all of the number's zones ({})",
                schedule.text,
                zones
                    .iter()
                    .map(|z| z.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

/// Checks one refusal rule; records the registration IDs it required.
fn check(
    rule: &Rule,
    message: &Message<'_>,
    entity_id: &mut Option<String>,
    template_id: &mut Option<String>,
) -> Check {
    let region = message.region;
    match &rule.effect {
        Effect::Block => Check::Refuse(
            Concern::Destination,
            format!("messages to {region} are blocked"),
        ),
        Effect::Channels(allowed) => {
            if allowed & file::channel_bit(message.channel) != 0 {
                Check::Pass
            } else {
                Check::Refuse(
                    Concern::Channel,
                    format!(
                        "{} messages to {region} cannot go by {}",
                        message.category, message.channel
                    ),
                )
            }
        }
        Effect::SenderKinds(allowed) => match message.sender {
            None => Check::Skipped,
            Some(sender) if allowed & sender.kind.bit() != 0 => Check::Pass,
            Some(sender) => Check::Refuse(
                Concern::Sender,
                format!(
                    "{} {} sender ({}) cannot send {} to {region} numbers; use one of: {}",
                    if sender.kind == SenderKind::Alphanumeric {
                        "an"
                    } else {
                        "a"
                    },
                    sender.kind.as_str().replace('_', " "),
                    sender.address,
                    message.channel,
                    SenderKind::ALL
                        .iter()
                        .filter(|k| allowed & k.bit() != 0)
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        },
        Effect::Registration {
            entity,
            template,
            sender_kinds,
        } => {
            let program = message.program;
            let registration = program.registration(region);
            if *entity {
                match registration
                    .and_then(|r| r.entity_id.as_deref())
                    .filter(|id| !id.is_empty())
                {
                    Some(id) => *entity_id = Some(id.to_string()),
                    None => {
                        return Check::Refuse(
                            Concern::Program,
                            format!(
                                "program `{}` has no registered entity ID for {region}, which every {} {} there needs",
                                program.id, message.category, message.channel
                            ),
                        );
                    }
                }
            }
            if *template {
                match registration.and_then(|r| r.template_id(message.template, message.category)) {
                    Some(id) => *template_id = Some(id.to_string()),
                    None => {
                        let name = message
                            .template
                            .map_or(String::new(), |t| format!("`{t}` or "));
                        return Check::Refuse(
                            Concern::Template,
                            format!(
                                "program `{}` has no registered template ID for {name}{} messages to {region}",
                                program.id, message.category
                            ),
                        );
                    }
                }
            }
            if let Some(kinds) = sender_kinds {
                match message.sender {
                    None if !*entity && !*template => return Check::Skipped,
                    Some(sender) if kinds & sender.kind.bit() != 0 => {
                        let registered = registration
                            .is_some_and(|r| r.senders.iter().any(|s| s == sender.address));
                        if !registered {
                            return Check::Refuse(
                                Concern::Sender,
                                format!(
                                    "sender `{}` is not registered for program `{}` in {region}",
                                    sender.address, program.id
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            }
            Check::Pass
        }
        Effect::Window(_) => Check::Pass,
    }
}
