//! The pumping guard: SMS pumping shows as codes sent to a range of numbers that nobody
//! approves. The guard looks at the codes sent recently to the request's number prefix and
//! country, and at whether they were approved, and blocks the prefix (or the country) when
//! they look like a bot walking a range rather than people verifying their own numbers.
//!
//! Three rules, each a [`BlockRule`]:
//! - `sequential-numbers`: codes were sent in the last `sequence_window` to at least
//!   `sequence_min` other numbers within `sequence_span` of this one, none approved. People do
//!   not verify their neighbours' numbers; a bot walking a range does.
//! - `prefix-conversion`: the prefix had at least `prefix_min_unconverted` codes not approved
//!   in the last `window`, and fewer than `prefix_max_conversion_percent` of its codes were.
//! - `country-conversion`: the same for the whole country, with far higher volume. A country
//!   is never blocked as a whole (its honest users would be refused with the bot): it is put
//!   under watch, and its prefixes are judged at `strict` thresholds meanwhile.
//!
//! The conversion rules give a code [`PumpingGuard::conversion_grace`] (5 minutes) to be
//! approved before counting it as not approved, so that a burst of honest codes is not taken
//! for codes nobody enters; the sequence rule does not wait (a bot walking a range is fast).
//!
//! Numbers of the types pumping favours and that can still take a code (personal numbers,
//! UANs, VoIP numbers) are held to half the thresholds at `standard`, and refused at
//! `strict`; premium-rate, shared-cost and pager numbers never get a code at all (channel
//! choice refuses them).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::blocks::{BlockLadder, BlockRule, BlockTarget, Verdict};
use crate::classify::LineType;
use crate::routing::duration;

/// How hard the guard works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardLevel {
    /// No pumping guard.
    Off,
    /// Verdicts are recorded and reported as blocks that refuse nothing.
    Monitor,
    /// The default: thresholds an honest app does not reach.
    #[default]
    Standard,
    /// Lower thresholds; risky number types refused.
    Strict,
}

impl GuardLevel {
    /// The name configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardLevel::Off => "off",
            GuardLevel::Monitor => "monitor",
            GuardLevel::Standard => "standard",
            GuardLevel::Strict => "strict",
        }
    }
}

/// `[abuse.pumping]` as configured: a level, and any threshold of it replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PumpingConfig {
    /// `off`, `monitor`, `standard` (default) or `strict`.
    #[serde(default)]
    pub level: GuardLevel,
    /// Other numbers near this one with codes not approved that make a sequence.
    #[serde(default)]
    pub sequence_min: Option<u32>,
    /// How near (in numbers) counts as a neighbour.
    #[serde(default)]
    pub sequence_span: Option<u64>,
    /// Codes not approved in a prefix within the window that may block it.
    #[serde(default)]
    pub prefix_min_unconverted: Option<u32>,
    /// Conversion (percent of codes approved) below which a prefix with that many is blocked.
    #[serde(default)]
    pub prefix_max_conversion_percent: Option<u32>,
    /// Codes sent to a country within the window that may block it.
    #[serde(default)]
    pub country_min_sends: Option<u32>,
    /// Conversion below which a country with that many is blocked.
    #[serde(default)]
    pub country_max_conversion_percent: Option<u32>,
}

/// Why a pumping configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("abuse.pumping: {0}")]
pub struct PumpingConfigError(String);

/// A code sent recently to a number of the prefix looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentSend {
    /// The number (E.164).
    pub e164: String,
    /// Whether its verification was approved.
    pub approved: bool,
    /// When the verification started (unix ms).
    pub at_ms: i64,
}

/// Codes sent to a country in the guard's window, and how many were approved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountryActivity {
    /// Codes sent.
    pub sent: u64,
    /// Verifications approved.
    pub approved: u64,
}

/// The thresholds of the prefix rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Thresholds {
    sequence_min: u32,
    sequence_span: u64,
    prefix_min_unconverted: u32,
    prefix_max_conversion_percent: u32,
}

impl Thresholds {
    /// The thresholds of `level` (`strict`'s, or `standard`'s for the others).
    fn of(level: GuardLevel) -> Thresholds {
        if level == GuardLevel::Strict {
            Thresholds {
                sequence_min: 1,
                sequence_span: 1000,
                prefix_min_unconverted: 3,
                prefix_max_conversion_percent: 30,
            }
        } else {
            Thresholds {
                sequence_min: 2,
                sequence_span: 100,
                prefix_min_unconverted: 5,
                prefix_max_conversion_percent: 20,
            }
        }
    }

