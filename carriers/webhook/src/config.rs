//! Settings of a `webhook` carrier, from its `[[carriers]]` table.
//!
//! Secrets (the HMAC key, header values) are wrapped in [`Secret`], whose `Debug` output is
//! redacted, and validation errors name the setting, never its value.

use std::collections::BTreeMap;

use serde::Deserialize;
use verify_carrier::Channel;
use verify_carrier::Secret;

/// Headers this carrier sets itself; `headers` may not override them.
pub const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    "x-verifyd-timestamp",
    "x-verifyd-signature",
];

/// The shortest shared secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Settings of a `webhook` carrier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The gateway's endpoint that takes messages (`POST`), `https://` or `http://`.
    pub url: String,
    /// The shared HMAC-SHA256 key that signs requests and receipts; at least 16 bytes.
    pub secret: Secret,
    /// Time limit of one request, in milliseconds; default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Channels the gateway carries; default `["sms"]`.
    #[serde(default = "default_channels")]
    pub channels: Vec<Channel>,
    /// Regions (ISO 3166-1 alpha-2) the gateway serves; empty (default) means everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Extra static headers sent with every request (e.g. an API key); values are secret.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// How long shutdown waits for the receipts of accepted messages, in ms; default 10000.
    #[serde(default = "default_shutdown_wait_ms")]
    pub shutdown_receipt_wait_ms: u64,
    /// How far a receipt's `X-Verifyd-Timestamp` may be from now, in seconds; default 300.
    #[serde(default = "default_max_clock_skew_s")]
    pub max_clock_skew_s: u64,
    /// The gateway's throughput limit (messages per second), reported to routing; none by default.
    #[serde(default)]
    pub max_messages_per_second: Option<u32>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_channels() -> Vec<Channel> {
    vec![Channel::Sms]
}

fn default_shutdown_wait_ms() -> u64 {
    10_000
}

fn default_max_clock_skew_s() -> u64 {
    300
}

impl WebhookConfig {
    /// Settings with every default, for a gateway at `url` sharing `secret`.
    pub fn new(url: impl Into<String>, secret: Secret) -> Self {
        Self {
            url: url.into(),
            secret,
            timeout_ms: default_timeout_ms(),
            channels: default_channels(),
            regions: Vec::new(),
            headers: BTreeMap::new(),
            shutdown_receipt_wait_ms: default_shutdown_wait_ms(),
            max_clock_skew_s: default_max_clock_skew_s(),
            max_messages_per_second: None,
        }
    }

    /// Checks what serde cannot; the error names the setting, never a secret.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err("url must start with https:// or http://".into());
        }
        if reqwest::Url::parse(&self.url).is_err() {
            return Err("url is not a valid URL".into());
        }
        if self.secret.expose().len() < MIN_SECRET_BYTES {
            return Err(format!("secret must be at least {MIN_SECRET_BYTES} bytes"));
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be greater than 0".into());
        }
        if self.max_clock_skew_s == 0 {
            return Err("max_clock_skew_s must be greater than 0".into());
        }
        if self.channels.is_empty() {
            return Err("channels must name at least one of sms, voice".into());
        }
        if self.max_messages_per_second == Some(0) {
            return Err("max_messages_per_second must be greater than 0".into());
        }
        verify_carrier::check_regions(&self.regions)?;
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("headers: `{name}` is not a valid header name"));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!("headers: `{name}` is set by verifyd itself"));
            }
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                return Err(format!(
                    "headers: the value of `{name}` is not a valid header value"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let mut config = WebhookConfig::new(
            "https://gw.example/messages",
            Secret::new("very-secret-key-123"),
        );
        config
            .headers
            .insert("X-Api-Key".into(), Secret::new("very-secret-header"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("X-Api-Key"), "{shown}");
    }

    #[test]
    fn mistyped_secret_is_not_echoed() {
        let error = serde_json::from_value::<WebhookConfig>(serde_json::json!({
            "url": "https://gw.example", "secret": 98245165398245165_u64
        }))
        .unwrap_err()
        .to_string();
        assert!(!error.contains("98245165398245165"), "{error}");
    }
}
