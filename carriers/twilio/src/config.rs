//! Settings of a `twilio` carrier, read from the keys of its `[[carriers]]` table and validated
//! before anything is built, with errors that name the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use verify_carrier::{Channel, Secret};

/// The Twilio REST API, the default `base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Answering-machine detection for voice calls (Twilio's `MachineDetection` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineDetection {
    /// No detection: the code is read as soon as the call is answered (the default).
    #[default]
    Off,
    /// `Enable`: Twilio tells whether a person or a machine answered (`AnsweredBy`).
    Enable,
    /// `DetectMessageEnd`: on a machine, Twilio waits for the greeting to end, so the code is
    /// left on the voicemail.
    DetectMessageEnd,
}

impl MachineDetection {
    /// The value of Twilio's `MachineDetection` parameter, `None` when off.
    pub fn as_twilio(self) -> Option<&'static str> {
        match self {
            MachineDetection::Off => None,
            MachineDetection::Enable => Some("Enable"),
            MachineDetection::DetectMessageEnd => Some("DetectMessageEnd"),
        }
    }
}

/// Settings of a `twilio` carrier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account (`AC` + 32 hex digits) whose Messages and Calls resources are used.
    pub account_sid: String,
    /// The account's auth token: signs status callbacks, and authenticates requests unless an
    /// API key is set. In the server config, `auth_token_env = "NAME"` reads it from `$NAME`.
    pub auth_token: Secret,
    /// An API key (`SK` + 32 hex digits) to authenticate requests with instead of the auth
    /// token; needs `api_key_secret`.
    #[serde(default)]
    pub api_key_sid: Option<String>,
    /// The secret of `api_key_sid`.
    #[serde(default)]
    pub api_key_secret: Option<Secret>,
    /// Sender: a Twilio number in E.164 (or an alphanumeric sender ID for SMS). Required for
    /// voice. A message's own sender, when the route sets one, wins.
    #[serde(default)]
    pub from: Option<String>,
    /// A Messaging Service (`MG` + 32 hex digits) that picks the sender of SMS.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Base URL of the REST API; tests point it at a local server.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// How long one API request may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Channels this carrier takes: SMS and voice by default.
    #[serde(default = "default_channels")]
    pub channels: Vec<Channel>,
    /// Regions (ISO 3166-1 alpha-2) this carrier reaches; empty means everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// `<Say voice>` for every call, e.g. `alice`, `Polly.Joanna`; Twilio's default when unset.
    #[serde(default)]
    pub voice: Option<String>,
    /// `<Say voice>` per Say language (e.g. `"hi-IN" = "Polly.Aditi"`), over `voice`.
    #[serde(default)]
    pub voices: BTreeMap<String, String>,
    /// Extra or replacement locale → Say language mappings, e.g. `"ja" = "ja-JP"`.
    #[serde(default)]
    pub say_languages: BTreeMap<String, String>,
    /// Answering-machine detection: `off` (default), `enable` or `detect_message_end`.
    #[serde(default)]
    pub machine_detection: MachineDetection,
    /// At shutdown, how long to wait for the status callbacks of accepted messages, in ms.
    #[serde(default = "default_shutdown_receipt_wait_ms")]
    pub shutdown_receipt_wait_ms: u64,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_channels() -> Vec<Channel> {
    vec![Channel::Sms, Channel::Voice]
}

fn default_shutdown_receipt_wait_ms() -> u64 {
    5_000
}

