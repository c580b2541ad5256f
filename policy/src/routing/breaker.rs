//! Circuit breakers, one per route (carrier × country × channel): a route that keeps refusing
//! messages for now is set aside for a cool-down, then probed, then trusted again.
//!
//! Time is passed in (`now: Instant`) rather than read, so the state machine is deterministic
//! under test; the registry is a `Mutex`-guarded map, safe to share between dispatcher tasks.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use verify_carrier::Channel;

use super::duration::{self, format as show};
use super::{ConfigError, HealthView, RouteHealth};

/// `[routes.breaker]`: when a route is set aside and how it comes back.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// `false` turns breakers off: every route is always tried in plan order.
    pub enabled: bool,
    /// Temporary failures in a row that open the breaker.
    pub consecutive_failures: u32,
    /// How long an open breaker keeps its route aside before probing it (`"30s"`).
    #[serde(with = "duration::text")]
    pub cool_down: Duration,
    /// Messages let through at once while half-open; one success closes the breaker, one
    /// failure opens it again.
    pub half_open_probes: u32,
    /// Optional second trigger: the breaker also opens when at least this share (0 < r ≤ 1)
    /// of the calls in the current `window` failed, once the window holds `min_calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Length of the (tumbling) window for `failure_rate` (`"60s"`).
    #[serde(with = "duration::text")]
    pub window: Duration,
    /// Calls a window must hold before `failure_rate` is judged.
    pub min_calls: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            enabled: true,
            consecutive_failures: 5,
            cool_down: Duration::from_secs(30),
            half_open_probes: 1,
            failure_rate: None,
            window: Duration::from_secs(60),
            min_calls: 20,
        }
    }
}

impl BreakerSettings {
    /// Checks ranges, naming the key (`routes.breaker.cool_down`) of a wrong value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |name: &str| format!("routes.breaker.{name}");
        if !(1..=1000).contains(&self.consecutive_failures) {
            return Err(ConfigError::new(
                key("consecutive_failures"),
                format!(
                    "must be between 1 and 1000, got {}",
                    self.consecutive_failures
                ),
            ));
        }
        if self.cool_down < Duration::from_millis(100) || self.cool_down > Duration::from_secs(3600)
        {
            return Err(ConfigError::new(
                key("cool_down"),
                format!("must be between 100ms and 1h, got {}", show(self.cool_down)),
            ));
        }
        if !(1..=1000).contains(&self.half_open_probes) {
            return Err(ConfigError::new(
                key("half_open_probes"),
                format!("must be between 1 and 1000, got {}", self.half_open_probes),
            ));
        }
        if let Some(rate) = self.failure_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(ConfigError::new(
                key("failure_rate"),
                format!("must be a share above 0 and at most 1 (0.5 = half), got {rate}"),
            ));
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::new(
                key("window"),
                format!("must be between 1s and 24h, got {}", show(self.window)),
            ));
        }
        if self.min_calls == 0 {
            return Err(ConfigError::new(key("min_calls"), "must be at least 1"));
        }
        Ok(())
    }
}

/// A route as breakers know it: a carrier carrying one channel to one country. A carrier can
/// fail for one country (its upstream there is down) or one channel (its voice platform) while
/// working for the others, so each gets its own breaker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// Configured carrier name.
    pub carrier: String,
    /// ISO 3166-1 alpha-2 region, or `*` when the number's region is unknown.
    pub region: String,
    /// The channel.
    pub channel: Channel,
}

impl RouteKey {
    /// The route of `carrier` carrying `channel` to `region`.
    pub fn new(carrier: &str, region: Option<&str>, channel: Channel) -> Self {
        RouteKey {
            carrier: carrier.to_string(),
            region: region.unwrap_or("*").to_string(),
            channel,
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} to {}", self.carrier, self.channel, self.region)
    }
}

/// The three states of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Messages flow; failures are counted.
    Closed,
    /// The route is set aside until the cool-down ends.
    Open,
    /// A few probe messages may pass; the first outcome decides.
    HalfOpen,
}

