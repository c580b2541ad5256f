//! Graceful shutdown shared by carriers: a gate that refuses new submissions once shutdown has
//! begun and counts the ones in flight, and the wait loop that lets shutdown wait for them.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{CarrierError, ErrorKind};

/// Waits until `done` holds (`true`) or `deadline` passes (`false`, after a last look). `done`
/// is checked at the start and each time `changed` is notified; whoever changes what `done`
/// reads must call `changed.notify_waiters()` afterwards. `None` waits without a deadline.
pub async fn wait_for(
    changed: &Notify,
    mut done: impl FnMut() -> bool,
    deadline: Option<Instant>,
) -> bool {
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return true;
        }
        match deadline {
            Some(deadline) => {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return done();
                }
            }
            None => notified.await,
        }
    }
}

/// Admits submissions until shutdown begins and counts those in flight, so shutdown can refuse
/// new ones (as a temporary [`ErrorKind::ShuttingDown`], which routing fails over) and wait for
/// the rest. Cloning shares the gate.
#[derive(Debug, Clone, Default)]
pub struct InFlightGate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    state: Mutex<GateState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    in_flight: usize,
}

/// One submission admitted by an [`InFlightGate`]; it counts as in flight until dropped. It may
/// be moved into a task that finishes the work.
#[derive(Debug)]
#[must_use = "the submission counts as in flight only while this is held"]
pub struct InFlight {
    inner: Arc<GateInner>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner.lock().in_flight -= 1;
        self.inner.changed.notify_waiters();
    }
}

impl GateInner {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InFlightGate {
    /// An open gate with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits a submission, or `None` once [`close`](Self::close) was called.
    pub fn try_enter(&self) -> Option<InFlight> {
        let mut state = self.inner.lock();
        if state.closed {
            return None;
        }
        state.in_flight += 1;
        Some(InFlight {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Admits a submission to carrier `carrier`, or refuses it with the temporary
    /// [`ErrorKind::ShuttingDown`] error "carrier `{carrier}` is shutting down".
    pub fn enter(&self, carrier: &str) -> Result<InFlight, CarrierError> {
        self.try_enter().ok_or_else(|| {
            CarrierError::new(
                ErrorKind::ShuttingDown,
                format!("carrier `{carrier}` is shutting down"),
            )
        })
    }

    /// Refuses every later submission; those in flight go on.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.changed.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// How many admitted submissions have not ended yet.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    /// Waits until nothing is in flight (`true`) or `deadline` passes (`false`); `None` waits
    /// as long as it takes.
    pub async fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        wait_for(&self.inner.changed, || self.in_flight() == 0, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn closing_refuses_new_submissions_and_waits_for_running_ones() {
        let gate = InFlightGate::new();
        let running = gate.enter("c").unwrap();
        assert_eq!(gate.in_flight(), 1);
        gate.close();
        assert!(gate.is_closed());
        let refused = gate.enter("c").unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ShuttingDown);
        assert!(refused.is_temporary());
        assert!(refused.message().contains("carrier `c` is shutting down"));
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!gate.wait_idle(Some(soon)).await);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_idle(None).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(running);
        assert!(waiter.await.unwrap());
        assert_eq!(gate.in_flight(), 0);
    }
}
