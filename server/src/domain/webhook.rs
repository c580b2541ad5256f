//! Status webhooks as Standard Webhooks define them: what each event is called, how a request
//! is signed, and when a failed delivery is tried again. The sending itself is the server's
//! (`crate::webhooks`).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{EventKind, Subject};

/// Prefix of a webhook secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook's signing secret: 24 to 64 random bytes, written `whsec_` and base64. Its Debug
/// form hides it, so it never reaches a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"whsec_<redacted>\"")
        }
    }
}

impl WebhookSecret {
    /// A new random secret of 32 bytes.
    pub fn generate() -> WebhookSecret {
        let bytes: [u8; 32] = rand::random();
        WebhookSecret(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// A secret from its text form, checked.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let secret = WebhookSecret(text.trim().to_string());
        secret.key()?;
        Ok(secret)
    }

    /// The text form (`whsec_...`); empty for none.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key bytes.
    fn key(&self) -> Result<Vec<u8>, String> {
        let encoded = self.0.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            format!("must start with `{SECRET_PREFIX}` followed by base64 (leave it empty to have one made)")
        })?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("the part after `{SECRET_PREFIX}` is not base64"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "holds {} bytes; use 24 to 64 random bytes",
                key.len()
            ));
        }
        Ok(key)
    }

    /// The `webhook-signature` header of a request: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}` under the secret's key.
    pub fn sign(&self, id: &str, timestamp_secs: i64, body: &[u8]) -> Result<String, String> {
        let key = self.key()?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
            .map_err(|e| format!("webhook key: {e}"))?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        Ok(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ))
    }
}

/// Checks a webhook URL: `https`, or `http` to a loopback host (a receiver on the same
/// machine); no credentials in it.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    // The errors do not repeat the URL: it may carry a token.
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not a URL such as https://api.example.com/verifyd".to_string())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not hold credentials; the signature proves who sends".into());
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(
            "plain http to another host: use https (http only to a receiver on this host)".into(),
        ),
        _ => Err(format!("the scheme `{scheme}` is not http or https")),
    }
}

/// The `type` of an event's payload: `verification.approved`, `message.delivered`,
/// `notification.scheduled` ...; `None` for events that are no service's (blocks).
pub fn event_type(kind: EventKind, subject: &Subject) -> Option<String> {
    if matches!(subject, Subject::Block(_)) {
        return None;
    }
    let name = kind.as_str();
    Some(
        match ["verification_", "message_", "notification_"]
            .iter()
            .find(|prefix| name.starts_with(*prefix))
        {
            Some(prefix) => format!("{}.{}", &prefix[..prefix.len() - 1], &name[prefix.len()..]),
            // `check_failed`, `fallback_step`: about the verification.
            None => format!("verification.{name}"),
        },
    )
}

/// When a failed delivery is tried again: after each delay in turn, then given up. The
/// default follows the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
/// 10 h), which keeps trying for more than a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        RetrySchedule(vec![
            Duration::from_secs(5),
            minutes(5),
            minutes(30),
            minutes(120),
            minutes(300),
            minutes(600),
            minutes(600),
        ])
    }
}

impl RetrySchedule {
    /// The wait after the `failures`-th failed attempt (1 for the first); `None` when no try
    /// is left.
    pub fn after_failure(&self, failures: u32) -> Option<Duration> {
        let index = usize::try_from(failures).ok()?.checked_sub(1)?;
        self.0.get(index).copied()
    }

    /// How long it keeps trying, all delays together.
    pub fn span(&self) -> Duration {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret
                .sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
                .unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(format!("{secret:?}"), "\"whsec_<redacted>\"");
        let made = WebhookSecret::generate();
        assert!(made.expose().starts_with("whsec_"));
        assert!(WebhookSecret::parse(made.expose()).is_ok());
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(check_webhook_url("https://api.example.com/hooks/verifyd").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_webhook_url("http://localhost/hook").is_ok());
        for bad in [
            "http://api.example.com/hook",
            "https://user:pw@api.example.com/hook",
            "ftp://example.com",
            "api.example.com/hook",
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn types_name_the_subject_and_what_happened() {
        let v = Subject::Verification("vf_1".into());
        let n = Subject::Notification("nt_1".into());
        assert_eq!(
            event_type(EventKind::VerificationApproved, &v).unwrap(),
            "verification.approved"
        );
        assert_eq!(
            event_type(EventKind::MessageDelivered, &n).unwrap(),
            "message.delivered"
        );
        assert_eq!(
            event_type(EventKind::CheckFailed, &v).unwrap(),
            "verification.check_failed"
        );
        assert_eq!(
            event_type(EventKind::NotificationScheduled, &n).unwrap(),
            "notification.scheduled"
        );
        assert_eq!(
            event_type(
                EventKind::DestinationBlocked,
                &Subject::Block("blk_1".into())
            ),
            None
        );
    }

    #[test]
    fn retries_last_more_than_a_day_then_stop() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.after_failure(1), Some(Duration::from_secs(5)));
        assert_eq!(schedule.after_failure(7), Some(Duration::from_secs(36_000)));
        assert_eq!(schedule.after_failure(8), None);
        assert_eq!(schedule.after_failure(0), None);
        assert!(schedule.span() > Duration::from_secs(24 * 3600));
    }
}
