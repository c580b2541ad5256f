//! Blocks: a destination (a number, a number prefix, a country) that a rule stopped for a time.
//! A block that comes back within its rule's memory lasts longer each time, so that an attack
//! that waits out the first block meets a longer one.

use std::time::Duration;

use verify_carrier::mask_number;

use super::KeyKind;
use super::limits::wait_as_text;
use crate::routing::duration;

/// The rule that blocked a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockRule {
    /// Codes sent to neighbouring numbers of one prefix in a short time, none approved: a bot
    /// walking a number range.
    SequentialNumbers,
    /// A number prefix with many codes sent and few approved.
    PrefixConversion,
    /// A country with many codes sent and few approved.
    CountryConversion,
    /// Too many wrong codes checked for one number, across its verifications.
    Guessing,
}

impl BlockRule {
    /// The rule's name, as blocks, events and configuration show it.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockRule::SequentialNumbers => "sequential-numbers",
            BlockRule::PrefixConversion => "prefix-conversion",
            BlockRule::CountryConversion => "country-conversion",
            BlockRule::Guessing => "guessing",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<BlockRule> {
        [
            BlockRule::SequentialNumbers,
            BlockRule::PrefixConversion,
            BlockRule::CountryConversion,
            BlockRule::Guessing,
        ]
        .into_iter()
        .find(|rule| rule.as_str() == text)
    }
}

impl std::fmt::Display for BlockRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a block stops: Verify for a number, for every number of a prefix, or for a country.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockTarget {
    /// A number, a number prefix or a country.
    pub kind: KeyKind,
    /// `+447400123456`, `+447400123`, `GB`.
    pub value: String,
}

impl BlockTarget {
    /// A number.
    pub fn number(e164: &str) -> BlockTarget {
        BlockTarget {
            kind: KeyKind::Number,
            value: e164.to_string(),
        }
    }

    /// A number prefix.
    pub fn prefix(prefix: &str) -> BlockTarget {
        BlockTarget {
            kind: KeyKind::NumberPrefix,
            value: prefix.to_string(),
        }
    }

    /// A country.
    pub fn country(region: &str) -> BlockTarget {
        BlockTarget {
            kind: KeyKind::Country,
            value: region.to_string(),
        }
    }

    /// The key the store finds it by: `kind:value`.
    pub fn storage_key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.value)
    }

    /// Parses a stored key.
    pub fn from_storage_key(key: &str) -> Option<BlockTarget> {
        let (kind, value) = key.split_once(':')?;
        let kind = match kind {
            "number" => KeyKind::Number,
            "number_prefix" => KeyKind::NumberPrefix,
            "country" => KeyKind::Country,
            _ => return None,
        };
        Some(BlockTarget {
            kind,
            value: value.to_string(),
        })
    }

    /// As a refusal or a log shows it: `number_prefix +447400123***` (a number masked).
    pub fn shown(&self) -> String {
        match self.kind {
            KeyKind::Number => format!("number {}", mask_number(&self.value)),
            KeyKind::NumberPrefix => format!("number_prefix {}***", self.value),
            kind => format!("{} {}", kind.as_str(), self.value),
        }
    }
}

/// How long blocks last: `first`, doubled for each earlier block of the same destination by
/// the same rule that started within `memory`, at most `longest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLadder {
    /// The first block's length.
    pub first: Duration,
    /// The longest a block lasts.
    pub longest: Duration,
    /// How long an earlier block makes the next one longer.
    pub memory: Duration,
}

impl BlockLadder {
    /// The length of the `strike`-th block (1 for the first).
    pub fn length(&self, strike: u32) -> Duration {
        let doublings = strike.saturating_sub(1).min(30);
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.longest)
    }

    /// The strike a new block of `target` by `rule` would be, given the blocks of it that
    /// started in the last `memory` (others are ignored).
    pub fn next_strike(
        &self,
        target: &BlockTarget,
        rule: BlockRule,
        earlier: &[Block],
        now_ms: i64,
    ) -> u32 {
        let since = now_ms - self.memory.as_millis() as i64;
        let earlier = earlier
            .iter()
            .filter(|b| &b.target == target && b.rule == rule && b.started_ms >= since)
            .map(|b| b.strike)
            .max()
            .unwrap_or(0);
        earlier + 1
    }
}

/// What a rule found: the destination to block and why, with the counts and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to block.
    pub target: BlockTarget,
    /// The rule that found it.
    pub rule: BlockRule,
    /// The counts and window that triggered it, in one sentence.
    pub reason: String,
}

impl Verdict {
    /// The block this verdict starts now: the `strike`-th, lasting as `ladder` says;
    /// `enforced` is false when the guard only monitors.
    pub fn into_block(
        self,
        id: String,
        strike: u32,
        ladder: &BlockLadder,
        enforced: bool,
        now_ms: i64,
    ) -> Block {
        Block {
            id,
            ends_ms: now_ms + ladder.length(strike).as_millis() as i64,
            target: self.target,
            rule: self.rule,
            reason: self.reason,
            strike,
            enforced,
            started_ms: now_ms,
            lifted_ms: None,
            lifted_by: None,
        }
    }
}

