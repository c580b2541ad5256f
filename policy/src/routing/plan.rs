//! Route plans: per-country routes with cost, priority and operator prefixes, and the ordering
//! of a number's candidate routes from them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use verify_carrier::Channel;

use super::{BreakerSettings, ConfigError, HealthView, RouteHealth, RouteTable};

/// One route of a list: a carrier, and optionally what it costs, its priority tier, the
/// operator prefixes it is for, and the channels it may carry.
///
/// In TOML either a plain carrier name (`"twilio"`) or a table
/// (`{ carrier = "airtel", cost = 0.0021, priority = 1, prefixes = ["9190"] }`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteEntry {
    /// Configured carrier name.
    pub carrier: String,
    /// Price per message in the operator's currency of choice (one currency throughout);
    /// `None`: unknown, ordered after routes with a cost in the same tier.
    pub cost: Option<f64>,
    /// Tier: lower first; routes without one come after every route with one.
    pub priority: Option<u32>,
    /// E.164 digit prefixes (country code included, no `+`), e.g. an operator's number ranges.
    /// A route with prefixes serves only numbers starting with one of them, and comes first
    /// for them; list the carrier again without prefixes to use it for other numbers too.
    pub prefixes: Vec<String>,
    /// Channels this route may carry; empty: whatever the carrier can.
    pub channels: Vec<Channel>,
}

impl RouteEntry {
    /// A plain route: just the carrier.
    pub fn named(carrier: &str) -> Self {
        RouteEntry {
            carrier: carrier.to_string(),
            ..RouteEntry::default()
        }
    }

    fn is_plain(&self) -> bool {
        self.cost.is_none()
            && self.priority.is_none()
            && self.prefixes.is_empty()
            && self.channels.is_empty()
    }

    /// The longest of the entry's prefixes that `digits` starts with.
    fn matching_prefix(&self, digits: &str) -> Option<&str> {
        self.prefixes
            .iter()
            .filter(|prefix| digits.starts_with(prefix.as_str()))
            .max_by_key(|prefix| prefix.len())
            .map(String::as_str)
    }
}

/// The table form of [`RouteEntry`], with unknown keys refused.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RouteEntryTable {
    carrier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels: Vec<Channel>,
}

impl<'de> Deserialize<'de> for RouteEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = RouteEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a carrier name or a table with `carrier` and optional `cost`, `priority`, `prefixes`, `channels`")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<RouteEntry, E> {
                Ok(RouteEntry::named(name))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RouteEntry, A::Error> {
                let table =
                    RouteEntryTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RouteEntry {
                    carrier: table.carrier,
                    cost: table.cost,
                    priority: table.priority,
                    prefixes: table.prefixes,
                    channels: table.channels,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

impl Serialize for RouteEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_plain() {
            return serializer.serialize_str(&self.carrier);
        }
        RouteEntryTable {
            carrier: self.carrier.clone(),
            cost: self.cost,
            priority: self.priority,
            prefixes: self.prefixes.clone(),
            channels: self.channels.clone(),
        }
        .serialize(serializer)
    }
}

/// `[routes]`: the routes per country, a default list for the others, and breaker settings.
///
/// Backward compatible with the plain form (`default = ["a", "b"]`,
/// `countries.GB = ["a", "b"]`: list order, no cost); see `policy/ROUTING.md`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePlan {
    /// Routes for countries without their own list.
    #[serde(default)]
    pub default: Vec<RouteEntry>,
    /// Per-country lists keyed by upper-case ISO 3166-1 alpha-2 region.
    #[serde(default)]
    pub countries: BTreeMap<String, Vec<RouteEntry>>,
    /// When a failing route is set aside.
    #[serde(default)]
    pub breaker: BreakerSettings,
}

impl From<RouteTable> for RoutePlan {
    fn from(table: RouteTable) -> Self {
        let entries = |names: Vec<String>| names.iter().map(|n| RouteEntry::named(n)).collect();
        RoutePlan {
            default: entries(table.default),
            countries: table
                .countries
                .into_iter()
                .map(|(region, names)| (region, entries(names)))
                .collect(),
            breaker: BreakerSettings::default(),
        }
    }
}

