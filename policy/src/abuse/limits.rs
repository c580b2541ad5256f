//! Rate limits as data: buckets keyed on a part of the request, each allowing at most `max`
//! requests per sliding window of `per`.
//!
//! The defaults are what the field suggests and what a legitimate app never reaches: 5 codes
//! per number per 10 minutes, 10 per client IP address per hour, 50 per IPv4 /24 or IPv6 /64
//! network per hour, 10 per device and per user per hour, 100 per number prefix (the number
//! without its last 3 digits) per hour. Configuration replaces a default by giving a limit of
//! the same name, switches one off with `enabled = false`, and adds others (per country, per
//! API key ...).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use verify_carrier::mask_number;

use super::RequestContext;
use crate::routing::duration;

/// What a bucket is keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The number (E.164).
    Number,
    /// The number without its last digits (3 unless the country says otherwise): a range an
    /// operator may sell to a pumping scheme.
    NumberPrefix,
    /// The number's country (ISO 3166-1 alpha-2).
    Country,
    /// The end user's IP address (`context.client_ip`).
    ClientIp,
    /// The end user's network: the IPv4 /24 or IPv6 /64 around `context.client_ip`.
    ClientNetwork,
    /// `context.device_id`.
    Device,
    /// `context.user_id`.
    User,
    /// The API key the request came with, by name.
    ApiKey,
}

impl KeyKind {
    /// The name configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Number => "number",
            KeyKind::NumberPrefix => "number_prefix",
            KeyKind::Country => "country",
            KeyKind::ClientIp => "client_ip",
            KeyKind::ClientNetwork => "client_network",
            KeyKind::Device => "device",
            KeyKind::User => "user",
            KeyKind::ApiKey => "api_key",
        }
    }
}

/// One limit: at most `max` requests in any window of `per` for one value of `key`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Its name, unique: refusals and `ListBlocks` name it.
    pub name: String,
    /// What it counts by.
    pub key: KeyKind,
    /// Requests allowed per window.
    pub max: u32,
    /// The window, e.g. `"10m"`.
    #[serde(with = "duration::text")]
    pub per: Duration,
    /// `false` switches off a default of the same name.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl std::fmt::Display for RateLimit {
    /// `per-number (number): 5 per 10m`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {} per {}",
            self.name,
            self.key.as_str(),
            self.max,
            duration::format(self.per)
        )
    }
}

impl RateLimit {
    /// The length of the slots requests are counted in: a sixtieth of the window (10 s of 10
    /// minutes, a minute of an hour), at least a second.
    pub fn slot_ms(&self) -> i64 {
        ((self.per.as_millis() / 60) as i64).max(1000)
    }

    /// The start of the slot holding `at_ms`.
    pub fn slot_of(&self, at_ms: i64) -> i64 {
        at_ms - at_ms.rem_euclid(self.slot_ms())
    }

    /// The first slot start that can still be inside the window ending at `now_ms`.
    pub fn oldest_slot_in_window(&self, now_ms: i64) -> i64 {
        self.slot_of(now_ms - self.per.as_millis() as i64)
    }

    fn new(name: &str, key: KeyKind, max: u32, per_secs: u64) -> RateLimit {
        RateLimit {
            name: name.into(),
            key,
            max,
            per: Duration::from_secs(per_secs),
            enabled: true,
        }
    }
}

/// The limits that apply when configuration says nothing.
pub fn default_limits() -> Vec<RateLimit> {
    vec![
        RateLimit::new("per-number", KeyKind::Number, 5, 600),
        RateLimit::new("per-number-prefix", KeyKind::NumberPrefix, 100, 3600),
        RateLimit::new("per-client-ip", KeyKind::ClientIp, 10, 3600),
        RateLimit::new("per-client-network", KeyKind::ClientNetwork, 50, 3600),
        RateLimit::new("per-device", KeyKind::Device, 10, 3600),
        RateLimit::new("per-user", KeyKind::User, 10, 3600),
    ]
}

/// Digits dropped from the end of a number to make its prefix, unless its country says
/// otherwise.
pub const DEFAULT_PREFIX_DIGITS: u8 = 3;

