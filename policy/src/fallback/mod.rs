//! Fallback workflows: what to send first, and what to send next when a message fails or the
//! code is not checked in time (`sms(30s) -> voice(60s)`).
//!
//! A [`FallbackStrategy`] answers from the verification's facts alone; the server stores its
//! answers, schedules step deadlines and reports events back. Two strategies ship: [`Ordered`]
//! runs the workflow as written, [`Adaptive`] starts on the channel and route that converts
//! best in the country. `[fallback]` in the configuration picks one per country; see
//! `policy/ROUTING.md`.

mod adaptive;
mod ordered;
mod workflow;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use verify_carrier::Channel;

use crate::classify::LineType;
use crate::routing::{Candidate, ConfigError, duration};

pub use adaptive::{Adaptive, Conversion, ConversionStats, ConversionTable, NoConversionStats};
pub use ordered::Ordered;
pub use workflow::{MAX_STEPS, MAX_WAIT, MIN_WAIT, Workflow, WorkflowError, WorkflowStep};

/// The routes that may carry a channel to the verification's number, best first: usually
/// [`RoutePlanner::candidates`](crate::routing::RoutePlanner::candidates) with the server's
/// capability filter and breakers. Any `Fn(Channel) -> Vec<Candidate>` is one.
pub trait RouteOptions {
    /// Candidate routes for `channel`; empty when none can carry it.
    fn routes(&self, channel: Channel) -> Vec<Candidate>;
}

impl<F: Fn(Channel) -> Vec<Candidate>> RouteOptions for F {
    fn routes(&self, channel: Channel) -> Vec<Candidate> {
        self(channel)
    }
}

/// What a strategy knows about one verification.
#[derive(Debug, Clone, Copy)]
pub struct VerificationFacts<'a> {
    /// ISO 3166-1 alpha-2 region of the number, when known.
    pub region: Option<&'a str>,
    /// Line type of the number (landlines start on voice).
    pub line_type: LineType,
    /// The channel the client asked for; `None` lets policy choose.
    pub requested_channel: Option<Channel>,
    /// At start: the workflow to run (the request's, else the country's, else the default).
    /// Afterwards: the workflow [`Start::workflow`] returned, as stored.
    pub workflow: &'a Workflow,
    /// Sends allowed per verification (`codes.max_sends`).
    pub max_sends: u32,
    /// Sends so far, client resends included.
    pub sends: u32,
    /// The steps that ran, oldest first.
    pub history: &'a [StepRecord],
}

/// One step that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Index of the step in the stored workflow.
    pub step: usize,
    /// Channel it was sent on.
    pub channel: Channel,
    /// Carrier that carried it last (after any failover).
    pub carrier: String,
    /// How it ended, so far.
    pub outcome: StepOutcome,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Sent or sending; no verdict yet.
    Pending,
    /// The message failed (failed receipt, or every route refused it), with the reason.
    Failed(String),
    /// Its wait passed without an approved check.
    DeadlinePassed,
}

/// What happened to the running step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackEvent {
    /// Step `step`'s message failed: a failed delivery receipt, or every route refused it.
    MessageFailed {
        /// Index of the step in the stored workflow.
        step: usize,
        /// The carrier's or dispatcher's reason.
        reason: String,
    },
    /// Step `step`'s wait passed without an approved check.
    DeadlinePassed {
        /// Index of the step in the stored workflow.
        step: usize,
    },
}

impl FallbackEvent {
    /// The step the event is about.
    pub fn step(&self) -> usize {
        match self {
            FallbackEvent::MessageFailed { step, .. } | FallbackEvent::DeadlinePassed { step } => {
                *step
            }
        }
    }
}

