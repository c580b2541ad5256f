//! The `adaptive` strategy: start where codes get verified most, measured per country, channel
//! and carrier; run the ordered workflow until there are enough measurements to trust.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use verify_carrier::Channel;

use super::ordered::{self, Prefer, reachable};
use super::{
    FallbackEvent, FallbackStrategy, Next, RouteOptions, Start, StrategyKind, VerificationFacts,
    percent,
};
use crate::routing::Candidate;

/// Messages sent and verifications approved after them, for one country, channel and carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conversion {
    /// Messages sent.
    pub sent: u64,
    /// Verifications approved whose last message went this way.
    pub verified: u64,
}

impl Conversion {
    /// Verified per sent, from 0 to 1 (0 when nothing was sent).
    pub fn rate(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.verified.min(self.sent) as f64 / self.sent as f64
        }
    }
}

/// Conversion counts per country × channel × carrier; the server implements it from its
/// database (over a recent window of its choosing, cached: it is asked on every Verify).
pub trait ConversionStats: Send + Sync {
    /// Counts for `carrier` carrying `channel` to `region`; zero when never measured.
    fn conversion(&self, region: &str, channel: Channel, carrier: &str) -> Conversion;
}

/// No measurements: `adaptive` behaves as `ordered`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConversionStats;

impl ConversionStats for NoConversionStats {
    fn conversion(&self, _: &str, _: Channel, _: &str) -> Conversion {
        Conversion::default()
    }
}

/// Counts held in memory, e.g. loaded from the database every minute and swapped in.
#[derive(Debug, Clone, Default)]
pub struct ConversionTable {
    rows: HashMap<(String, Channel, String), Conversion>,
}

impl ConversionTable {
    /// An empty table.
    pub fn new() -> Self {
        ConversionTable::default()
    }

    /// Sets the counts of `carrier` carrying `channel` to `region`.
    pub fn set(&mut self, region: &str, channel: Channel, carrier: &str, counts: Conversion) {
        self.rows
            .insert((region.to_string(), channel, carrier.to_string()), counts);
    }
}

impl ConversionStats for ConversionTable {
    fn conversion(&self, region: &str, channel: Channel, carrier: &str) -> Conversion {
        self.rows
            .get(&(region.to_string(), channel, carrier.to_string()))
            .copied()
            .unwrap_or_default()
    }
}

/// Starts on the channel and route with the best measured conversion for the country among
/// those with at least `min_samples` sends (moving that channel's first step to the front of
/// the workflow, and that route first), then continues as the workflow says; later steps
/// also prefer their channel's best-converting route. Below `min_samples` everywhere, or when
/// the client asked for a channel, it runs the workflow in order.
#[derive(Clone)]
pub struct Adaptive {
    stats: Arc<dyn ConversionStats>,
    min_samples: u64,
}

impl fmt::Debug for Adaptive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adaptive")
            .field("min_samples", &self.min_samples)
            .finish_non_exhaustive()
    }
}

struct Measured {
    channel: Channel,
    carrier: String,
    counts: Conversion,
}

impl Adaptive {
    /// An adaptive strategy reading `stats`, trusting a route's conversion from `min_samples`
    /// sends on.
    pub fn new(stats: Arc<dyn ConversionStats>, min_samples: u64) -> Self {
        Adaptive { stats, min_samples }
    }

    /// The best trusted route of `channel` among `candidates`.
    fn best_route(
        &self,
        region: &str,
        channel: Channel,
        candidates: &[Candidate],
    ) -> Option<String> {
        candidates
            .iter()
            .filter(|c| c.health.is_usable())
            .map(|c| (c, self.stats.conversion(region, channel, &c.carrier)))
            .filter(|(_, counts)| counts.sent >= self.min_samples)
            .fold(
                None,
                |best: Option<(&Candidate, f64)>, (c, counts)| match best {
                    Some((_, rate)) if rate >= counts.rate() => best,
                    _ => Some((c, counts.rate())),
                },
            )
            .map(|(c, _)| c.carrier.clone())
    }