    /// The stricter of each threshold of the two.
    fn stricter(self, other: Thresholds) -> Thresholds {
        Thresholds {
            sequence_min: self.sequence_min.min(other.sequence_min),
            sequence_span: self.sequence_span.max(other.sequence_span),
            prefix_min_unconverted: self
                .prefix_min_unconverted
                .min(other.prefix_min_unconverted),
            prefix_max_conversion_percent: self
                .prefix_max_conversion_percent
                .max(other.prefix_max_conversion_percent),
        }
    }
}

/// The pumping guard in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PumpingGuard {
    level: GuardLevel,
    /// The window of the conversion rules.
    pub window: Duration,
    /// The window of the sequence rule.
    pub sequence_window: Duration,
    /// How long a code may wait for its approval before the conversion rules count it as not
    /// approved (people take a minute or two to enter a code; a burst of new codes is not yet
    /// a burst of codes nobody enters).
    pub conversion_grace: Duration,
    /// The prefix rules' thresholds.
    normal: Thresholds,
    /// The prefix rules' thresholds in a country under watch: `strict`'s.
    watched: Thresholds,
    country_min_sends: u32,
    country_max_conversion_percent: u32,
    /// How long its blocks last.
    pub ladder: BlockLadder,
}

impl Default for PumpingGuard {
    fn default() -> Self {
        PumpingGuard::from_config(&PumpingConfig::default()).expect("the defaults are valid")
    }
}

/// Line types pumping favours that can still take a code.
const RISKY_LINE_TYPES: [LineType; 3] = [LineType::PersonalNumber, LineType::Uan, LineType::Voip];

impl PumpingGuard {
    /// The guard of `config`'s level with its thresholds replaced where it says.
    pub fn from_config(config: &PumpingConfig) -> Result<PumpingGuard, PumpingConfigError> {
        let strict = config.level == GuardLevel::Strict;
        let preset = Thresholds::of(config.level);
        let normal = Thresholds {
            sequence_min: config.sequence_min.unwrap_or(preset.sequence_min),
            sequence_span: config.sequence_span.unwrap_or(preset.sequence_span),
            prefix_min_unconverted: config
                .prefix_min_unconverted
                .unwrap_or(preset.prefix_min_unconverted),
            prefix_max_conversion_percent: config
                .prefix_max_conversion_percent
                .unwrap_or(preset.prefix_max_conversion_percent),
        };
        let guard = PumpingGuard {
            level: config.level,
            window: Duration::from_secs(3600),
            sequence_window: Duration::from_secs(600),
            conversion_grace: Duration::from_secs(300),
            normal,
            watched: normal.stricter(Thresholds::of(GuardLevel::Strict)),
            country_min_sends: config
                .country_min_sends
                .unwrap_or(if strict { 200 } else { 1000 }),
            country_max_conversion_percent: config
                .country_max_conversion_percent
                .unwrap_or(if strict { 20 } else { 10 }),
            ladder: BlockLadder {
                first: Duration::from_secs(15 * 60),
                longest: Duration::from_secs(12 * 3600),
                memory: Duration::from_secs(24 * 3600),
            },
        };
        for (name, value) in [
            ("sequence_min", guard.normal.sequence_min),
            (
                "prefix_min_unconverted",
                guard.normal.prefix_min_unconverted,
            ),
            ("country_min_sends", guard.country_min_sends),
        ] {
            if value == 0 {
                return Err(PumpingConfigError(format!("{name} must be at least 1")));
            }
        }
        for (name, value) in [
            (
                "prefix_max_conversion_percent",
                guard.normal.prefix_max_conversion_percent,
            ),
            (
                "country_max_conversion_percent",
                guard.country_max_conversion_percent,
            ),
        ] {
            if value > 100 {
                return Err(PumpingConfigError(format!(
                    "{name} is a percentage, got {value}"
                )));
            }
        }
        if guard.normal.sequence_span == 0 {
            return Err(PumpingConfigError(
                "sequence_span must be at least 1".into(),
            ));
        }
        Ok(guard)
    }

    /// Its level.
    pub fn level(&self) -> GuardLevel {
        self.level
    }

    /// Whether it looks at requests at all.
    pub fn is_on(&self) -> bool {
        self.level != GuardLevel::Off
    }