impl BreakerState {
    /// Lower-case name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Whether a message may be sent on a route now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Breaker closed: send.
    Allowed,
    /// Breaker half-open and a probe slot was taken: send, and report the outcome.
    Probe,
    /// Breaker open (or no probe slot free): try the next route; why, for the event.
    Rejected {
        /// E.g. "breaker open for 12s after 5 temporary failures in a row; probes in 18s".
        why: String,
    },
}

/// A breaker's state at one moment, for explanations and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    /// The state.
    pub state: BreakerState,
    /// Temporary failures in a row so far (closed).
    pub consecutive_failures: u32,
    /// Calls and failures in the current failure-rate window.
    pub window_calls: u32,
    /// Failures among `window_calls`.
    pub window_failures: u32,
    /// Time since the breaker last opened, while it is open or half-open.
    pub open_for: Option<Duration>,
    /// Time left until probing starts, while it is open.
    pub probes_in: Option<Duration>,
    /// Probe messages sent and not yet reported, while half-open.
    pub probes_in_flight: u32,
    /// Why it opened, e.g. "5 temporary failures in a row (last: throttled)".
    pub cause: Option<String>,
    /// How many times it opened since start.
    pub times_opened: u64,
}

/// One route's breaker: a pure state machine; [`CircuitBreakers`] holds one per route behind a
/// lock. Outcomes are reported with [`Breaker::record_success`] and
/// [`Breaker::record_failure`]: a temporary refusal or no answer is a failure; a permanent
/// refusal (invalid number, rejected content) shows the route answers, so it is a success.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    window_start: Option<Instant>,
    window_calls: u32,
    window_failures: u32,
    opened_at: Option<Instant>,
    half_open_since: Option<Instant>,
    probes_in_flight: u32,
    cause: Option<String>,
    times_opened: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            window_start: None,
            window_calls: 0,
            window_failures: 0,
            opened_at: None,
            half_open_since: None,
            probes_in_flight: 0,
            cause: None,
            times_opened: 0,
        }
    }

    /// The state at `now` (an open breaker whose cool-down ended is half-open).
    pub fn state(&mut self, settings: &BreakerSettings, now: Instant) -> BreakerState {
        self.advance(settings, now);
        self.state
    }

    /// Asks to send one message at `now`; a half-open breaker hands out at most
    /// `half_open_probes` probe slots until an outcome is reported.
    pub fn admit(&mut self, settings: &BreakerSettings, now: Instant) -> Admission {
        self.advance(settings, now);
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::HalfOpen if self.probes_in_flight < settings.half_open_probes => {
                self.probes_in_flight += 1;
                Admission::Probe
            }
            _ => Admission::Rejected {
                why: self.why(settings, now),
            },
        }
    }

    /// The route accepted a message: a half-open breaker closes.
    pub fn record_success(&mut self, settings: &BreakerSettings, now: Instant) {
        self.advance(settings, now);
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = 0;
                self.count_in_window(settings, now, false);
            }
            BreakerState::HalfOpen => self.close(),
            // A late answer to a message sent before the breaker opened proves little.
            BreakerState::Open => {}
        }
    }

    /// The route refused a message for now (throttled, down, no bind): counts toward opening;
    /// a half-open breaker opens again at once. `cause` is the carrier's reason, for
    /// explanations.
    pub fn record_failure(&mut self, settings: &BreakerSettings, now: Instant, cause: &str) {
        self.advance(settings, now);
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures += 1;
                self.count_in_window(settings, now, true);
                if self.consecutive_failures >= settings.consecutive_failures {
                    let cause = format!(
                        "{} temporary failures in a row (last: {cause})",
                        self.consecutive_failures
                    );
                    self.open(now, cause);
                } else if let Some(rate) = settings.failure_rate
                    && self.window_calls >= settings.min_calls
                    && f64::from(self.window_failures) >= rate * f64::from(self.window_calls)
                {
                    let cause = format!(
                        "{} of {} calls failed within {} (last: {cause})",
                        self.window_failures,
                        self.window_calls,
                        show(settings.window)
                    );
                    self.open(now, cause);
                }
            }
            BreakerState::HalfOpen => self.open(now, format!("probe failed: {cause}")),
            BreakerState::Open => {}
        }
    }

    /// The state and counters at `now`.
    pub fn snapshot(&mut self, settings: &BreakerSettings, now: Instant) -> BreakerSnapshot {
        self.advance(settings, now);
        let open_for = match self.state {
            BreakerState::Closed => None,
            _ => self.opened_at.map(|at| now.saturating_duration_since(at)),
        };
        let probes_in = match self.state {
            BreakerState::Open => self
                .opened_at
                .map(|at| (at + settings.cool_down).saturating_duration_since(now)),
            _ => None,
        };
        BreakerSnapshot {
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            window_calls: self.window_calls,
            window_failures: self.window_failures,
            open_for,
            probes_in,
            probes_in_flight: self.probes_in_flight,
            cause: self.cause.clone(),
            times_opened: self.times_opened,
        }
    }

    /// The route's health at `now`, for the route planner: half-open with a free probe slot
    /// is `Probing`; open, or half-open with every slot taken, is `Unhealthy`.
    pub fn health(&mut self, settings: &BreakerSettings, now: Instant) -> RouteHealth {
        self.advance(settings, now);
        match self.state {
            BreakerState::Closed => RouteHealth::Healthy,
            BreakerState::HalfOpen if self.probes_in_flight < settings.half_open_probes => {
                RouteHealth::Probing
            }
            _ => RouteHealth::Unhealthy {
                why: self.why(settings, now),
            },
        }
    }

    fn why(&self, settings: &BreakerSettings, now: Instant) -> String {
        let opened = self.opened_at.unwrap_or(now);
        let open_for = show_rounded(now.saturating_duration_since(opened));
        let cause = self.cause.as_deref().unwrap_or("failures");
        match self.state {
            BreakerState::HalfOpen => format!(
                "breaker half-open (opened {open_for} ago after {cause}); its {} probe slot(s) are in use",
                settings.half_open_probes
            ),
            _ => format!(
                "breaker open for {open_for} after {cause}; probes in {}",
                show_rounded((opened + settings.cool_down).saturating_duration_since(now))
            ),
        }
    }

    /// Time-driven transitions: open → half-open after the cool-down; probes never reported
    /// within a cool-down (a crashed sender) stop holding their slots.
    fn advance(&mut self, settings: &BreakerSettings, now: Instant) {
        if self.state == BreakerState::Open
            && let Some(opened) = self.opened_at
            && now >= opened + settings.cool_down
        {
            self.state = BreakerState::HalfOpen;
            self.half_open_since = Some(now);
            self.probes_in_flight = 0;
        }
        if self.state == BreakerState::HalfOpen
            && self.probes_in_flight > 0
            && let Some(since) = self.half_open_since
            && now >= since + settings.cool_down
        {
            self.probes_in_flight = 0;
            self.half_open_since = Some(now);
        }
    }

    fn count_in_window(&mut self, settings: &BreakerSettings, now: Instant, failed: bool) {
        if settings.failure_rate.is_none() {
            return;
        }
        match self.window_start {
            Some(start) if now < start + settings.window => {}
            _ => {
                self.window_start = Some(now);
                self.window_calls = 0;
                self.window_failures = 0;
            }
        }
        self.window_calls += 1;
        self.window_failures += u32::from(failed);
    }

    fn open(&mut self, now: Instant, cause: String) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.half_open_since = None;
        self.probes_in_flight = 0;
        self.cause = Some(cause);
        self.times_opened += 1;
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive_failures = 0;
        self.window_start = None;
        self.window_calls = 0;
        self.window_failures = 0;
        self.opened_at = None;
        self.half_open_since = None;
        self.probes_in_flight = 0;
    }
}

