//! Carrier errors: a kind, a temporary/permanent flag and a message for people.
//!
//! Routing retries and fails over only on temporary errors; a permanent error fails the message.

use std::fmt;

/// What went wrong, independent of the carrier's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The carrier configuration is wrong (missing setting, bad value).
    Config,
    /// The carrier cannot be reached or the connection broke.
    Unavailable,
    /// The carrier asked us to slow down (throttled, queue full).
    RateLimited,
    /// The carrier refused this destination (unknown, barred, not routable).
    InvalidDestination,
    /// The carrier refused the message itself (content, sender, registration).
    Rejected,
    /// The carrier does not support what was asked (e.g. voice on an SMS-only route).
    Unsupported,
    /// The carrier did not answer in time.
    Timeout,
    /// The carrier is shutting down and takes no more messages.
    ShuttingDown,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether errors of this kind are usually worth retrying later or elsewhere.
    pub fn is_temporary_by_default(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable
                | ErrorKind::RateLimited
                | ErrorKind::Timeout
                | ErrorKind::ShuttingDown
        )
    }

    /// A short stable name for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::InvalidDestination => "invalid_destination",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a carrier. Messages must never contain codes, passwords or API keys.
///
/// A submission ends in one of three ways: accepted, refused (temporary or permanent), or
/// *maybe sent*: the request went out (a PDU was written, an HTTP request was sent) and no
/// answer came (a timeout, a link lost, a later part of a long message refused). A maybe-sent
/// error is neither temporary nor permanent: the message must not be failed over or resent,
/// since the peer may have it; a late receipt or the fallback workflow settles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierError {
    kind: ErrorKind,
    temporary: bool,
    maybe_sent: bool,
    message: String,
}

impl CarrierError {
    /// A new error whose temporary flag follows the kind's default.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            temporary: kind.is_temporary_by_default(),
            maybe_sent: false,
            message: message.into(),
        }
    }

    /// An error after the request went out: the peer may have taken the message (see the type's
    /// documentation). Never temporary, so nothing fails it over.
    pub fn maybe_sent(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            temporary: false,
            maybe_sent: true,
            message: message.into(),
        }
    }

    /// Marks the error temporary: retrying later or on another route may succeed. A
    /// maybe-sent error stays as it is: it can never be retried.
    pub fn set_temporary(mut self) -> Self {
        self.temporary = !self.maybe_sent;
        self
    }

    /// Marks the error permanent: the same message will fail again anywhere.
    pub fn set_permanent(mut self) -> Self {
        self.temporary = false;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether a retry later or on another route may succeed.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Whether the request went out before the error: the peer may have the message, so it
    /// must be neither failed over nor resent.
    pub fn is_maybe_sent(&self) -> bool {
        self.maybe_sent
    }

    /// The carrier's reason, for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let persistence = if self.maybe_sent {
            "maybe sent"
        } else if self.temporary {
            "temporary"
        } else {
            "permanent"
        };
        write!(f, "{} ({persistence}): {}", self.kind, self.message)
    }
}

impl std::error::Error for CarrierError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_flag_follows_kind_unless_overridden() {
        assert!(CarrierError::new(ErrorKind::RateLimited, "slow down").is_temporary());
        assert!(!CarrierError::new(ErrorKind::Rejected, "bad sender").is_temporary());
        assert!(
            CarrierError::new(ErrorKind::Other, "flaky")
                .set_temporary()
                .is_temporary()
        );
        let shown = CarrierError::new(ErrorKind::Timeout, "no answer").to_string();
        assert_eq!(shown, "timeout (temporary): no answer");
    }

    #[test]
    fn maybe_sent_is_never_temporary() {
        let error = CarrierError::maybe_sent(ErrorKind::Timeout, "no answer").set_temporary();
        assert!(error.is_maybe_sent());
        assert!(!error.is_temporary());
        assert_eq!(error.to_string(), "timeout (maybe sent): no answer");
        assert!(!CarrierError::new(ErrorKind::Timeout, "x").is_maybe_sent());
    }
}