    /// Whether its blocks refuse requests (not in `monitor`).
    pub fn enforces(&self) -> bool {
        matches!(self.level, GuardLevel::Standard | GuardLevel::Strict)
    }

    /// Why a number of `line_type` is refused outright (at `strict`, the types pumping
    /// favours), if it is.
    pub fn refuses_line_type(&self, line_type: Option<LineType>) -> Option<String> {
        let line_type = line_type?;
        (self.level == GuardLevel::Strict && RISKY_LINE_TYPES.contains(&line_type)).then(|| {
            format!(
                "pumping guard (strict): codes are not sent to {} numbers, a type SMS pumping \
                 favours; ask for a mobile number",
                line_type_name(line_type)
            )
        })
    }

    /// Whether the prefix rules find pumping in the codes sent to `e164`'s prefix
    /// (`prefix_sends`, the verifications of the prefix started in the last
    /// [`PumpingGuard::window`]), given one more code to `e164` now; `watched` when its
    /// country is under watch (strict thresholds). The sequence rule is asked first.
    pub fn judge(
        &self,
        e164: &str,
        prefix: &str,
        line_type: Option<LineType>,
        prefix_sends: &[RecentSend],
        watched: bool,
        now_ms: i64,
    ) -> Option<Verdict> {
        if !self.is_on() {
            return None;
        }
        let thresholds = if watched { self.watched } else { self.normal };
        let risky = line_type.is_some_and(|t| RISKY_LINE_TYPES.contains(&t));
        let scored = |threshold: u32| {
            if risky {
                threshold.div_ceil(2)
            } else {
                threshold
            }
        };
        let mut note = String::new();
        if watched {
            note.push_str("; strict while its country is under watch");
        }
        if risky {
            note.push_str(&format!(
                "; halved for a {} number",
                line_type_name(line_type.unwrap_or(LineType::Unknown))
            ));
        }
        if let Some(verdict) = self.sequence(
            e164,
            prefix,
            scored(thresholds.sequence_min),
            thresholds.sequence_span,
            &note,
            prefix_sends,
            now_ms,
        ) {
            return Some(verdict);
        }
        // Codes younger than the grace count once approved, not before.
        let since = now_ms - self.window.as_millis() as i64;
        let matured = now_ms - self.conversion_grace.as_millis() as i64;
        let counted = prefix_sends
            .iter()
            .filter(|send| send.at_ms >= since && (send.approved || send.at_ms <= matured));
        let (sent, approved) = counted.fold((0u64, 0u64), |(sent, approved), send| {
            (sent + 1, approved + u64::from(send.approved))
        });
        let min_unconverted = scored(thresholds.prefix_min_unconverted);
        if sent - approved >= u64::from(min_unconverted)
            && approved * 100 < u64::from(thresholds.prefix_max_conversion_percent) * sent
        {
            return Some(Verdict {
                target: BlockTarget::prefix(prefix),
                rule: BlockRule::PrefixConversion,
                reason: format!(
                    "{sent} codes sent to the prefix in the last {} (those under {} old once \
                     approved), {approved} approved ({}%, below {}%; {} not approved, at most \
                     {}{note})",
                    duration::format(self.window),
                    duration::format(self.conversion_grace),
                    percent(approved, sent),
                    thresholds.prefix_max_conversion_percent,
                    sent - approved,
                    min_unconverted - 1,
                ),
            });
        }
        None
    }

    /// Whether the country rule puts `region` under watch, given the codes sent to it more
    /// than [`PumpingGuard::conversion_grace`] ago in the window and the approvals in the
    /// window (`activity`). A country is never blocked as a whole (its honest users would be):
    /// under watch, its prefixes are judged at strict thresholds.
    pub fn judge_country(&self, region: &str, activity: CountryActivity) -> Option<Verdict> {
        if !self.is_on() {
            return None;
        }
        (activity.sent >= u64::from(self.country_min_sends)
            && activity.approved * 100
                < u64::from(self.country_max_conversion_percent) * activity.sent)
            .then(|| Verdict {
                target: BlockTarget::country(region),
                rule: BlockRule::CountryConversion,
                reason: format!(
                    "{} codes sent to {region} in the last {} (not counting the last {}), {} \
                     approved ({}%, below {}%)",
                    activity.sent,
                    duration::format(self.window),
                    duration::format(self.conversion_grace),
                    activity.approved,
                    percent(activity.approved, activity.sent),
                    self.country_max_conversion_percent,
                ),
            })
    }

