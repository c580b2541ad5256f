//! The breaker as a layer around a carrier: the dispatcher keeps calling `submit`, and a route
//! whose breaker is open answers with a temporary error at once, so the dispatcher's failover
//! moves the message to the next route as it does for any temporary refusal.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use verify_carrier::{
    CallbackRequest, CallbackResponse, Capabilities, Carrier, CarrierError, ErrorKind,
    OutboundMessage, SubmitAccepted,
};

use super::{Admission, CircuitBreakers, RouteKey};

/// Message attribute the dispatcher sets (to any value) when no other route is left: the
/// layer then sends even through an open breaker, as a last resort. The layer removes it
/// before the carrier sees the message.
pub const LAST_RESORT_ATTRIBUTE: &str = "verifyd.last_resort";

/// Where the layer reads the time; injected so tests control it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A carrier behind its routes' circuit breakers (one per country and channel it carries).
///
/// `submit` asks the breaker first: open means a temporary `Unavailable` error naming the
/// breaker, without calling the carrier. Then it reports the outcome: accepted, or refused
/// for good (the route answered), count as success; a temporary refusal, a maybe-sent error
/// (the request went out and no answer came), or no answer before the caller gave up (the
/// future dropped by the dispatcher's timeout), as failure.
pub struct BreakerLayer {
    inner: Arc<dyn Carrier>,
    breakers: Arc<CircuitBreakers>,
    clock: Arc<dyn Clock>,
}

impl BreakerLayer {
    /// Wraps `inner`; every layer of a server shares one `breakers`.
    pub fn new(
        inner: Arc<dyn Carrier>,
        breakers: Arc<CircuitBreakers>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        BreakerLayer {
            inner,
            breakers,
            clock,
        }
    }

    /// The wrapped carrier.
    pub fn inner(&self) -> &Arc<dyn Carrier> {
        &self.inner
    }
}

impl fmt::Debug for BreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("carrier", &self.inner.name())
            .finish_non_exhaustive()
    }
}

/// Reports "no answer" if the submission is dropped before it settles.
struct Unsettled<'a> {
    layer: &'a BreakerLayer,
    route: RouteKey,
    settled: bool,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.layer.breakers.record_failure(
                &self.route,
                self.layer.clock.now(),
                "no answer in time",
            );
        }
    }
}

#[async_trait]
impl Carrier for BreakerLayer {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn submit(&self, mut message: OutboundMessage) -> Result<SubmitAccepted, CarrierError> {
        let route = RouteKey::new(
            self.inner.name(),
            message.region_code.as_deref(),
            message.channel,
        );
        let last_resort = message.attributes.remove(LAST_RESORT_ATTRIBUTE).is_some();
        if let Admission::Rejected { why } = self.breakers.admit(&route, self.clock.now())
            && !last_resort
        {
            return Err(CarrierError::new(
                ErrorKind::Unavailable,
                format!("not sent: {} {why}", route.carrier),
            )
            .set_temporary());
        }
        let mut guard = Unsettled {
            layer: self,
            route,
            settled: false,
        };
        let result = self.inner.submit(message).await;
        guard.settled = true;
        let now = self.clock.now();
        match &result {
            Err(error) if error.is_temporary() || error.is_maybe_sent() => self
                .breakers
                .record_failure(&guard.route, now, error.message()),
            _ => self.breakers.record_success(&guard.route, now),
        }
        result
    }

    async fn start(&self) -> Result<(), CarrierError> {
        self.inner.start().await
    }

    async fn handle_callback(&self, request: CallbackRequest) -> CallbackResponse {
        self.inner.handle_callback(request).await
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests;