    fn prefer<'a>(&'a self, region: &'a str) -> impl Fn(Channel, &mut Vec<Candidate>) + 'a {
        move |channel, candidates: &mut Vec<Candidate>| {
            if let Some(best) = self.best_route(region, channel, candidates)
                && let Some(i) = candidates.iter().position(|c| c.carrier == best)
            {
                let mut chosen = candidates.remove(i);
                if i > 0 {
                    chosen.reason = format!(
                        "best measured conversion for {channel} to {region}; {}",
                        chosen.reason
                    );
                }
                candidates.insert(0, chosen);
            }
        }
    }
}

impl FallbackStrategy for Adaptive {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Adaptive
    }

    fn start(&self, facts: &VerificationFacts<'_>, routes: &dyn RouteOptions) -> Start {
        let kind = StrategyKind::Adaptive;
        let Some(region) = facts.region else {
            let intro = "adaptive: region unknown, so the ordered workflow";
            return ordered::start(kind, facts, routes, None, intro);
        };
        if let Some(channel) = facts.requested_channel {
            let intro =
                format!("adaptive: {channel} requested by the client, so the ordered workflow");
            return ordered::start(kind, facts, routes, None, &intro);
        }
        let Ok((workflow, _)) = reachable(facts) else {
            return ordered::start(kind, facts, routes, None, "adaptive");
        };
        let mut channels: Vec<Channel> = Vec::new();
        for step in workflow.steps() {
            if !channels.contains(&step.channel) {
                channels.push(step.channel);
            }
        }
        let measured: Vec<Measured> = channels
            .iter()
            .flat_map(|&channel| {
                routes
                    .routes(channel)
                    .into_iter()
                    .filter(|c| c.health.is_usable())
                    .map(move |c| Measured {
                        channel,
                        counts: self.stats.conversion(region, channel, &c.carrier),
                        carrier: c.carrier,
                    })
            })
            .collect();
        let mut trusted: Vec<&Measured> = measured
            .iter()
            .filter(|m| m.counts.sent >= self.min_samples)
            .collect();
        // Best first; ties keep workflow and route order.
        trusted.sort_by(|a, b| b.counts.rate().total_cmp(&a.counts.rate()));
        let prefer = self.prefer(region);
        let Some(best) = trusted.first() else {
            let most = measured
                .iter()
                .max_by_key(|m| m.counts.sent)
                .filter(|m| m.counts.sent > 0)
                .map(|m| {
                    format!(
                        " (most: {} via {}, {})",
                        m.channel, m.carrier, m.counts.sent
                    )
                })
                .unwrap_or_default();
            let intro = format!(
                "adaptive: fewer than {} sends measured on every route to {region}{most}, so the ordered workflow",
                self.min_samples
            );
            return ordered::start(kind, facts, routes, None, &intro);
        };
        let others: Vec<String> = trusted[1..]
            .iter()
            .take(3)
            .map(|m| {
                format!(
                    "{} via {}: {} of {}",
                    m.channel,
                    m.carrier,
                    percent(m.counts.rate()),
                    m.counts.sent
                )
            })
            .collect();
        let others = if others.is_empty() {
            String::new()
        } else {
            format!("; {}", others.join(", "))
        };
        let intro = format!(
            "adaptive: {} via {} converts best for {region} ({} of {} sends{others}), so the workflow",
            best.channel,
            best.carrier,
            percent(best.counts.rate()),
            best.counts.sent
        );
        let prefer: Prefer<'_> = &prefer;
        ordered::start(kind, facts, routes, Some((best.channel, prefer)), &intro)
    }

    fn next(
        &self,
        facts: &VerificationFacts<'_>,
        event: &FallbackEvent,
        routes: &dyn RouteOptions,
    ) -> Next {
        match facts.region {
            Some(region) => ordered::next(facts, event, routes, &self.prefer(region)),
            None => ordered::next(facts, event, routes, &|_, _| {}),
        }
    }
}