    /// The sequence rule (see the module's documentation).
    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &self,
        e164: &str,
        prefix: &str,
        min: u32,
        span: u64,
        note: &str,
        prefix_sends: &[RecentSend],
        now_ms: i64,
    ) -> Option<Verdict> {
        let number = digits_of(e164)?;
        let since = now_ms - self.sequence_window.as_millis() as i64;
        let mut neighbours: Vec<&str> = prefix_sends
            .iter()
            .filter(|send| send.at_ms >= since && !send.approved && send.e164 != e164)
            .filter(|send| {
                digits_of(&send.e164).is_some_and(|other| other.abs_diff(number) <= span)
            })
            .map(|send| send.e164.as_str())
            .collect();
        neighbours.sort_unstable();
        neighbours.dedup();
        if neighbours.len() < min as usize {
            return None;
        }
        Some(Verdict {
            target: BlockTarget::prefix(prefix),
            rule: BlockRule::SequentialNumbers,
            reason: format!(
                "codes sent in the last {} to {} other numbers within {} of this one, none \
                 approved (at most {}{note})",
                duration::format(self.sequence_window),
                neighbours.len(),
                span,
                min - 1,
            ),
        })
    }

    /// One line for `--check-config` and the logs.
    pub fn describe(&self) -> String {
        if !self.is_on() {
            return "pumping guard: off".into();
        }
        format!(
            "pumping guard: {} (sequence: {} neighbours within {} in {}; prefix: {} not \
             approved and under {}% in {}; country under watch at {} sent and under {}%; \
             blocks {} doubling to {})",
            self.level.as_str(),
            self.normal.sequence_min,
            self.normal.sequence_span,
            duration::format(self.sequence_window),
            self.normal.prefix_min_unconverted,
            self.normal.prefix_max_conversion_percent,
            duration::format(self.window),
            self.country_min_sends,
            self.country_max_conversion_percent,
            duration::format(self.ladder.first),
            duration::format(self.ladder.longest),
        )
    }
}

/// The digits of an E.164 number as one integer (numbers of one prefix differ in their last
/// digits, so their distance is the difference).
fn digits_of(e164: &str) -> Option<u64> {
    e164.strip_prefix('+')?.parse().ok()
}

fn percent(part: u64, whole: u64) -> u64 {
    (part * 100).checked_div(whole).unwrap_or(0)
}