/// A send to make: the step, its channel, routes and wait, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    /// Index of the step in the stored workflow.
    pub step: usize,
    /// Steps in the stored workflow.
    pub of: usize,
    /// Channel to send on.
    pub channel: Channel,
    /// How long to wait for an approved check before the next step; the deadline is the
    /// time the message is queued plus this.
    pub wait: Duration,
    /// Routes, best first (never empty): the first carries the message, the rest are its
    /// failover on temporary refusals.
    pub routes: Vec<Candidate>,
    /// Why this step and channel, e.g. "no approved check within 30s of step 1 (sms): step 2
    /// of 2, voice(1m) with the same code".
    pub reason: String,
}

impl StepPlan {
    /// The carrier to send on.
    pub fn carrier(&self) -> &str {
        &self.routes[0].carrier
    }

    /// The failover carriers, in order.
    pub fn failover(&self) -> Vec<String> {
        self.routes[1..].iter().map(|c| c.carrier.clone()).collect()
    }

    /// One line for responses and events: the decision and the route with their reasons.
    pub fn explanation(&self) -> String {
        format!(
            "{}; route {}: {}",
            self.reason, self.routes[0].carrier, self.routes[0].reason
        )
    }
}

/// A strategy's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Send this step.
    Send(StepPlan),
    /// Send nothing more; the code stays valid until it expires or is checked.
    Stop {
        /// Why, for the event.
        reason: String,
    },
    /// The event is stale (about a step that is no longer running); change nothing.
    Ignore {
        /// Why, for the log.
        reason: String,
    },
}

/// The answer at the start of a verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The strategy that answered; store it to ask the same one later.
    pub strategy: StrategyKind,
    /// The workflow as it will run (landline, requested channel and adaptive reordering
    /// applied); store it and pass it as [`VerificationFacts::workflow`] on later events.
    pub workflow: Workflow,
    /// The first send, or why nothing can be sent.
    pub next: Next,
}

/// Decides the steps of a verification. Implementations are pure: the same facts, routes and
/// statistics give the same answer.
pub trait FallbackStrategy: Send + Sync + fmt::Debug {
    /// Which strategy this is.
    fn kind(&self) -> StrategyKind;

    /// The workflow to run and its first send.
    fn start(&self, facts: &VerificationFacts<'_>, routes: &dyn RouteOptions) -> Start;

    /// The next send after `event`, or stop, or ignore a stale event.
    fn next(
        &self,
        facts: &VerificationFacts<'_>,
        event: &FallbackEvent,
        routes: &dyn RouteOptions,
    ) -> Next;
}

/// The strategies that ship, by configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    /// The workflow in the order written.
    #[default]
    Ordered,
    /// Start on the best-converting channel and route once measurements are trusted.
    Adaptive,
}

impl StrategyKind {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Ordered => "ordered",
            StrategyKind::Adaptive => "adaptive",
        }
    }

    /// Parses the configuration name (as stored with a verification).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ordered" => Some(StrategyKind::Ordered),
            "adaptive" => Some(StrategyKind::Adaptive),
            _ => None,
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[fallback]`: the strategy and workflow by default and per country.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// Strategy for countries without their own (`ordered`).
    #[serde(default)]
    pub strategy: StrategyKind,
    /// Workflow for countries without their own. The default, one SMS step, sends once
    /// (landlines: one call) as verifyd did before workflows; set e.g.
    /// `"sms(30s) -> voice(60s)"` to fall back to voice.
    #[serde(default = "default_workflow")]
    pub workflow: Workflow,
    /// Settings of the `adaptive` strategy.
    #[serde(default)]
    pub adaptive: AdaptiveSettings,
    /// Per-country overrides keyed by upper-case ISO 3166-1 alpha-2 region.
    #[serde(default)]
    pub countries: BTreeMap<String, CountryFallback>,
}

fn default_workflow() -> Workflow {
    Workflow::new(vec![WorkflowStep {
        channel: Channel::Sms,
        wait: Duration::from_secs(600),
    }])
    .expect("one step")
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            strategy: StrategyKind::default(),
            workflow: default_workflow(),
            adaptive: AdaptiveSettings::default(),
            countries: BTreeMap::new(),
        }
    }
}

/// `[fallback.countries.XX]`: one country's strategy and/or workflow.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CountryFallback {
    /// Strategy for the country; the default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyKind>,
    /// Workflow for the country; the default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Workflow>,
}

/// `[fallback.adaptive]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveSettings {
    /// Sends a (country, channel, carrier) needs before its conversion is trusted; below it,
    /// the ordered workflow runs.
    pub min_samples: u64,
    /// How often the server reloads conversion counts from its database (`"60s"`; at least
    /// `1s`). Only servers where some country uses `adaptive` load them.
    #[serde(with = "duration::text")]
    pub stats_refresh: Duration,
}

