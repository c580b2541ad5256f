//! Geo permissions: per country, codes are allowed, allowed and reported (`monitor`), or
//! refused. Countries in the rule set are allowed unless configured otherwise; the rest (and
//! numbers of no country, such as international networks) follow `unlisted`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a country may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GeoPermission {
    /// Codes go.
    #[default]
    Allow,
    /// Codes go, and each is logged and its decision says so.
    Monitor,
    /// Codes are refused.
    Block,
}

impl GeoPermission {
    /// The name configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            GeoPermission::Allow => "allow",
            GeoPermission::Monitor => "monitor",
            GeoPermission::Block => "block",
        }
    }
}

/// `[abuse.geo]` as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// Countries without country rules, and numbers of no country (default `allow`).
    #[serde(default)]
    pub unlisted: GeoPermission,
    /// Per country (upper-case ISO 3166-1 alpha-2).
    #[serde(default)]
    pub countries: BTreeMap<String, GeoPermission>,
}

/// Why a geo configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("abuse.geo: {0}")]
pub struct GeoConfigError(String);

/// The geo permissions in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoPermissions {
    config: GeoConfig,
}

/// A country's permission and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoDecision {
    /// The permission.
    pub permission: GeoPermission,
    /// One sentence naming the setting that decided.
    pub reason: String,
}

impl GeoPermissions {
    /// The permissions `config` describes, checked.
    pub fn from_config(config: &GeoConfig) -> Result<GeoPermissions, GeoConfigError> {
        for country in config.countries.keys() {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(GeoConfigError(format!(
                    "countries: `{country}` is not an upper-case ISO 3166-1 alpha-2 code"
                )));
            }
        }
        Ok(GeoPermissions {
            config: config.clone(),
        })
    }

    /// The permission of `region` (`None` for a number of no country); `in_rule_set` says
    /// whether the country rules know the country.
    pub fn decide(&self, region: Option<&str>, in_rule_set: bool) -> GeoDecision {
        if let Some(region) = region
            && let Some(&permission) = self.config.countries.get(region)
        {
            return GeoDecision {
                permission,
                reason: format!(
                    "geo permissions: {region} is `{}` ([abuse.geo] countries.{region})",
                    permission.as_str()
                ),
            };
        }
        if in_rule_set {
            return GeoDecision {
                permission: GeoPermission::Allow,
                reason: format!(
                    "geo permissions: {} has country rules: `allow`",
                    region.unwrap_or("?")
                ),
            };
        }
        let permission = self.config.unlisted;
        GeoDecision {
            permission,
            reason: format!(
                "geo permissions: {} has no country rules: `{}` ([abuse.geo] unlisted)",
                region.unwrap_or("a number of no country"),
                permission.as_str()
            ),
        }
    }

    /// One line for `--check-config`.
    pub fn describe(&self) -> String {
        let listed: Vec<String> = self
            .config
            .countries
            .iter()
            .map(|(country, permission)| format!("{country}={}", permission.as_str()))
            .collect();
        format!(
            "geo permissions: countries with rules allowed, others {}{}",
            self.config.unlisted.as_str(),
            if listed.is_empty() {
                String::new()
            } else {
                format!("; {}", listed.join(", "))
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_countries_then_the_rule_set_then_unlisted_decide() {
        let geo = GeoPermissions::from_config(&GeoConfig {
            unlisted: GeoPermission::Monitor,
            countries: [("NG".to_string(), GeoPermission::Block)].into(),
        })
        .unwrap();
        let ng = geo.decide(Some("NG"), true);
        assert_eq!(ng.permission, GeoPermission::Block);
        assert_eq!(
            ng.reason,
            "geo permissions: NG is `block` ([abuse.geo] countries.NG)"
        );
        assert_eq!(
            geo.decide(Some("GB"), true).permission,
            GeoPermission::Allow
        );
        let tv = geo.decide(Some("TV"), false);
        assert_eq!(tv.permission, GeoPermission::Monitor);
        assert_eq!(
            tv.reason,
            "geo permissions: TV has no country rules: `monitor` ([abuse.geo] unlisted)"
        );
        assert_eq!(geo.decide(None, false).permission, GeoPermission::Monitor);
        assert_eq!(
            GeoPermissions::default()
                .decide(Some("TV"), false)
                .permission,
            GeoPermission::Allow
        );
        assert!(
            GeoPermissions::from_config(&GeoConfig {
                countries: [("ng".to_string(), GeoPermission::Block)].into(),
                ..Default::default()
            })
            .is_err()
        );
    }
}