/// Twilio's resource ids: a two-letter prefix and 32 hexadecimal digits.
fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl TwilioConfig {
    /// A config with the defaults, for `account_sid`, `auth_token` and sender `from`.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: Secret,
        from: impl Into<String>,
    ) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token,
            api_key_sid: None,
            api_key_secret: None,
            from: Some(from.into()),
            messaging_service_sid: None,
            base_url: default_base_url(),
            timeout_ms: default_timeout_ms(),
            channels: default_channels(),
            regions: Vec::new(),
            voice: None,
            voices: BTreeMap::new(),
            say_languages: BTreeMap::new(),
            machine_detection: MachineDetection::Off,
            shutdown_receipt_wait_ms: default_shutdown_receipt_wait_ms(),
        }
    }

    /// Checks what serde cannot; the error names the field and never shows a secret.
    pub fn validate(&self) -> Result<(), String> {
        if !is_sid(&self.account_sid, "AC") {
            return Err(
                "account_sid: must be `AC` followed by 32 hexadecimal digits, as in the Twilio console"
                    .into(),
            );
        }
        if self.auth_token.expose().trim().is_empty() {
            return Err("auth_token: must not be empty (set auth_token_env = \"NAME\")".into());
        }
        match (&self.api_key_sid, &self.api_key_secret) {
            (Some(sid), Some(secret)) => {
                if !is_sid(sid, "SK") {
                    return Err(
                        "api_key_sid: must be `SK` followed by 32 hexadecimal digits".into(),
                    );
                }
                if secret.expose().trim().is_empty() {
                    return Err("api_key_secret: must not be empty".into());
                }
            }
            (Some(_), None) => {
                return Err("api_key_secret: required with api_key_sid".into());
            }
            (None, Some(_)) => {
                return Err("api_key_sid: required with api_key_secret".into());
            }
            (None, None) => {}
        }
        if let Some(from) = &self.from
            && (from.trim().is_empty() || from.chars().any(char::is_control))
        {
            return Err("from: must be a phone number in E.164 or a sender ID".into());
        }
        if let Some(sid) = &self.messaging_service_sid
            && !is_sid(sid, "MG")
        {
            return Err(
                "messaging_service_sid: must be `MG` followed by 32 hexadecimal digits".into(),
            );
        }
        if self.from.is_none() && self.messaging_service_sid.is_none() {
            return Err("from: set `from` or `messaging_service_sid`".into());
        }
        if self.channels.is_empty() {
            return Err("channels: must name at least one of sms, voice".into());
        }
        if self.channels.contains(&Channel::Voice) && self.from.is_none() {
            return Err(
                "from: a voice-capable Twilio number is required for voice (messaging_service_sid covers SMS only)"
                    .into(),
            );
        }
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://"))
            || base.len() <= "https://".len()
            || base.contains('?')
            || base.contains('#')
            || base.contains('@')
        {
            return Err(format!(
                "base_url: must be an http(s) URL without credentials, query or fragment, got `{base}`"
            ));
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms: must be greater than 0".into());
        }
        verify_carrier::check_regions(&self.regions)?;
        for (scope, value) in self
            .voice
            .iter()
            .map(|v| ("voice", v))
            .chain(self.voices.values().map(|v| ("voices", v)))
            .chain(self.say_languages.values().map(|v| ("say_languages", v)))
        {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                return Err(format!(
                    "{scope}: `{value}` is not a Twilio voice or language name"
                ));
            }
        }
        Ok(())
    }

    /// The API base without a trailing slash.
    pub(crate) fn api_base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SID: &str = "AC0123456789abcdef0123456789abcdef";

    fn parse(value: serde_json::Value) -> Result<TwilioConfig, String> {
        let config: TwilioConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_apply() {
        let config = parse(serde_json::json!({
            "account_sid": SID, "auth_token": "tok", "from": "+15005550006"
        }))
        .unwrap();
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        assert_eq!(config.channels, vec![Channel::Sms, Channel::Voice]);
        assert_eq!(config.timeout_ms, 10_000);
        assert_eq!(config.machine_detection, MachineDetection::Off);
        assert_eq!(config.shutdown_receipt_wait_ms, 5_000);
    }

    #[test]
    fn errors_name_the_field_and_hide_secrets() {
        let cases = [
            (
                serde_json::json!({ "account_sid": "nope", "auth_token": "s3cr3t", "from": "+1" }),
                "account_sid",
            ),
            (
                serde_json::json!({ "account_sid": SID, "auth_token": "", "from": "+1" }),
                "auth_token",
            ),
            (
                serde_json::json!({ "account_sid": SID, "auth_token": "s3cr3t" }),
                "from",
            ),
            (
                serde_json::json!({ "account_sid": SID, "auth_token": "s3cr3t",
                    "messaging_service_sid": "MG0123456789abcdef0123456789abcdef" }),
                "voice-capable",
            ),
            (
                serde_json::json!({ "account_sid": SID, "auth_token": "s3cr3t", "from": "+1",
                    "api_key_sid": "SK0123456789abcdef0123456789abcdef" }),
                "api_key_secret",
            ),
            (
                serde_json::json!({ "account_sid": SID, "auth_token": "s3cr3t", "from": "+1",
                    "base_url": "ftp://x" }),
                "base_url",
            ),
            (
                serde_json::json!({ "account_sid": SID, "auth_token": "s3cr3t", "from": "+1",
                    "regions": ["gb"] }),
                "regions",
            ),
            (
                serde_json::json!({ "account_sid": SID, "auth_token": "s3cr3t", "from": "+1",
                    "colour": "blue" }),
                "colour",
            ),
        ];
        for (settings, field) in cases {
            let error = parse(settings).expect_err(field);
            assert!(error.contains(field), "{field}: {error}");
            assert!(!error.contains("s3cr3t"), "{error}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let mut config = TwilioConfig::new(SID, Secret::new("s3cr3t-token"), "+15005550006");
        config.api_key_sid = Some("SK0123456789abcdef0123456789abcdef".into());
        config.api_key_secret = Some(Secret::new("k3y-s3cr3t"));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cr3t-token") && !shown.contains("k3y-s3cr3t"),
            "{shown}"
        );
        config.validate().unwrap();
    }
}
