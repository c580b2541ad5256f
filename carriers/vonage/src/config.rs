//! Settings of a `vonage` carrier, from its `[[carriers]]` table.
//!
//! Secrets are wrapped in [`Secret`], whose `Debug` output is redacted, and validation errors
//! name the setting, never its value.

use serde::Deserialize;
use verify_carrier::Secret;

use crate::signature::SignatureMethod;

/// Which message attributes become Vonage's India DLT parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DltMapping {
    /// Attribute whose value is sent as `entity-id` (the registered principal entity).
    #[serde(default = "default_entity_attribute")]
    pub entity_id_attribute: String,
    /// Attribute whose value is sent as `content-id` (the registered template).
    #[serde(default = "default_content_attribute")]
    pub content_id_attribute: String,
}

fn default_entity_attribute() -> String {
    "dlt_entity_id".into()
}

fn default_content_attribute() -> String {
    "dlt_template_id".into()
}

impl Default for DltMapping {
    fn default() -> Self {
        Self {
            entity_id_attribute: default_entity_attribute(),
            content_id_attribute: default_content_attribute(),
        }
    }
}

/// Settings of a `vonage` carrier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageConfig {
    /// The account's API key (not secret: it appears in every request and receipt).
    pub api_key: String,
    /// The account's API secret; needed unless requests are signed.
    #[serde(default)]
    pub api_secret: Option<Secret>,
    /// The account's signature secret: signs requests and verifies receipt signatures.
    #[serde(default)]
    pub signature_secret: Option<Secret>,
    /// The signing method chosen in the Vonage dashboard; `md5hash` (Vonage's default).
    #[serde(default)]
    pub signature_method: SignatureMethod,
    /// Whether requests are signed (`sig` + `timestamp`) instead of carrying `api_secret`;
    /// default: true when `signature_secret` is set.
    #[serde(default)]
    pub sign_requests: Option<bool>,
    /// Default sender (`from`): alphanumeric ID or number; a route's sender overrides it.
    pub from: String,
    /// Base URL of the API; default `https://rest.nexmo.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Time limit of one API request, in milliseconds; default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Regions (ISO 3166-1 alpha-2) this carrier serves; empty (default) means everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Whether unsigned receipts are refused; default: true when `signature_secret` is set.
    #[serde(default)]
    pub require_signed_receipts: Option<bool>,
    /// Which message attributes carry India's DLT entity and template ids.
    #[serde(default)]
    pub dlt: DltMapping,
    /// How long shutdown waits for the receipts of accepted messages, in ms; default 10000.
    #[serde(default = "default_shutdown_wait_ms")]
    pub shutdown_receipt_wait_ms: u64,
    /// How far a signed receipt's `timestamp` may be from now, in seconds; default 300.
    #[serde(default = "default_max_clock_skew_s")]
    pub max_clock_skew_s: u64,
    /// The account's throughput limit (messages per second), reported to routing; default 30.
    #[serde(default = "default_max_messages_per_second")]
    pub max_messages_per_second: u32,
}

fn default_base_url() -> String {
    "https://rest.nexmo.com".into()
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_shutdown_wait_ms() -> u64 {
    10_000
}

fn default_max_clock_skew_s() -> u64 {
    300
}

fn default_max_messages_per_second() -> u32 {
    30
}

impl VonageConfig {
    /// Settings with every default, for `api_key` and `from` and an API secret.
    pub fn new(api_key: impl Into<String>, api_secret: Secret, from: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: Some(api_secret),
            signature_secret: None,
            signature_method: SignatureMethod::default(),
            sign_requests: None,
            from: from.into(),
            base_url: default_base_url(),
            timeout_ms: default_timeout_ms(),
            regions: Vec::new(),
            require_signed_receipts: None,
            dlt: DltMapping::default(),
            shutdown_receipt_wait_ms: default_shutdown_wait_ms(),
            max_clock_skew_s: default_max_clock_skew_s(),
            max_messages_per_second: default_max_messages_per_second(),
        }
    }

    /// Whether requests are signed rather than carrying the API secret.
    pub fn signs_requests(&self) -> bool {
        self.sign_requests
            .unwrap_or(self.signature_secret.is_some())
    }

    /// Whether receipts without a valid signature are refused.
    pub fn requires_signed_receipts(&self) -> bool {
        self.require_signed_receipts
            .unwrap_or(self.signature_secret.is_some())
    }

    /// Checks what serde cannot; the error names the setting, never a secret.
    pub fn validate(&self) -> Result<(), String> {
        if self.api_key.trim().is_empty() {
            return Err("api_key must not be empty".into());
        }
        if self.from.trim().is_empty() {
            return Err("from must not be empty".into());
        }
        let empty = |s: &Option<Secret>| s.as_ref().is_some_and(|s| s.expose().is_empty());
        if empty(&self.api_secret) {
            return Err("api_secret must not be empty".into());
        }
        if empty(&self.signature_secret) {
            return Err("signature_secret must not be empty".into());
        }
        if self.signs_requests() {
            if self.signature_secret.is_none() {
                return Err("sign_requests = true needs signature_secret".into());
            }
        } else if self.api_secret.is_none() {
            return Err(
                "api_secret is required (or set signature_secret to sign requests instead)".into(),
            );
        }
        if self.requires_signed_receipts() && self.signature_secret.is_none() {
            return Err("require_signed_receipts = true needs signature_secret".into());
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err("base_url must start with https:// or http://".into());
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be greater than 0".into());
        }
        if self.max_clock_skew_s == 0 {
            return Err("max_clock_skew_s must be greater than 0".into());
        }
        if self.max_messages_per_second == 0 {
            return Err("max_messages_per_second must be greater than 0".into());
        }
        verify_carrier::check_regions(&self.regions)?;
        if self.dlt.entity_id_attribute.is_empty() || self.dlt.content_id_attribute.is_empty() {
            return Err("dlt: attribute names must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let mut config = VonageConfig::new("key1", Secret::new("very-secret-1"), "verifyd");
        config.signature_secret = Some(Secret::new("very-secret-2"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("key1"));
    }

    #[test]
    fn mistyped_secret_is_not_echoed() {
        let error = serde_json::from_value::<VonageConfig>(serde_json::json!({
            "api_key": "k", "api_secret": 982451653, "from": "x"
        }))
        .unwrap_err()
        .to_string();
        assert!(!error.contains("982451653"), "{error}");
    }
}