/// `[abuse.rate_limits]` as configured: limits merged with the defaults by name, and how many
/// digits make a number's prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Limits replacing the defaults of the same name, or added to them.
    #[serde(default)]
    pub limits: Vec<RateLimit>,
    /// Digits dropped from the end of a number for its prefix (default 3).
    #[serde(default)]
    pub prefix_digits: Option<u8>,
    /// The same per country (upper-case ISO 3166-1 alpha-2).
    #[serde(default)]
    pub prefix_digits_by_country: BTreeMap<String, u8>,
}

/// The limits in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    limits: Vec<RateLimit>,
    prefix_digits: u8,
    prefix_digits_by_country: BTreeMap<String, u8>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::from_config(&RateLimitConfig::default()).expect("the defaults are valid")
    }
}

/// A bucket one request counts in: a limit and the value of its key for this request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    /// The limit, by name.
    pub limit: String,
    /// What it counts by.
    pub kind: KeyKind,
    /// The key's value (`+447700900123`, `+447700900`, `203.0.113.0/24` ...).
    pub value: String,
}

impl BucketKey {
    /// The key the store counts it under: `limit|value`.
    pub fn storage_key(&self) -> String {
        format!("{}|{}", self.limit, self.value)
    }

    /// The value as a refusal or a log may show it (a number masked).
    pub fn shown(&self) -> String {
        match self.kind {
            KeyKind::Number => mask_number(&self.value),
            _ => self.value.clone(),
        }
    }
}

/// What the store counted in one bucket: requests per slot (a sixtieth of the limit's window,
/// at least a second), by the slot's start (unix ms). A slot counts while any of it is inside the
/// window, so a bucket may stay full up to a slot longer than an exact count would keep it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// `(slot start, requests)`, in any order.
    pub slots: Vec<(i64, u32)>,
}

impl Usage {
    /// Adds `requests` to the slot starting at `slot` (one entry per slot).
    pub fn add(&mut self, slot: i64, requests: u32) {
        match self.slots.iter_mut().find(|(start, _)| *start == slot) {
            Some((_, count)) => *count = count.saturating_add(requests),
            None => self.slots.push((slot, requests)),
        }
    }
}

/// A request refused by a limit, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRefusal {
    /// The bucket that is full.
    pub bucket: BucketKey,
    /// Requests counted in the window.
    pub count: u32,
    /// Requests allowed in the window.
    pub max: u32,
    /// The window.
    pub per: Duration,
    /// When a request is allowed again (unix ms): when the oldest request that fills the
    /// bucket leaves the window.
    pub retry_at_ms: i64,
}

impl LimitRefusal {
    /// One sentence: the rule, the counts and window, and when it ends.
    pub fn explain(&self, now_ms: i64) -> String {
        let wait = Duration::from_millis((self.retry_at_ms - now_ms).max(0) as u64);
        format!(
            "rate limit `{}`: {} requests for {} {} in the last {} (at most {}); retry in {}",
            self.bucket.limit,
            self.count,
            self.bucket.kind.as_str(),
            self.bucket.shown(),
            duration::format(self.per),
            self.max,
            wait_as_text(wait),
        )
    }
}