impl RoutePlan {
    /// A plan that sends everything through `carrier`.
    pub fn single(carrier: &str) -> Self {
        RoutePlan {
            default: vec![RouteEntry::named(carrier)],
            ..RoutePlan::default()
        }
    }

    /// Every carrier name the plan mentions.
    pub fn carrier_names(&self) -> impl Iterator<Item = &str> {
        self.default
            .iter()
            .chain(self.countries.values().flatten())
            .map(|entry| entry.carrier.as_str())
    }

    /// The cost the plan declares for a message to `region` through `carrier`: from the
    /// region's list (or the default list when it has none), the carrier's entry for every
    /// number if it declares a cost, else its first prefix entry that does. `None` when no
    /// entry of the carrier declares one.
    pub fn declared_cost(&self, region: &str, carrier: &str) -> Option<f64> {
        let list = self.countries.get(region).unwrap_or(&self.default);
        let entries = || list.iter().filter(|entry| entry.carrier == carrier);
        entries()
            .find(|entry| entry.prefixes.is_empty() && entry.cost.is_some())
            .or_else(|| entries().find(|entry| entry.cost.is_some()))
            .and_then(|entry| entry.cost)
    }

    /// Checks the plan: a default list, well-formed regions, known carriers, sane costs and
    /// prefixes, and breaker settings. The error names the key, e.g.
    /// `routes.countries.IN[2].prefixes`.
    pub fn validate(&self, known: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        if self.default.is_empty() {
            return Err(ConfigError::new(
                "routes.default",
                "must name at least one carrier",
            ));
        }
        validate_list("routes.default", &self.default, &known)?;
        for (region, list) in &self.countries {
            let key = format!("routes.countries.{region}");
            if region.len() != 2 || !region.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(ConfigError::new(
                    key,
                    "use an upper-case ISO 3166-1 alpha-2 region, e.g. IN",
                ));
            }
            if list.is_empty() {
                return Err(ConfigError::new(key, "is empty"));
            }
            validate_list(&key, list, &known)?;
        }
        self.breaker.validate()
    }
}

fn validate_list(
    key: &str,
    list: &[RouteEntry],
    known: &impl Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    for (i, entry) in list.iter().enumerate() {
        let at = |field: &str| format!("{key}[{i}].{field}");
        if !known(&entry.carrier) {
            return Err(ConfigError::new(
                at("carrier"),
                format!("`{}` is not a configured carrier", entry.carrier),
            ));
        }
        if let Some(cost) = entry.cost
            && !(cost.is_finite() && cost >= 0.0)
        {
            return Err(ConfigError::new(
                at("cost"),
                format!("must be a price of zero or more, got {cost}"),
            ));
        }
        for prefix in &entry.prefixes {
            if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(ConfigError::new(
                    at("prefixes"),
                    format!(
                        "`{prefix}` is not an E.164 prefix; write 1 to 15 digits with the country code and no +, e.g. \"9190\""
                    ),
                ));
            }
        }
        if entry.prefixes.is_empty()
            && list[..i].iter().any(|earlier| {
                earlier.carrier == entry.carrier
                    && earlier.prefixes.is_empty()
                    && earlier.channels == entry.channels
            })
        {
            return Err(ConfigError::new(
                at("carrier"),
                format!("`{}` is listed twice", entry.carrier),
            ));
        }
    }
    Ok(())
}

/// A route that may carry one message, in order of preference, and why it is where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Configured carrier name.
    pub carrier: String,
    /// Price per message, when configured.
    pub cost: Option<f64>,
    /// Priority tier, when configured.
    pub priority: Option<u32>,
    /// The operator prefix the number matched, for a prefix route.
    pub operator_prefix: Option<String>,
    /// Health when the list was made.
    pub health: RouteHealth,
    /// Why this route is here, for responses and events, e.g.
    /// "cheapest healthy route for IN (0.0021/msg)".
    pub reason: String,
}

/// Orders candidate routes for numbers from a validated [`RoutePlan`].
#[derive(Debug, Clone)]
pub struct RoutePlanner {
    plan: RoutePlan,
}

impl RoutePlanner {
    /// A planner for `plan` (validate it first with [`RoutePlan::validate`]).
    pub fn new(plan: RoutePlan) -> Self {
        RoutePlanner { plan }
    }

