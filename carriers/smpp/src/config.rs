//! Settings of an `smpp` carrier, read from its `[carriers.settings]` table, and their checks.
//!
//! Every duration is in milliseconds; every error names the setting at fault.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The bind password: the shared [`verify_carrier::Secret`], never printed (its `Debug` output
/// is redacted).
pub type Password = verify_carrier::Secret;

/// How each bind connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// One bind_transceiver connection: submits and receipts on the same link.
    #[default]
    Transceiver,
    /// A bind_transmitter connection for submits and a bind_receiver connection for receipts.
    TransmitterReceiver,
}

/// How the receipt's message id relates to the id submit_sm_resp gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptIdFormat {
    /// Found out per receipt: the id as it is first, else the same number in the other base
    /// or without leading zeros (either direction); the first such mapping that matches is
    /// remembered and tried first from then on.
    #[default]
    Auto,
    /// The same string, nothing else.
    AsIs,
    /// Receipts carry hexadecimal, submit_sm_resp decimal.
    HexToDecimal,
    /// Receipts carry decimal, submit_sm_resp hexadecimal.
    DecimalToHex,
}

/// How a configured TLV value goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlvEncoding {
    /// The text and a terminating NUL.
    #[default]
    Cstring,
    /// The text's bytes as they are.
    Octets,
}

/// One operator TLV added to every submit_sm: a literal value or a message attribute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlvSetting {
    /// The tag, e.g. `0x1400`.
    pub tag: u16,
    /// A fixed value.
    #[serde(default)]
    pub value: Option<String>,
    /// The name of the message attribute that holds the value (e.g. `dlt_template_id`); a
    /// message without it is refused.
    #[serde(default)]
    pub attribute: Option<String>,
    /// `cstring` (default) or `octets`.
    #[serde(default)]
    pub encoding: TlvEncoding,
}

/// Settings of an `smpp` carrier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// SMSC host name or address.
    pub host: String,
    /// SMSC port.
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// system_id of the binds (at most 15 characters).
    pub system_id: String,
    /// Bind password (at most 8 characters); the server fills it from `password_env`.
    #[serde(default)]
    pub password: Password,
    /// system_type of the binds (at most 12 characters).
    #[serde(default)]
    pub system_type: String,
    /// How many binds (connections, or connection pairs) to keep up.
    #[serde(default = "defaults::binds")]
    pub binds: usize,
    /// `transceiver` or `transmitter_receiver`.
    #[serde(default)]
    pub bind_mode: BindMode,
    /// submit_sm outstanding per bind at most.
    #[serde(default = "defaults::window")]
    pub window: usize,
    /// submit_sm per second per bind at most (token bucket); unlimited when absent.
    #[serde(default)]
    pub max_messages_per_second: Option<u32>,
    /// Interval of enquire_link keep-alives.
    #[serde(default = "defaults::enquire_link_interval_ms")]
    pub enquire_link_interval_ms: u64,
    /// How long to wait for any response (submit_sm_resp, enquire_link_resp, bind_resp).
    #[serde(default = "defaults::response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// How long a TCP connect may take.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long `submit` waits for a bind to come up before answering "unavailable".
    #[serde(default = "defaults::connect_wait_ms")]
    pub connect_wait_ms: u64,
    /// First reconnect delay; doubles per failed attempt.
    #[serde(default = "defaults::reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay.
    #[serde(default = "defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// How many times a throttled submit (ESME_RTHROTTLED, ESME_RMSGQFUL) is retried.
    #[serde(default = "defaults::throttle_retries")]
    pub throttle_retries: u32,
    /// Delay before retrying a throttled submit.
    #[serde(default = "defaults::throttle_retry_delay_ms")]
    pub throttle_retry_delay_ms: u64,
    /// Sender when the message names none.
    #[serde(default)]
    pub source_addr: Option<String>,
    /// source_addr_ton; chosen from the sender when absent.
    #[serde(default)]
    pub source_addr_ton: Option<u8>,
    /// source_addr_npi; chosen from the sender when absent.
    #[serde(default)]
    pub source_addr_npi: Option<u8>,
    /// dest_addr_ton.
    #[serde(default = "defaults::one")]
    pub dest_addr_ton: u8,
    /// dest_addr_npi.
    #[serde(default = "defaults::one")]
    pub dest_addr_npi: u8,
    /// service_type of submit_sm (at most 5 characters).
    #[serde(default)]
    pub service_type: String,
    /// registered_delivery of submit_sm.
    #[serde(default = "defaults::one")]
    pub registered_delivery: u8,
    /// Operator TLVs added to every submit_sm.
    #[serde(default)]
    pub tlvs: Vec<TlvSetting>,
    /// Regions served (ISO alpha-2); empty means everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// How receipt ids relate to submit_sm_resp ids.
    #[serde(default)]
    pub receipt_id_format: ReceiptIdFormat,
    /// How long shutdown waits for receipts of accepted messages.
    #[serde(default = "defaults::shutdown_receipt_wait_ms")]
    pub shutdown_receipt_wait_ms: u64,
    /// Messages remembered for receipt matching at most (the oldest are forgotten first).
    #[serde(default = "defaults::tracked_messages")]
    pub tracked_messages: usize,
}

