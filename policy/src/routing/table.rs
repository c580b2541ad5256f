//! Route tables: which carriers, in order, may carry a message to a country (the plain form;
//! [`RoutePlan`](super::RoutePlan) reads the same TOML and adds cost, priority and prefixes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Ordered carrier names per country, with a default for countries not listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// Carriers, in order of preference, for countries without their own list.
    #[serde(default)]
    pub default: Vec<String>,
    /// Per-country lists keyed by ISO 3166-1 alpha-2 region, e.g. `IN = ["airtel", "sim"]`.
    #[serde(default)]
    pub countries: BTreeMap<String, Vec<String>>,
}

impl RouteTable {
    /// A table that sends everything through `carrier`.
    pub fn single(carrier: &str) -> Self {
        RouteTable {
            default: vec![carrier.to_string()],
            countries: BTreeMap::new(),
        }
    }

    /// The carriers to try, in order, for a number of `region`.
    pub fn routes_for(&self, region: Option<&str>) -> &[String] {
        region
            .and_then(|r| self.countries.get(r))
            .map_or(self.default.as_slice(), Vec::as_slice)
    }

    /// Every carrier name the table mentions, for validation against the configured carriers.
    pub fn carrier_names(&self) -> impl Iterator<Item = &str> {
        self.default
            .iter()
            .chain(self.countries.values().flatten())
            .map(String::as_str)
    }

    /// Checks that the table is usable: a default route and only known carriers.
    pub fn validate<'a>(&self, known: impl Fn(&str) -> bool + 'a) -> Result<(), String> {
        if self.default.is_empty() {
            return Err("routes.default must name at least one carrier".into());
        }
        for (region, list) in &self.countries {
            if list.is_empty() {
                return Err(format!("routes.countries.{region} is empty"));
            }
            if region.len() != 2 || !region.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(format!(
                    "routes.countries.{region}: use an upper-case ISO 3166-1 alpha-2 region"
                ));
            }
        }
        if let Some(unknown) = self.carrier_names().find(|name| !known(name)) {
            return Err(format!(
                "routes name carrier `{unknown}`, which is not configured"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_list_wins_over_default() {
        let table: RouteTable =
            toml_like(r#"{"default":["sim"],"countries":{"IN":["airtel","sim"]}}"#);
        assert_eq!(table.routes_for(Some("IN")), ["airtel", "sim"]);
        assert_eq!(table.routes_for(Some("US")), ["sim"]);
        assert_eq!(table.routes_for(None), ["sim"]);
        assert!(
            table
                .validate(|name| name == "sim")
                .unwrap_err()
                .contains("airtel")
        );
        assert!(table.validate(|_| true).is_ok());
    }

    fn toml_like(json: &str) -> RouteTable {
        serde_json::from_str(json).unwrap()
    }
}
