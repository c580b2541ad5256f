//! Code guessing: wrong codes checked for one number count together across its verifications,
//! and a number that reaches the limit is cooled off (no new code, no check) for a time that
//! doubles on each repeat. A bot trying codes against one number therefore gets a few tries,
//! then waits 1 minute, 2, 4, 8 ... (its tests simulate an hour and a day of it).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::blocks::{BlockLadder, BlockRule, BlockTarget, Verdict};
use crate::routing::duration;

/// `[abuse.guessing]` as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuessingConfig {
    /// `false` switches the cool-off off (each verification still allows its own checks).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Wrong codes for one number, across its verifications, that start a cool-off.
    #[serde(default = "wrong_checks")]
    pub wrong_checks: u32,
    /// The window they are counted in.
    #[serde(default = "window", with = "duration::text")]
    pub window: Duration,
    /// The first cool-off; each repeat within a day doubles it.
    #[serde(default = "first_cool_off", with = "duration::text")]
    pub first_cool_off: Duration,
    /// The longest cool-off.
    #[serde(default = "longest_cool_off", with = "duration::text")]
    pub longest_cool_off: Duration,
}

fn yes() -> bool {
    true
}
fn wrong_checks() -> u32 {
    5
}
fn window() -> Duration {
    Duration::from_secs(3600)
}
fn first_cool_off() -> Duration {
    Duration::from_secs(60)
}
fn longest_cool_off() -> Duration {
    Duration::from_secs(12 * 3600)
}

impl Default for GuessingConfig {
    fn default() -> Self {
        GuessingConfig {
            enabled: true,
            wrong_checks: wrong_checks(),
            window: window(),
            first_cool_off: first_cool_off(),
            longest_cool_off: longest_cool_off(),
        }
    }
}

/// Why a guessing configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("abuse.guessing: {0}")]
pub struct GuessingConfigError(String);

/// The guessing guard in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuessingGuard {
    enabled: bool,
    wrong_checks: u32,
    /// The window wrong codes are counted in.
    pub window: Duration,
    /// How long cool-offs last.
    pub ladder: BlockLadder,
}

impl Default for GuessingGuard {
    fn default() -> Self {
        GuessingGuard::from_config(&GuessingConfig::default()).expect("the defaults are valid")
    }
}

impl GuessingGuard {
    /// The guard `config` describes, checked.
    pub fn from_config(config: &GuessingConfig) -> Result<GuessingGuard, GuessingConfigError> {
        if config.wrong_checks == 0 {
            return Err(GuessingConfigError(
                "wrong_checks must be at least 1".into(),
            ));
        }
        if config.window < Duration::from_secs(60) || config.window > super::limits::MAX_WINDOW {
            return Err(GuessingConfigError(
                "window must be between 1m and 168h".into(),
            ));
        }
        if config.first_cool_off < Duration::from_secs(1)
            || config.longest_cool_off < config.first_cool_off
        {
            return Err(GuessingConfigError(
                "first_cool_off must be at least 1s and at most longest_cool_off".into(),
            ));
        }
        Ok(GuessingGuard {
            enabled: config.enabled,
            wrong_checks: config.wrong_checks,
            window: config.window,
            ladder: BlockLadder {
                first: config.first_cool_off,
                longest: config.longest_cool_off,
                memory: Duration::from_secs(24 * 3600),
            },
        })
    }

    /// Whether wrong codes are counted at all.
    pub fn is_on(&self) -> bool {
        self.enabled
    }

    /// Whether `wrong` wrong codes checked for `e164` within the window (this one included,
    /// since its last cool-off began) cool the number off.
    pub fn judge(&self, e164: &str, wrong: u32) -> Option<Verdict> {
        (self.enabled && wrong >= self.wrong_checks).then(|| Verdict {
            target: BlockTarget::number(e164),
            rule: BlockRule::Guessing,
            reason: format!(
                "{wrong} wrong codes checked for this number in the last {}, across its \
                 verifications (at most {})",
                duration::format(self.window),
                self.wrong_checks - 1
            ),
        })
    }

    /// One line for `--check-config` and the logs.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "guessing cool-off: off".into();
        }
        format!(
            "guessing cool-off: {} wrong codes per number in {}, then {} doubling to {}",
            self.wrong_checks,
            duration::format(self.window),
            duration::format(self.ladder.first),
            duration::format(self.ladder.longest)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_wrong_code_cools_the_number_off() {
        let guard = GuessingGuard::default();
        assert_eq!(guard.judge("+447400123456", 4), None);
        let verdict = guard.judge("+447400123456", 5).unwrap();
        assert_eq!(verdict.target, BlockTarget::number("+447400123456"));
        assert_eq!(
            verdict.reason,
            "5 wrong codes checked for this number in the last 1h, across its verifications \
             (at most 4)"
        );
        let lengths: Vec<String> = (1..=7)
            .map(|strike| duration::format(guard.ladder.length(strike)))
            .collect();
        assert_eq!(lengths, ["1m", "2m", "4m", "8m", "16m", "32m", "64m"]);
    }

    /// The tries of a bot guessing codes against one number for `span_ms`, simulated second by
    /// second: it checks a wrong code each second it is not cooled off (a new verification
    /// gives it a new code whenever one runs out of checks).
    fn tries_within(guard: &GuessingGuard, span_ms: i64) -> u64 {
        let mut now = 0i64;
        let mut tries = 0u64;
        let mut wrong_since_cool_off = 0u32;
        let mut cooled_until = 0i64;
        let mut strike = 0u32;
        while now < span_ms {
            if now < cooled_until {
                now = cooled_until;
                continue;
            }
            tries += 1;
            wrong_since_cool_off += 1;
            if guard.judge("+447400123456", wrong_since_cool_off).is_some() {
                strike += 1;
                cooled_until = now + guard.ladder.length(strike).as_millis() as i64;
                wrong_since_cool_off = 0;
            }
            now += 1000;
        }
        tries
    }

    #[test]
    fn an_hour_of_guessing_has_less_than_one_chance_in_ten_thousand() {
        let guard = GuessingGuard::default();
        let tries = tries_within(&guard, 3_600_000);
        assert_eq!(tries, 30);
        // A day: cool-offs of 1 + 2 + ... + 512 minutes end 17 h in, the next lasts 12 h.
        assert_eq!(tries_within(&guard, 24 * 3_600_000), 55);
        // Each try is right with probability 1 in 10^6.
        let chance = tries as f64 / 1e6;
        assert!(chance < 1e-4, "{chance}");
    }
}