    /// The plan.
    pub fn plan(&self) -> &RoutePlan {
        &self.plan
    }

    /// The routes that may carry `channel` to the number `e164_digits` (E.164 without `+`;
    /// a leading `+` is ignored) of `region`, best first:
    ///
    /// 1. routes whose operator prefix the number matches (longest prefix first),
    /// 2. then by priority tier (lower first; routes without one last),
    /// 3. then by cost (cheapest first; routes without a cost last),
    /// 4. then in the order written.
    ///
    /// Routes `capable` refuses (the carrier cannot carry the channel to the region), routes
    /// restricted to other channels, and prefix routes the number does not match are left
    /// out; a carrier appears once. Routes whose breaker is open are not dropped but moved to
    /// the end, in the same order, as a last resort: a message is better sent on a route that
    /// may have recovered than failed while a route exists.
    pub fn candidates(
        &self,
        region: Option<&str>,
        e164_digits: &str,
        channel: Channel,
        capable: impl Fn(&str) -> bool,
        health: &dyn HealthView,
    ) -> Vec<Candidate> {
        let digits = e164_digits.trim_start_matches('+');
        let (list, scope) = match region.and_then(|r| self.plan.countries.get_key_value(r)) {
            Some((region, list)) => (list, format!("for {region}")),
            None => (&self.plan.default, "in the default list".to_string()),
        };
        let mut ranked: Vec<(usize, &RouteEntry, Option<&str>)> = list
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.channels.is_empty() || entry.channels.contains(&channel))
            .filter_map(|(position, entry)| {
                let prefix = entry.matching_prefix(digits);
                if !entry.prefixes.is_empty() && prefix.is_none() {
                    return None;
                }
                Some((position, entry, prefix))
            })
            .filter(|(_, entry, _)| capable(&entry.carrier))
            .collect();
        ranked.sort_by(|(pa, a, xa), (pb, b, xb)| {
            let prefix_rank = |p: &Option<&str>| std::cmp::Reverse(p.map_or(0, str::len));
            prefix_rank(xa)
                .cmp(&prefix_rank(xb))
                .then_with(|| {
                    (a.priority.is_none(), a.priority).cmp(&(b.priority.is_none(), b.priority))
                })
                .then_with(|| match (a.cost, b.cost) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (x, y) => x.is_none().cmp(&y.is_none()),
                })
                .then_with(|| pa.cmp(pb))
        });
        let mut seen = std::collections::HashSet::new();
        ranked.retain(|(_, entry, _)| seen.insert(entry.carrier.as_str()));

        let mut candidates: Vec<Candidate> = Vec::with_capacity(ranked.len());
        let mut cheapest_named = false;
        for (position, entry, prefix) in ranked {
            let health = health.health(&entry.carrier, region, channel);
            let usable = health.is_usable();
            let cost = entry.cost.map(|c| format!("{c}/msg"));
            let mut reason = if let Some(prefix) = prefix {
                format!("operator route {scope} for numbers starting +{prefix}")
            } else if let Some(priority) = entry.priority {
                format!("priority {priority} route {scope}")
            } else if let Some(cost) = &cost
                && usable
                && !cheapest_named
            {
                cheapest_named = true;
                format!("cheapest healthy route {scope} ({cost})")
            } else if cost.is_some() {
                format!("route {scope}")
            } else {
                format!("{} route listed {scope}", ordinal(position + 1))
            };
            if let Some(cost) = &cost
                && !reason.contains(cost.as_str())
            {
                reason.push_str(&format!(" ({cost})"));
            }
            match &health {
                RouteHealth::Healthy => {}
                RouteHealth::Probing => reason.push_str("; breaker half-open, probing"),
                RouteHealth::Unhealthy { why } => {
                    reason = format!("{} {why}; kept as last resort ({reason})", entry.carrier)
                }
            }
            candidates.push(Candidate {
                carrier: entry.carrier.clone(),
                cost: entry.cost,
                priority: entry.priority,
                operator_prefix: prefix.map(str::to_string),
                health,
                reason,
            });
        }
        // Stable: usable routes keep their order, failing ones follow in theirs.
        candidates.sort_by_key(|candidate| !candidate.health.is_usable());
        candidates
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests;
