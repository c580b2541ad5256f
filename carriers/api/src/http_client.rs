//! The HTTP client HTTP carriers share (rustls with the ring provider, the platform's roots, a
//! timeout per request, a user agent naming verifyd) and the small helpers for vendors' answers.

use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{CarrierError, ErrorKind};

static INSTALL_PROVIDER: Once = Once::new();

/// Makes ring the process's rustls crypto provider (once; an earlier choice is kept).
pub fn install_crypto_provider() {
    INSTALL_PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client for one carrier: each request gives up after `timeout`.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, CarrierError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("verifyd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CarrierError::new(ErrorKind::Config, format!("HTTP client: {e}")))
}

/// Maps a failed request (no HTTP answer at all) to a carrier error: connection refused or
/// reset is `Unavailable`, no answer in time is `Timeout`; both temporary. The message names
/// the host only, never the URL's query or credentials.
pub fn request_error(error: reqwest::Error) -> CarrierError {
    let host = error
        .url()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_else(|| "the carrier".to_string());
    if error.is_timeout() {
        CarrierError::new(ErrorKind::Timeout, format!("{host} did not answer in time"))
    } else if error.is_connect() {
        CarrierError::new(ErrorKind::Unavailable, format!("cannot connect to {host}"))
    } else {
        CarrierError::new(
            ErrorKind::Unavailable,
            format!("request to {host} failed: {}", error.without_url()),
        )
        .set_temporary()
    }
}

/// Reads an answer body, keeping at most `max_bytes` of it (vendors' answers are small; a
/// larger one is cut, not buffered whole).
pub async fn read_bounded(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, CarrierError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        let room = max_bytes.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(body)
}

/// Seconds since the Unix epoch (0 for a clock before it): the timestamps of vendors' request
/// and receipt signatures.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Vendor text fit for an error or a receipt detail: at most `max_chars` characters, control
/// characters as spaces, and the one-time `code` (when not empty) replaced by `<code>`.
pub fn vendor_text(text: &str, code: &str, max_chars: usize) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if !code.is_empty() {
        clean = clean.replace(code, "<code>");
    }
    clean
}
