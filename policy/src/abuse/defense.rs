//! Every abuse rule in force, built from `[abuse]` once.

use serde::{Deserialize, Serialize};

use super::geo::{GeoConfig, GeoPermissions};
use super::guessing::{GuessingConfig, GuessingGuard};
use super::limits::{RateLimitConfig, RateLimits};
use super::pumping::{GuardLevel, PumpingConfig, PumpingGuard};

/// `[abuse]` as configured: every part optional, the defaults on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AbuseConfig {
    /// `[abuse.rate_limits]`.
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// `[abuse.pumping]`.
    #[serde(default)]
    pub pumping: PumpingConfig,
    /// `[abuse.geo]`.
    #[serde(default)]
    pub geo: GeoConfig,
    /// `[abuse.guessing]`.
    #[serde(default)]
    pub guessing: GuessingConfig,
}

/// The abuse rules in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AbuseDefense {
    /// Rate limits.
    pub limits: RateLimits,
    /// The pumping guard.
    pub pumping: PumpingGuard,
    /// The pumping guard at level `strict` (with the same thresholds replaced), for the
    /// services that ask for it.
    pub strict_pumping: PumpingGuard,
    /// Geo permissions.
    pub geo: GeoPermissions,
    /// The guessing cool-off.
    pub guessing: GuessingGuard,
}

impl AbuseDefense {
    /// The rules `config` describes, each part checked; the error names the part and key.
    pub fn from_config(config: &AbuseConfig) -> Result<AbuseDefense, String> {
        Ok(AbuseDefense {
            limits: RateLimits::from_config(&config.rate_limits).map_err(|e| e.to_string())?,
            pumping: PumpingGuard::from_config(&config.pumping).map_err(|e| e.to_string())?,
            strict_pumping: PumpingGuard::from_config(&PumpingConfig {
                level: GuardLevel::Strict,
                ..config.pumping.clone()
            })
            .map_err(|e| e.to_string())?,
            geo: GeoPermissions::from_config(&config.geo).map_err(|e| e.to_string())?,
            guessing: GuessingGuard::from_config(&config.guessing).map_err(|e| e.to_string())?,
        })
    }

    /// The pumping guard for a request: `strict` for a service that asks for it (whatever the
    /// server's level), else the server's.
    pub fn pumping_for(&self, strict: bool) -> &PumpingGuard {
        if strict {
            &self.strict_pumping
        } else {
            &self.pumping
        }
    }

    /// Lines for `--check-config`: each part and what it does.
    pub fn describe(&self) -> Vec<String> {
        let limits: Vec<String> = self.limits.limits().iter().map(|l| l.to_string()).collect();
        vec![
            format!("rate limits: {}", limits.join(", ")),
            self.pumping.describe(),
            self.geo.describe(),
            self.guessing.describe(),
        ]
    }
}