fn line_type_name(line_type: LineType) -> &'static str {
    match line_type {
        LineType::PersonalNumber => "personal",
        LineType::Uan => "universal access (UAN)",
        LineType::Voip => "VoIP",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn send(e164: &str, approved: bool, at_ms: i64) -> RecentSend {
        RecentSend {
            e164: e164.into(),
            approved,
            at_ms,
        }
    }

    fn guard(level: GuardLevel) -> PumpingGuard {
        PumpingGuard::from_config(&PumpingConfig {
            level,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn a_bot_walking_a_range_is_stopped_at_its_third_number() {
        let guard = guard(GuardLevel::Standard);
        let now = 600 * MINUTE;
        let mut sent = Vec::new();
        let mut allowed = 0;
        for n in 0..50 {
            let e164 = format!("+447400123{n:03}");
            if guard
                .judge(
                    &e164,
                    "+447400123",
                    Some(LineType::Mobile),
                    &sent,
                    false,
                    now,
                )
                .is_none()
            {
                allowed += 1;
                sent.push(send(&e164, false, now));
            }
        }
        assert_eq!(allowed, 2);
        let verdict = guard
            .judge("+447400123010", "+447400123", None, &sent, false, now)
            .unwrap();
        assert_eq!(verdict.rule, BlockRule::SequentialNumbers);
        assert_eq!(verdict.target, BlockTarget::prefix("+447400123"));
        assert_eq!(
            verdict.reason,
            "codes sent in the last 10m to 2 other numbers within 100 of this one, none \
             approved (at most 1)"
        );
    }

    #[test]
    fn honest_neighbours_who_approve_or_are_far_apart_or_long_ago_are_not_a_sequence() {
        let guard = guard(GuardLevel::Standard);
        let now = 600 * MINUTE;
        let sends = [
            send("+447400123001", true, now - MINUTE),
            send("+447400123002", true, now - MINUTE),
            send("+447400123500", false, now - MINUTE),
            send("+447400123003", false, now - 11 * MINUTE),
            send("+447400123004", false, now - 2 * MINUTE),
        ];
        assert_eq!(
            guard.judge("+447400123005", "+447400123", None, &sends, false, now),
            None
        );
    }

    #[test]
    fn a_prefix_with_many_codes_and_few_approved_is_blocked() {
        let guard = guard(GuardLevel::Standard);
        let now = 600 * MINUTE;
        // Spread over the prefix (no sequence), over the hour.
        let mut sends: Vec<RecentSend> = (0..5)
            .map(|n| {
                send(
                    &format!("+447400123{:03}", n * 200),
                    false,
                    now - (n + 20) * MINUTE,
                )
            })
            .collect();
        let verdict = guard
            .judge("+447400123999", "+447400123", None, &sends, false, now)
            .unwrap();
        assert_eq!(verdict.rule, BlockRule::PrefixConversion);
        assert_eq!(
            verdict.reason,
            "5 codes sent to the prefix in the last 1h (those under 5m old once approved), 0 \
             approved (0%, below 20%; 5 not approved, at most 4)"
        );
        // With enough of them approved, it converts: no block.
        sends.extend((0..2).map(|n| send(&format!("+447400123{:03}", 150 + n * 200), true, now)));
        assert_eq!(
            guard.judge("+447400123999", "+447400123", None, &sends, false, now),
            None
        );
    }

    #[test]
    fn a_country_converting_badly_is_watched_and_its_prefixes_judged_strictly() {
        let guard = guard(GuardLevel::Standard);
        let now = 600 * MINUTE;
        let busy = CountryActivity {
            sent: 1000,
            approved: 99,
        };
        let verdict = guard.judge_country("NG", busy).unwrap();
        assert_eq!(verdict.target, BlockTarget::country("NG"));
        assert_eq!(verdict.rule, BlockRule::CountryConversion);
        assert_eq!(
            verdict.reason,
            "1000 codes sent to NG in the last 1h (not counting the last 5m), 99 approved (9%, \
             below 10%)"
        );
        let healthy = CountryActivity {
            sent: 1000,
            approved: 600,
        };
        assert_eq!(guard.judge_country("NG", healthy), None);
        // Under watch, one neighbour within 1,000 is a sequence.
        let one = [send("+2348031234001", false, now)];
        assert_eq!(
            guard.judge("+2348031234900", "+2348031234", None, &one, false, now),
            None
        );
        let verdict = guard
            .judge("+2348031234900", "+2348031234", None, &one, true, now)
            .unwrap();
        assert!(
            verdict
                .reason
                .ends_with("(at most 0; strict while its country is under watch)"),
            "{}",
            verdict.reason
        );
        // A code younger than the grace is not yet a code nobody entered.
        let fresh: Vec<RecentSend> = (0..6)
            .map(|n| send(&format!("+447400123{:03}", n * 150), false, now - MINUTE))
            .collect();
        assert_eq!(
            guard.judge("+447400123999", "+447400123", None, &fresh, false, now),
            None
        );
        // A personal number is held to half the sequence threshold: one neighbour is enough.
        let one = [send("+447000123001", false, now)];
        let verdict = guard
            .judge(
                "+447000123002",
                "+447000123",
                Some(LineType::PersonalNumber),
                &one,
                false,
                now,
            )
            .unwrap();
        assert!(
            verdict
                .reason
                .ends_with("(at most 0; halved for a personal number)")
        );
        assert!(
            guard
                .refuses_line_type(Some(LineType::PersonalNumber))
                .is_none()
        );
        assert!(
            super::super::pumping::PumpingGuard::from_config(&PumpingConfig {
                level: GuardLevel::Strict,
                ..Default::default()
            })
            .unwrap()
            .refuses_line_type(Some(LineType::PersonalNumber))
            .is_some()
        );
    }

    #[test]
    fn off_judges_nothing_and_monitor_judges_without_enforcing() {
        let now = 600 * MINUTE;
        let sends = [
            send("+447400123001", false, now),
            send("+447400123002", false, now),
        ];
        assert_eq!(
            guard(GuardLevel::Off).judge("+447400123003", "+447400123", None, &sends, false, now),
            None
        );
        let monitor = guard(GuardLevel::Monitor);
        assert!(!monitor.enforces());
        assert!(
            monitor
                .judge("+447400123003", "+447400123", None, &sends, false, now)
                .is_some()
        );
        assert!(
            PumpingGuard::from_config(&PumpingConfig {
                prefix_max_conversion_percent: Some(120),
                ..Default::default()
            })
            .is_err()
        );
    }
}