/// Whole seconds for people (`12s`), milliseconds only below a second.
fn show_rounded(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        show(Duration::from_secs(duration.as_secs()))
    } else {
        show(Duration::from_millis(duration.as_millis() as u64))
    }
}

/// Every route's breaker, shared by the dispatcher's tasks (`Arc<CircuitBreakers>`).
///
/// At send time call [`admit`](Self::admit); after the carrier answers, report
/// [`record_success`](Self::record_success) or, for a temporary refusal or no answer in time,
/// [`record_failure`](Self::record_failure). Routes never reported on stay healthy and cost
/// nothing.
#[derive(Debug)]
pub struct CircuitBreakers {
    settings: BreakerSettings,
    routes: Mutex<HashMap<RouteKey, Breaker>>,
}

impl CircuitBreakers {
    /// Breakers with these settings (all closed).
    pub fn new(settings: BreakerSettings) -> Self {
        CircuitBreakers {
            settings,
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// Asks to send one message on `route` at `now`.
    pub fn admit(&self, route: &RouteKey, now: Instant) -> Admission {
        if !self.settings.enabled {
            return Admission::Allowed;
        }
        self.with(route, |breaker, settings| breaker.admit(settings, now))
    }

    /// `route` answered: it accepted a message, or refused it for good.
    pub fn record_success(&self, route: &RouteKey, now: Instant) {
        if self.settings.enabled {
            self.with(route, |breaker, settings| {
                breaker.record_success(settings, now)
            });
        }
    }

    /// `route` refused a message for now, or did not answer in time; `cause` says how.
    pub fn record_failure(&self, route: &RouteKey, now: Instant, cause: &str) {
        if self.settings.enabled {
            self.with(route, |breaker, settings| {
                breaker.record_failure(settings, now, cause)
            });
        }
    }

    /// One route's state at `now` (closed if never reported on).
    pub fn snapshot(&self, route: &RouteKey, now: Instant) -> BreakerSnapshot {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        match routes.get_mut(route) {
            Some(breaker) => breaker.snapshot(&self.settings, now),
            None => Breaker::new().snapshot(&self.settings, now),
        }
    }

    /// Every route reported on, with its state at `now`, sorted by route (for metrics).
    pub fn snapshots(&self, now: Instant) -> Vec<(RouteKey, BreakerSnapshot)> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = routes
            .iter_mut()
            .map(|(key, breaker)| (key.clone(), breaker.snapshot(&self.settings, now)))
            .collect();
        all.sort_by(|(a, _), (b, _)| {
            (&a.carrier, &a.region, a.channel.as_str()).cmp(&(
                &b.carrier,
                &b.region,
                b.channel.as_str(),
            ))
        });
        all
    }

    /// A [`HealthView`] of these breakers at `now`, for [`RoutePlanner::candidates`].
    ///
    /// [`RoutePlanner::candidates`]: super::RoutePlanner::candidates
    pub fn at(&self, now: Instant) -> BreakerView<'_> {
        BreakerView {
            breakers: self,
            now,
        }
    }

    fn with<T>(&self, route: &RouteKey, f: impl FnOnce(&mut Breaker, &BreakerSettings) -> T) -> T {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let breaker = match routes.get_mut(route) {
            Some(breaker) => breaker,
            None => routes.entry(route.clone()).or_default(),
        };
        f(breaker, &self.settings)
    }
}

/// [`CircuitBreakers`] seen at one moment, as a [`HealthView`].
#[derive(Debug, Clone, Copy)]
pub struct BreakerView<'a> {
    breakers: &'a CircuitBreakers,
    now: Instant,
}

impl HealthView for BreakerView<'_> {
    fn health(&self, carrier: &str, region: Option<&str>, channel: Channel) -> RouteHealth {
        if !self.breakers.settings.enabled {
            return RouteHealth::Healthy;
        }
        let key = RouteKey::new(carrier, region, channel);
        let mut routes = self
            .breakers
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match routes.get_mut(&key) {
            Some(breaker) => breaker.health(&self.breakers.settings, self.now),
            None => RouteHealth::Healthy,
        }
    }
}

#[cfg(test)]
mod tests;
