//! The signature of requests and receipts: `X-Verifyd-Signature: v1=<hex>` where `<hex>` is the
//! lowercase hex HMAC-SHA256, keyed by the shared secret, of `<timestamp>.<raw body>`, and
//! `<timestamp>` is the `X-Verifyd-Timestamp` header (unix seconds).

use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

/// Header carrying the unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Verifyd-Timestamp";
/// Header carrying the signature, `v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Verifyd-Signature";

/// The `v1=<hex>` signature of `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<sha2::Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a signed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No timestamp or no signature header.
    Missing,
    /// The timestamp is not a number of seconds.
    BadTimestamp,
    /// The timestamp is further from now than the allowed skew.
    Stale,
    /// No `v1=` signature matches.
    Mismatch,
}

impl SignatureError {
    /// A short reason, for the callback answer and the log.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing X-Verifyd-Timestamp or X-Verifyd-Signature",
            SignatureError::BadTimestamp => "X-Verifyd-Timestamp is not unix seconds",
            SignatureError::Stale => "X-Verifyd-Timestamp is outside the allowed clock skew",
            SignatureError::Mismatch => "X-Verifyd-Signature does not match",
        }
    }
}

/// Checks the headers of a signed message against its raw `body`: the timestamp within
/// `max_skew_s` of `now`, and one of the comma-separated `v1=` signatures matching (compared
/// in constant time).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
    max_skew_s: u64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let timestamp: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if now.abs_diff(timestamp) > max_skew_s {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, body).finalize().into_bytes();
    let mut matched = subtle::Choice::from(0u8);
    for candidate in signature.split(',') {
        let Some(hex_value) = candidate.trim().strip_prefix("v1=") else {
            continue;
        };
        let Ok(given) = hex::decode(hex_value) else {
            continue;
        };
        matched |= expected.as_slice().ct_eq(&given);
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-test-0123456789";
    const BODY: &[u8] = br#"{"id":"gw-1","status":"delivered"}"#;

    /// Computed independently with Python: hmac.new(SECRET, b"1700000000." + BODY, sha256).
    #[test]
    fn known_vector() {
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            "v1=26a48d0b9622069256223a1c3ea0f4dcdf8fbae53d1be13ae9dd1440b283e8c3"
        );
    }

    #[test]
    fn verify_accepts_fresh_and_refuses_tampered_missing_and_stale() {
        let now = 1_700_000_000;
        let sig = sign(SECRET, now, BODY);
        let ts = now.to_string();
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&sig), BODY, now + 10, 300),
            Ok(())
        );
        let rotated = format!("v1=00ff, {sig}");
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&rotated), BODY, now, 300),
            Ok(())
        );
        let tampered = br#"{"id":"gw-1","status":"failed"}"#;
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&sig), tampered, now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&ts), Some(&sig), BODY, now, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, None, Some(&sig), BODY, now, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), None, BODY, now, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&sig), BODY, now + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some("soon"), Some(&sig), BODY, now, 300),
            Err(SignatureError::BadTimestamp)
        );
        let bare = sig.trim_start_matches("v1=");
        assert_eq!(
            verify(SECRET, Some(&ts), Some(bare), BODY, now, 300),
            Err(SignatureError::Mismatch),
            "the v1= prefix is required"
        );
    }
}