mod defaults {
    pub fn port() -> u16 {
        2775
    }
    pub fn binds() -> usize {
        1
    }
    pub fn window() -> usize {
        64
    }
    pub fn enquire_link_interval_ms() -> u64 {
        30_000
    }
    pub fn response_timeout_ms() -> u64 {
        10_000
    }
    pub fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub fn connect_wait_ms() -> u64 {
        2_000
    }
    pub fn reconnect_min_ms() -> u64 {
        500
    }
    pub fn reconnect_max_ms() -> u64 {
        30_000
    }
    pub fn throttle_retries() -> u32 {
        3
    }
    pub fn throttle_retry_delay_ms() -> u64 {
        1_000
    }
    pub fn one() -> u8 {
        1
    }
    pub fn shutdown_receipt_wait_ms() -> u64 {
        10_000
    }
    pub fn tracked_messages() -> usize {
        100_000
    }
}

impl SmppConfig {
    /// Reads and checks settings from the carrier's JSON settings value.
    pub fn from_settings(settings: &serde_json::Value) -> Result<SmppConfig, String> {
        let config: SmppConfig =
            serde_json::from_value(settings.clone()).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: lengths SMPP allows, ranges, and cross-field rules.
    pub fn validate(&self) -> Result<(), String> {
        fn max_len(field: &str, value: &str, max: usize) -> Result<(), String> {
            if value.len() > max {
                return Err(format!("{field} must be at most {max} characters"));
            }
            if value.contains('\0') {
                return Err(format!("{field} must not contain NUL"));
            }
            Ok(())
        }
        if self.host.trim().is_empty() {
            return Err("host must not be empty".into());
        }
        if self.port == 0 {
            return Err("port must not be 0".into());
        }
        if self.system_id.is_empty() {
            return Err("system_id must not be empty".into());
        }
        max_len("system_id", &self.system_id, 15)?;
        // Only the length is reported: the value is a secret.
        max_len("password", self.password.expose(), 8)?;
        max_len("system_type", &self.system_type, 12)?;
        max_len("service_type", &self.service_type, 5)?;
        if !(1..=64).contains(&self.binds) {
            return Err(format!(
                "binds must be between 1 and 64, got {}",
                self.binds
            ));
        }
        if !(1..=1024).contains(&self.window) {
            return Err(format!(
                "window must be between 1 and 1024, got {}",
                self.window
            ));
        }
        if self.max_messages_per_second == Some(0) {
            return Err(
                "max_messages_per_second must be above 0 (leave it out for no limit)".into(),
            );
        }
        for (field, value) in [
            ("enquire_link_interval_ms", self.enquire_link_interval_ms),
            ("response_timeout_ms", self.response_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("reconnect_min_ms", self.reconnect_min_ms),
        ] {
            if value == 0 {
                return Err(format!("{field} must be above 0"));
            }
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(format!(
                "reconnect_max_ms ({}) must not be below reconnect_min_ms ({})",
                self.reconnect_max_ms, self.reconnect_min_ms
            ));
        }
        if let Some(source) = &self.source_addr {
            validate_sender("source_addr", source)?;
        }
        if self.tracked_messages == 0 {
            return Err("tracked_messages must be above 0".into());
        }
        for (i, tlv) in self.tlvs.iter().enumerate() {
            match (&tlv.value, &tlv.attribute) {
                (Some(_), None) => {}
                (None, Some(name)) if !name.is_empty() => {}
                _ => {
                    return Err(format!(
                        "tlvs[{i}] (tag 0x{:04X}) needs exactly one of `value` or `attribute`",
                        tlv.tag
                    ));
                }
            }
        }
        verify_carrier::check_regions(&self.regions)
    }

    /// Response timeout as a duration.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }
}

/// Checks a sender: an alphanumeric ID of at most 11 characters, or at most 20 digits
/// (with an optional leading `+`).
pub fn validate_sender(field: &str, sender: &str) -> Result<(), String> {
    let digits = sender.strip_prefix('+').unwrap_or(sender);
    if sender.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if digits.chars().all(|c| c.is_ascii_digit()) && !digits.is_empty() {
        if digits.len() > 20 {
            return Err(format!("{field} must be at most 20 digits"));
        }
    } else if sender.chars().count() > 11 || !sender.is_ascii() {
        return Err(format!(
            "{field}: an alphanumeric sender is at most 11 ASCII characters"
        ));
    }
    Ok(())
}

/// source_addr TON, NPI and address for `sender`: alphanumeric → TON 5 NPI 0; `+digits` →
/// TON 1 NPI 1 without the `+`; up to 8 digits (a short code) → TON 3 NPI 0; longer digits →
/// TON 1 NPI 1. Configured TON/NPI override the choice.
pub fn source_address(sender: &str, ton: Option<u8>, npi: Option<u8>) -> (u8, u8, String) {
    let (auto_ton, auto_npi, addr) = if let Some(digits) = sender.strip_prefix('+') {
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            (1, 1, digits.to_string())
        } else {
            (5, 0, sender.to_string())
        }
    } else if !sender.is_empty() && sender.chars().all(|c| c.is_ascii_digit()) {
        if sender.len() <= 8 {
            (3, 0, sender.to_string())
        } else {
            (1, 1, sender.to_string())
        }
    } else {
        (5, 0, sender.to_string())
    };
    (ton.unwrap_or(auto_ton), npi.unwrap_or(auto_npi), addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({ "host": "127.0.0.1", "system_id": "verifyd", "password": "pw" })
    }

    #[test]
    fn defaults_follow_the_readme() {
        let config = SmppConfig::from_settings(&minimal()).expect("valid");
        assert_eq!(config.port, 2775);
        assert_eq!(config.binds, 1);
        assert_eq!(config.window, 64);
        assert_eq!(config.bind_mode, BindMode::Transceiver);
        assert_eq!(config.enquire_link_interval_ms, 30_000);
        assert_eq!(config.response_timeout_ms, 10_000);
        assert_eq!(config.registered_delivery, 1);
        assert_eq!((config.dest_addr_ton, config.dest_addr_npi), (1, 1));
        assert!(!format!("{config:?}").contains("\"pw\""));
    }

    #[test]
    fn errors_name_the_setting() {
        let mut bad = minimal();
        bad["window"] = 0.into();
        assert!(
            SmppConfig::from_settings(&bad)
                .unwrap_err()
                .contains("window")
        );
        let mut bad = minimal();
        bad["password"] = "123456789".into();
        let error = SmppConfig::from_settings(&bad).unwrap_err();
        assert!(
            error.contains("password") && !error.contains("123456789"),
            "{error}"
        );
        let mut bad = minimal();
        bad["colour"] = "blue".into();
        assert!(
            SmppConfig::from_settings(&bad)
                .unwrap_err()
                .contains("colour")
        );
        let mut bad = minimal();
        bad["tlvs"] = serde_json::json!([{ "tag": 5120 }]);
        assert!(
            SmppConfig::from_settings(&bad)
                .unwrap_err()
                .contains("tlvs[0]")
        );
        let mut bad = minimal();
        bad["source_addr"] = "ThisIsTooLongASender".into();
        assert!(
            SmppConfig::from_settings(&bad)
                .unwrap_err()
                .contains("source_addr")
        );
        let mut bad = minimal();
        bad["reconnect_max_ms"] = 1.into();
        assert!(
            SmppConfig::from_settings(&bad)
                .unwrap_err()
                .contains("reconnect_max_ms")
        );
    }

    #[test]
    fn ton_and_npi_follow_the_sender() {
        assert_eq!(
            source_address("VERIFY", None, None),
            (5, 0, "VERIFY".into())
        );
        assert_eq!(
            source_address("+447700900123", None, None),
            (1, 1, "447700900123".into())
        );
        assert_eq!(source_address("12345", None, None), (3, 0, "12345".into()));
        assert_eq!(
            source_address("447700900123", None, None),
            (1, 1, "447700900123".into())
        );
        assert_eq!(
            source_address("12345", Some(6), Some(9)),
            (6, 9, "12345".into())
        );
        assert_eq!(
            source_address("Acme 24", None, None),
            (5, 0, "Acme 24".into())
        );
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml").expect("a TOML example") + "```toml".len();
        let end = start + readme[start..].find("```").expect("closed");
        let file: toml::Value = toml::from_str(&readme[start..end]).expect("valid TOML");
        let carriers = file["carriers"].as_array().expect("[[carriers]]");
        let smpp = carriers
            .iter()
            .find(|c| c["kind"].as_str() == Some("smpp"))
            .expect("an smpp carrier");
        let mut settings = serde_json::to_value(&smpp["settings"]).expect("JSON");
        let object = settings.as_object_mut().expect("a table");
        assert!(object.remove("password_env").is_some());
        object.insert("password".into(), "s3cret".into());
        let config = SmppConfig::from_settings(&settings).expect("valid settings");
        assert_eq!(config.tlvs.len(), 2);
        assert_eq!(config.tlvs[1].tag, 0x1401);
        assert_eq!(config.tlvs[1].attribute.as_deref(), Some("dlt_template_id"));
        assert_eq!(config.max_messages_per_second, Some(100));
    }
}