/// A wait as people read it, rounded up to the second: `45s`, `10m7s`, `1h4m7s`.
pub(crate) fn wait_as_text(wait: Duration) -> String {
    let seconds = wait.as_millis().div_ceil(1000) as u64;
    let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

/// Why a rate limit configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("abuse.rate_limits: {0}")]
pub struct LimitConfigError(String);

/// Longest window a limit may have: the store keeps counted requests this long.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

impl RateLimits {
    /// The defaults merged with `config` (see the module's documentation), checked: names
    /// unique and made of lower-case letters, digits, `-` and `_`; `max` at least 1; windows
    /// between 1 s and 7 days; prefixes that keep some digits.
    pub fn from_config(config: &RateLimitConfig) -> Result<RateLimits, LimitConfigError> {
        let mut seen = HashSet::new();
        for limit in &config.limits {
            check_limit(limit)?;
            if !seen.insert(limit.name.as_str()) {
                return Err(LimitConfigError(format!(
                    "limit `{}` is configured twice",
                    limit.name
                )));
            }
        }
        let mut limits: Vec<RateLimit> = default_limits()
            .into_iter()
            .filter(|default| !seen.contains(default.name.as_str()))
            .collect();
        limits.extend(config.limits.iter().cloned());
        limits.retain(|limit| limit.enabled);
        let prefix_digits = config.prefix_digits.unwrap_or(DEFAULT_PREFIX_DIGITS);
        check_prefix_digits("prefix_digits", prefix_digits)?;
        for (country, digits) in &config.prefix_digits_by_country {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(LimitConfigError(format!(
                    "prefix_digits_by_country: `{country}` is not an upper-case ISO 3166-1 alpha-2 code"
                )));
            }
            check_prefix_digits(&format!("prefix_digits_by_country.{country}"), *digits)?;
        }
        Ok(RateLimits {
            limits,
            prefix_digits,
            prefix_digits_by_country: config.prefix_digits_by_country.clone(),
        })
    }

    /// The limits in force, in order.
    pub fn limits(&self) -> &[RateLimit] {
        &self.limits
    }

    /// The buckets a request for number `e164` (in `region`) counts in: one per limit whose key
    /// the request has (a limit on devices does not apply to a request that names none).
    pub fn buckets(
        &self,
        e164: &str,
        region: Option<&str>,
        context: &RequestContext,
    ) -> Vec<BucketKey> {
        self.limits
            .iter()
            .filter_map(|limit| {
                let value = match limit.key {
                    KeyKind::Number => Some(e164.to_string()),
                    KeyKind::NumberPrefix => Some(self.prefix_of(e164, region)),
                    KeyKind::Country => region.map(str::to_string),
                    KeyKind::ClientIp => context.client_ip.map(|ip| ip.to_string()),
                    KeyKind::ClientNetwork => context.client_ip.map(network_of),
                    KeyKind::Device => context.device_id.clone(),
                    KeyKind::User => context.user_id.clone(),
                    KeyKind::ApiKey => context.api_key.clone(),
                }?;
                Some(BucketKey {
                    limit: limit.name.clone(),
                    kind: limit.key,
                    value,
                })
            })
            .collect()
    }

    /// The prefix of `e164`: without its last digits, as many as its country says, keeping
    /// at least the `+` and four digits.
    pub fn prefix_of(&self, e164: &str, region: Option<&str>) -> String {
        let digits = region
            .and_then(|region| self.prefix_digits_by_country.get(region))
            .copied()
            .unwrap_or(self.prefix_digits) as usize;
        let keep = e164.len().saturating_sub(digits).max(5).min(e164.len());
        e164[..keep].to_string()
    }

    /// The limit of a bucket, by name.
    pub fn limit(&self, name: &str) -> Option<&RateLimit> {
        self.limits.iter().find(|limit| limit.name == name)
    }

    /// Whether one more request fits in every bucket, given what was counted in each; the
    /// refusal that lasts longest otherwise (when it ends, none of these buckets is full).
    pub fn check(&self, counted: &[(BucketKey, Usage)], now_ms: i64) -> Result<(), LimitRefusal> {
        let mut refusal: Option<LimitRefusal> = None;
        for (bucket, usage) in counted {
            let Some(limit) = self.limit(&bucket.limit) else {
                continue;
            };
            let window_ms = limit.per.as_millis() as i64;
            let slot_ms = limit.slot_ms();
            let mut in_window: Vec<(i64, u32)> = usage
                .slots
                .iter()
                .copied()
                .filter(|(start, count)| *count > 0 && start + slot_ms > now_ms - window_ms)
                .collect();
            let count: u32 = in_window.iter().map(|(_, count)| count).sum();
            if count < limit.max {
                continue;
            }
            // The bucket has room again once enough of its oldest slots have left the window.
            in_window.sort_unstable();
            let mut left = count;
            let mut retry_at_ms = now_ms;
            for (start, requests) in in_window {
                left -= requests;
                retry_at_ms = start + slot_ms + window_ms;
                if left < limit.max {
                    break;
                }
            }
            if refusal.as_ref().is_none_or(|r| retry_at_ms > r.retry_at_ms) {
                refusal = Some(LimitRefusal {
                    bucket: bucket.clone(),
                    count,
                    max: limit.max,
                    per: limit.per,
                    retry_at_ms,
                });
            }
        }
        match refusal {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

/// The IPv4 /24 or IPv6 /64 network around `ip`, written as `address/length`.
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let network = std::net::Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            );
            format!("{network}/64")
        }
    }
}