/// Shortest `[fallback.adaptive]` `stats_refresh`.
pub const MIN_STATS_REFRESH: Duration = Duration::from_secs(1);

impl Default for AdaptiveSettings {
    fn default() -> Self {
        AdaptiveSettings {
            min_samples: 100,
            stats_refresh: Duration::from_secs(60),
        }
    }
}

impl FallbackConfig {
    /// Whether the default or any country's strategy is `adaptive`.
    pub fn uses_adaptive(&self) -> bool {
        self.strategy == StrategyKind::Adaptive
            || self
                .countries
                .values()
                .any(|c| c.strategy == Some(StrategyKind::Adaptive))
    }

    /// Checks regions and ranges, naming the key (`fallback.countries.hn`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000_000).contains(&self.adaptive.min_samples) {
            return Err(ConfigError::new(
                "fallback.adaptive.min_samples",
                format!(
                    "must be between 1 and 1000000000, got {}",
                    self.adaptive.min_samples
                ),
            ));
        }
        if self.adaptive.stats_refresh < MIN_STATS_REFRESH {
            return Err(ConfigError::new(
                "fallback.adaptive.stats_refresh",
                format!(
                    "must be at least 1s, got {}",
                    duration::format(self.adaptive.stats_refresh)
                ),
            ));
        }
        for (region, country) in &self.countries {
            let key = format!("fallback.countries.{region}");
            if region.len() != 2 || !region.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(ConfigError::new(
                    key,
                    "use an upper-case ISO 3166-1 alpha-2 region, e.g. HN",
                ));
            }
            if country.strategy.is_none() && country.workflow.is_none() {
                return Err(ConfigError::new(key, "sets neither strategy nor workflow"));
            }
        }
        Ok(())
    }
}

/// The configured strategies, ready to answer: which strategy and workflow a country uses,
/// and the strategy a stored verification named.
#[derive(Debug)]
pub struct FallbackPolicy {
    config: FallbackConfig,
    ordered: Ordered,
    adaptive: Adaptive,
}

impl FallbackPolicy {
    /// Validates `config`; `stats` feeds the adaptive strategy (the server's conversion
    /// counts; [`NoConversionStats`] when there are none).
    pub fn new(
        config: FallbackConfig,
        stats: Arc<dyn ConversionStats>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let adaptive = Adaptive::new(stats, config.adaptive.min_samples);
        Ok(FallbackPolicy {
            config,
            ordered: Ordered,
            adaptive,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FallbackConfig {
        &self.config
    }

    /// The strategy and workflow for a number of `region`.
    pub fn for_region(&self, region: Option<&str>) -> (&dyn FallbackStrategy, &Workflow) {
        let country = region.and_then(|r| self.config.countries.get(r));
        let kind = country
            .and_then(|c| c.strategy)
            .unwrap_or(self.config.strategy);
        let workflow = country
            .and_then(|c| c.workflow.as_ref())
            .unwrap_or(&self.config.workflow);
        (self.strategy(kind), workflow)
    }

    /// The strategy of `kind`, e.g. the one a stored verification started with.
    pub fn strategy(&self, kind: StrategyKind) -> &dyn FallbackStrategy {
        match kind {
            StrategyKind::Ordered => &self.ordered,
            StrategyKind::Adaptive => &self.adaptive,
        }
    }
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn show(step: WorkflowStep) -> String {
    format!("{}({})", step.channel, duration::format(step.wait))
}

#[cfg(test)]
mod tests;