/// A destination stopped by a rule for a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// `blk_...`.
    pub id: String,
    /// What it stops.
    pub target: BlockTarget,
    /// The rule that started it.
    pub rule: BlockRule,
    /// The counts and window that triggered it.
    pub reason: String,
    /// 1 for the first block of this destination by this rule within the rule's memory, 2
    /// for the next ...
    pub strike: u32,
    /// False when the guard only monitors: the block is recorded and reported, nothing is
    /// refused.
    pub enforced: bool,
    /// When it started (unix ms).
    pub started_ms: i64,
    /// When it ends (unix ms).
    pub ends_ms: i64,
    /// When an operator lifted it, if one did.
    pub lifted_ms: Option<i64>,
    /// Who lifted it (an API key's name, or `admin`).
    pub lifted_by: Option<String>,
}

impl Block {
    /// Whether it is in force at `now_ms` (started, not ended, not lifted).
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.lifted_ms.is_none() && self.started_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether it refuses requests at `now_ms`.
    pub fn refuses(&self, now_ms: i64) -> bool {
        self.enforced && self.is_active(now_ms)
    }

    /// Its length.
    pub fn length(&self) -> Duration {
        Duration::from_millis((self.ends_ms - self.started_ms).max(0) as u64)
    }

    /// One sentence: what is blocked, by which rule and why, for how long, and when it ends.
    pub fn explain(&self, now_ms: i64) -> String {
        let wait = Duration::from_millis((self.ends_ms - now_ms).max(0) as u64);
        let mode = if self.rule == BlockRule::CountryConversion {
            "under watch (its prefixes judged at strict thresholds)"
        } else if self.enforced {
            "blocked"
        } else {
            "would be blocked (monitor only)"
        };
        let repeat = if self.strike > 1 {
            format!(" (repeat {})", self.strike)
        } else {
            String::new()
        };
        format!(
            "{} {mode} by rule `{}` ({}): {}; {} block{repeat}, ends in {}",
            self.target.shown(),
            self.rule,
            self.id,
            self.reason,
            duration::format(self.length()),
            wait_as_text(wait),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> BlockLadder {
        BlockLadder {
            first: Duration::from_secs(15 * 60),
            longest: Duration::from_secs(12 * 3600),
            memory: Duration::from_secs(24 * 3600),
        }
    }

    #[test]
    fn blocks_grow_on_repeat_up_to_the_longest() {
        let lengths: Vec<String> = (1..=8)
            .map(|strike| duration::format(ladder().length(strike)))
            .collect();
        assert_eq!(
            lengths,
            ["15m", "30m", "1h", "2h", "4h", "8h", "12h", "12h"]
        );
        assert_eq!(ladder().length(u32::MAX), Duration::from_secs(12 * 3600));
    }

    #[test]
    fn the_next_strike_counts_blocks_of_the_same_target_and_rule_within_memory() {
        let target = BlockTarget::prefix("+447400123");
        let hour = 3_600_000;
        let now = 100 * hour;
        let verdict = |target: &BlockTarget| Verdict {
            target: target.clone(),
            rule: BlockRule::SequentialNumbers,
            reason: "test".into(),
        };
        let old = verdict(&target).into_block("blk_1".into(), 4, &ladder(), true, now - 30 * hour);
        let recent = verdict(&target).into_block("blk_2".into(), 2, &ladder(), true, now - hour);
        let other = verdict(&BlockTarget::prefix("+447400124")).into_block(
            "blk_3".into(),
            5,
            &ladder(),
            true,
            now - hour,
        );
        let earlier = [old, recent, other];
        assert_eq!(
            ladder().next_strike(&target, BlockRule::SequentialNumbers, &earlier, now),
            3
        );
        assert_eq!(
            ladder().next_strike(&target, BlockRule::PrefixConversion, &earlier, now),
            1
        );
    }

    #[test]
    fn a_block_explains_itself_and_ends() {
        let now = 1_000_000;
        let block = Verdict {
            target: BlockTarget::number("+447400123456"),
            rule: BlockRule::Guessing,
            reason: "5 wrong codes checked in the last 1h (at most 4)".into(),
        }
        .into_block("blk_x".into(), 2, &ladder(), true, now);
        assert!(block.refuses(now));
        assert!(!block.refuses(block.ends_ms));
        assert_eq!(
            block.explain(now + 60_000),
            "number +447*******56 blocked by rule `guessing` (blk_x): 5 wrong codes checked in \
             the last 1h (at most 4); 30m block (repeat 2), ends in 29m"
        );
        let key = block.target.storage_key();
        assert_eq!(key, "number:+447400123456");
        assert_eq!(
            BlockTarget::from_storage_key(&key),
            Some(block.target.clone())
        );
        assert_eq!(BlockRule::parse("guessing"), Some(BlockRule::Guessing));
    }
}