fn check_limit(limit: &RateLimit) -> Result<(), LimitConfigError> {
    let name_ok = !limit.name.is_empty()
        && limit.name.len() <= 64
        && limit
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(LimitConfigError(format!(
            "limit name `{}` must be 1 to 64 lower-case letters, digits, `-` or `_`",
            limit.name
        )));
    }
    if limit.max == 0 {
        return Err(LimitConfigError(format!(
            "limit `{}`: max must be at least 1 (switch a limit off with enabled = false)",
            limit.name
        )));
    }
    if limit.per < Duration::from_secs(1) || limit.per > MAX_WINDOW {
        return Err(LimitConfigError(format!(
            "limit `{}`: per must be between 1s and 168h, got {}",
            limit.name,
            duration::format(limit.per)
        )));
    }
    Ok(())
}

fn check_prefix_digits(field: &str, digits: u8) -> Result<(), LimitConfigError> {
    if !(1..=8).contains(&digits) {
        return Err(LimitConfigError(format!(
            "{field} must be between 1 and 8, got {digits}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 3_600_000_000;

    fn context() -> RequestContext {
        RequestContext {
            client_ip: Some("203.0.113.9".parse().unwrap()),
            device_id: Some("dev-1".into()),
            ..Default::default()
        }
    }

    fn kinds(buckets: &[BucketKey]) -> Vec<(KeyKind, &str)> {
        buckets.iter().map(|b| (b.kind, b.value.as_str())).collect()
    }

    #[test]
    fn a_request_counts_in_the_buckets_of_the_keys_it_has() {
        let limits = RateLimits::default();
        let buckets = limits.buckets("+447700900123", Some("GB"), &context());
        assert_eq!(
            kinds(&buckets),
            [
                (KeyKind::Number, "+447700900123"),
                (KeyKind::NumberPrefix, "+447700900"),
                (KeyKind::ClientIp, "203.0.113.9"),
                (KeyKind::ClientNetwork, "203.0.113.0/24"),
                (KeyKind::Device, "dev-1"),
            ]
        );
        // Without a context: the number and its prefix only.
        let bare = limits.buckets("+447700900123", Some("GB"), &RequestContext::default());
        assert_eq!(bare.len(), 2);
    }

    #[test]
    fn waits_read_in_hours_minutes_and_seconds() {
        let text = |ms| wait_as_text(Duration::from_millis(ms));
        assert_eq!(text(0), "0s");
        assert_eq!(text(1), "1s");
        assert_eq!(text(45_000), "45s");
        assert_eq!(text(607_000), "10m7s");
        assert_eq!(text(3_847_000), "1h4m7s");
        assert_eq!(text(3_600_000), "1h");
    }

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        assert_eq!(
            network_of("198.51.100.77".parse().unwrap()),
            "198.51.100.0/24"
        );
        assert_eq!(
            network_of("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn configuration_replaces_switches_off_and_adds_limits_by_name() {
        let config: RateLimitConfig = toml::from_str(
            r#"
            prefix_digits = 2
            prefix_digits_by_country = { US = 4 }
            [[limits]]
            name = "per-number"
            key = "number"
            max = 3
            per = "10m"
            [[limits]]
            name = "per-device"
            key = "device"
            max = 1
            per = "1h"
            enabled = false
            [[limits]]
            name = "per-country"
            key = "country"
            max = 1000
            per = "1h"
            "#,
        )
        .unwrap();
        let limits = RateLimits::from_config(&config).unwrap();
        let names: Vec<&str> = limits.limits().iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "per-number-prefix",
                "per-client-ip",
                "per-client-network",
                "per-user",
                "per-number",
                "per-country"
            ]
        );
        assert_eq!(limits.limit("per-number").unwrap().max, 3);
        assert_eq!(limits.prefix_of("+447700900123", Some("GB")), "+4477009001");
        assert_eq!(limits.prefix_of("+14155550123", Some("US")), "+1415555");
        // A short number keeps its country code and a digit or more.
        assert_eq!(limits.prefix_of("+2901234", Some("SH")), "+29012");
        assert_eq!(limits.prefix_of("+29012", Some("SH")), "+2901");
    }

    #[test]
    fn bad_limits_are_refused_with_the_reason() {
        let refused = |text: &str| {
            let config: RateLimitConfig = toml::from_str(text).unwrap();
            RateLimits::from_config(&config).unwrap_err().to_string()
        };
        assert_eq!(
            refused("[[limits]]\nname = \"x\"\nkey = \"number\"\nmax = 0\nper = \"1m\""),
            "abuse.rate_limits: limit `x`: max must be at least 1 (switch a limit off with enabled = false)"
        );
        assert_eq!(
            refused("[[limits]]\nname = \"x\"\nkey = \"number\"\nmax = 1\nper = \"200h\""),
            "abuse.rate_limits: limit `x`: per must be between 1s and 168h, got 200h"
        );
        assert_eq!(
            refused("[[limits]]\nname = \"Per IP\"\nkey = \"client_ip\"\nmax = 1\nper = \"1m\""),
            "abuse.rate_limits: limit name `Per IP` must be 1 to 64 lower-case letters, digits, `-` or `_`"
        );
        assert_eq!(
            refused(
                "[[limits]]\nname = \"x\"\nkey = \"number\"\nmax = 1\nper = \"1m\"\n[[limits]]\nname = \"x\"\nkey = \"user\"\nmax = 1\nper = \"1m\""
            ),
            "abuse.rate_limits: limit `x` is configured twice"
        );
        assert_eq!(
            refused("prefix_digits_by_country = { gb = 2 }"),
            "abuse.rate_limits: prefix_digits_by_country: `gb` is not an upper-case ISO 3166-1 alpha-2 code"
        );
        assert!(
            toml::from_str::<RateLimitConfig>(
                "[[limits]]\nname = \"x\"\nkey = \"planet\"\nmax = 1\nper = \"1m\""
            )
            .is_err()
        );
    }

    /// Usage of one request `minutes_ago` each, counted in the slots they start (the per-number
    /// limit counts in slots of 10 s).
    fn per_minute(minutes_ago: impl IntoIterator<Item = i64>) -> Usage {
        Usage {
            slots: minutes_ago
                .into_iter()
                .map(|m| (NOW - m * 60_000, 1))
                .collect(),
        }
    }

    #[test]
    fn a_full_bucket_refuses_until_its_oldest_counted_slot_leaves_the_window() {
        let limits = RateLimits::default();
        let buckets = limits.buckets("+447700900123", Some("GB"), &RequestContext::default());
        let number = buckets[0].clone();
        assert_eq!(number.storage_key(), "per-number|+447700900123");
        let per_number = limits.limit("per-number").unwrap();
        assert_eq!(per_number.slot_ms(), 10_000);
        assert_eq!(per_number.slot_of(NOW + 19_999), NOW + 10_000);
        // Four in the last ten minutes: one more fits.
        let four = per_minute([1, 2, 3, 4]);
        assert!(limits.check(&[(number.clone(), four)], NOW).is_ok());
        // Five: full until the slot of the oldest (9 minutes ago) has left the window.
        let five = per_minute([1, 2, 3, 4, 9]);
        let refusal = limits.check(&[(number.clone(), five)], NOW).unwrap_err();
        assert_eq!(refusal.count, 5);
        assert_eq!(refusal.retry_at_ms, NOW + 70_000);
        assert_eq!(
            refusal.explain(NOW),
            "rate limit `per-number`: 5 requests for number +447*******23 in the last 10m (at most 5); retry in 1m10s"
        );
        // Slots wholly older than the window do not count.
        let old = per_minute([1, 2, 3, 4, 11]);
        assert!(limits.check(&[(number, old)], NOW).is_ok());
    }

    #[test]
    fn of_several_full_buckets_the_refusal_names_the_one_that_lasts_longest() {
        let limits = RateLimits::default();
        let buckets = limits.buckets("+447700900123", Some("GB"), &context());
        let ip = buckets
            .iter()
            .find(|b| b.kind == KeyKind::ClientIp)
            .unwrap()
            .clone();
        let number = buckets[0].clone();
        // Ten requests from the IP in one one-minute slot 12 minutes ago.
        let full_ip = Usage {
            slots: vec![(NOW - 12 * 60_000, 10)],
        };
        let refusal = limits
            .check(&[(number, per_minute(1..=5)), (ip, full_ip)], NOW)
            .unwrap_err();
        assert_eq!(refusal.bucket.limit, "per-client-ip");
        assert_eq!(refusal.retry_at_ms, NOW - 12 * 60_000 + 60_000 + 3_600_000);
        assert_eq!(
            refusal.explain(NOW),
            "rate limit `per-client-ip`: 10 requests for client_ip 203.0.113.9 in the last 1h (at most 10); retry in 49m"
        );
    }
}
