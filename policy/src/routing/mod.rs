//! Routing: which carriers, in which order, may carry a message to a number, and whether each
//! route is healthy enough to try now.
//!
//! [`RoutePlan`] is the `[routes]` configuration (plain carrier lists or routes with cost,
//! priority and operator prefixes); [`RoutePlanner`] orders a number's candidate routes from it,
//! asking a [`HealthView`] (usually [`CircuitBreakers`]) which routes are failing. `RouteTable` is
//! the earlier plain form, kept while the server moves to `RoutePlan`. See `policy/ROUTING.md`.

mod breaker;
pub(crate) mod duration;
mod layer;
mod plan;
mod table;

use std::fmt;

pub use breaker::{
    Admission, Breaker, BreakerSettings, BreakerSnapshot, BreakerState, BreakerView,
    CircuitBreakers, RouteKey,
};
pub use layer::{BreakerLayer, Clock, LAST_RESORT_ATTRIBUTE, SystemClock};
pub use plan::{Candidate, RouteEntry, RoutePlan, RoutePlanner};
pub use table::RouteTable;

/// A configuration value that cannot be used, naming its key (`routes.countries.IN[1].cost`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The dotted key of the offending value, as written in the TOML file.
    pub key: String,
    /// What is wrong and, where it helps, what to write instead.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// How usable a route is right now, as seen by its circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteHealth {
    /// Working, or not known to fail.
    Healthy,
    /// Recovering: the breaker lets a few probe messages through to see whether it works again.
    Probing,
    /// Failing: the breaker is open (or all its probe slots are taken); why, for explanations.
    Unhealthy {
        /// E.g. "breaker open for 12s after 5 temporary failures in a row; probes in 18s".
        why: String,
    },
}

impl RouteHealth {
    /// Whether the route should be tried before failing ones.
    pub fn is_usable(&self) -> bool {
        !matches!(self, RouteHealth::Unhealthy { .. })
    }
}

impl fmt::Display for RouteHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteHealth::Healthy => f.write_str("healthy"),
            RouteHealth::Probing => f.write_str("breaker half-open, probing"),
            RouteHealth::Unhealthy { why } => f.write_str(why),
        }
    }
}

/// Live health of routes, as the route planner sees it. [`CircuitBreakers::at`] is the usual
/// implementation; [`AllHealthy`] ignores health (tests, or no breakers configured).
pub trait HealthView {
    /// The health of `carrier` carrying `channel` to `region` (`None`: region unknown).
    fn health(&self, carrier: &str, region: Option<&str>, channel: crate::Channel) -> RouteHealth;
}

/// A [`HealthView`] in which every route is healthy.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllHealthy;

impl HealthView for AllHealthy {
    fn health(&self, _: &str, _: Option<&str>, _: crate::Channel) -> RouteHealth {
        RouteHealth::Healthy
    }
}
