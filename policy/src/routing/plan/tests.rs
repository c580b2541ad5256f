use std::time::{Duration, Instant};

use super::*;
use crate::routing::{AllHealthy, CircuitBreakers};

fn plan(toml_text: &str) -> RoutePlan {
    #[derive(Deserialize)]
    struct File {
        routes: RoutePlan,
    }
    toml::from_str::<File>(toml_text).unwrap().routes
}

fn carriers(candidates: &[Candidate]) -> Vec<&str> {
    candidates.iter().map(|c| c.carrier.as_str()).collect()
}

const INDIA: &str = r#"
[routes]
default = ["sim"]
countries.GB = ["uk-operator", "twilio"]

[[routes.countries.IN]]
carrier = "aggregator"
cost = 0.0030

[[routes.countries.IN]]
carrier = "gupshup"
cost = 0.0021

[[routes.countries.IN]]
carrier = "airtel"
cost = 0.0040
prefixes = ["9190", "9198"]

[[routes.countries.IN]]
carrier = "twilio"
cost = 0.0100
priority = 1
channels = ["voice"]
"#;

#[test]
fn plain_lists_keep_their_order_as_before() {
    let planner = RoutePlanner::new(plan(INDIA));
    let gb = planner.candidates(
        Some("GB"),
        "447700900123",
        Channel::Sms,
        |_| true,
        &AllHealthy,
    );
    assert_eq!(carriers(&gb), ["uk-operator", "twilio"]);
    assert_eq!(gb[0].reason, "1st route listed for GB");
    let hn = planner.candidates(
        Some("HN"),
        "50495123456",
        Channel::Sms,
        |_| true,
        &AllHealthy,
    );
    assert_eq!(carriers(&hn), ["sim"]);
    assert_eq!(hn[0].reason, "1st route listed in the default list");
}

#[test]
fn operator_prefix_first_then_cheapest() {
    let planner = RoutePlanner::new(plan(INDIA));
    let airtel_number = planner.candidates(
        Some("IN"),
        "+919012345678",
        Channel::Sms,
        |_| true,
        &AllHealthy,
    );
    assert_eq!(
        carriers(&airtel_number),
        ["airtel", "gupshup", "aggregator"]
    );
    assert_eq!(
        airtel_number[0].reason,
        "operator route for IN for numbers starting +9190 (0.004/msg)"
    );
    assert_eq!(airtel_number[0].operator_prefix.as_deref(), Some("9190"));
    assert_eq!(
        airtel_number[1].reason,
        "cheapest healthy route for IN (0.0021/msg)"
    );

    // Another operator's subscriber: the prefix route is not for them.
    let other = planner.candidates(
        Some("IN"),
        "918123456789",
        Channel::Sms,
        |_| true,
        &AllHealthy,
    );
    assert_eq!(carriers(&other), ["gupshup", "aggregator"]);
}

#[test]
fn priority_wins_over_cost_and_channels_restrict_a_route() {
    let planner = RoutePlanner::new(plan(INDIA));
    let voice = planner.candidates(
        Some("IN"),
        "918123456789",
        Channel::Voice,
        |name| name != "aggregator",
        &AllHealthy,
    );
    // twilio is the dearest but has priority 1; aggregator cannot call.
    assert_eq!(carriers(&voice), ["twilio", "gupshup"]);
    assert_eq!(voice[0].reason, "priority 1 route for IN (0.01/msg)");
}

#[test]
fn open_breakers_move_routes_to_the_end_as_last_resort() {
    let planner = RoutePlanner::new(plan(INDIA));
    let breakers = CircuitBreakers::new(BreakerSettings {
        consecutive_failures: 2,
        ..BreakerSettings::default()
    });
    let t0 = Instant::now();
    let gupshup = crate::routing::RouteKey::new("gupshup", Some("IN"), Channel::Sms);
    breakers.record_failure(&gupshup, t0, "HTTP 429");
    breakers.record_failure(&gupshup, t0, "HTTP 429");
    let view = breakers.at(t0 + Duration::from_secs(12));
    let list = planner.candidates(Some("IN"), "918123456789", Channel::Sms, |_| true, &view);
    assert_eq!(carriers(&list), ["aggregator", "gupshup"]);
    assert_eq!(list[0].reason, "cheapest healthy route for IN (0.003/msg)");
    assert_eq!(
        list[1].reason,
        "gupshup breaker open for 12s after 2 temporary failures in a row (last: HTTP 429); probes in 18s; kept as last resort (route for IN (0.0021/msg))"
    );
    // Half-open: back in its place, to be probed.
    let view = breakers.at(t0 + Duration::from_secs(30));
    let list = planner.candidates(Some("IN"), "918123456789", Channel::Sms, |_| true, &view);
    assert_eq!(carriers(&list), ["gupshup", "aggregator"]);
    assert!(
        list[0].reason.ends_with("breaker half-open, probing"),
        "{}",
        list[0].reason
    );
}

#[test]
fn a_carrier_listed_with_and_without_prefixes_appears_once() {
    let planner = RoutePlanner::new(plan(
        r#"
[routes]
default = ["sim"]
countries.IN = [
  { carrier = "airtel", prefixes = ["9190"], priority = 1 },
  "sim",
  { carrier = "airtel", priority = 2 },
]
"#,
    ));
    let airtel = planner.candidates(
        Some("IN"),
        "919012345678",
        Channel::Sms,
        |_| true,
        &AllHealthy,
    );
    assert_eq!(carriers(&airtel), ["airtel", "sim"]);
    let other = planner.candidates(
        Some("IN"),
        "918012345678",
        Channel::Sms,
        |_| true,
        &AllHealthy,
    );
    assert_eq!(carriers(&other), ["airtel", "sim"]);
    assert_eq!(other[0].reason, "priority 2 route for IN");
}

#[test]
fn old_route_tables_convert_and_round_trip() {
    let table: RouteTable =
        serde_json::from_str(r#"{"default":["sim"],"countries":{"GB":["a","b"]}}"#).unwrap();
    let converted = RoutePlan::from(table);
    let parsed = plan("[routes]\ndefault = [\"sim\"]\ncountries.GB = [\"a\", \"b\"]\n");
    assert_eq!(converted, parsed);
    let json = serde_json::to_value(&parsed).unwrap();
    assert_eq!(json["countries"]["GB"], serde_json::json!(["a", "b"]));
    let rich = plan(INDIA);
    let again: RoutePlan = serde_json::from_value(serde_json::to_value(&rich).unwrap()).unwrap();
    assert_eq!(again, rich);
}

#[test]
fn validation_names_the_key() {
    let known = |name: &str| name != "nobody";
    assert!(plan(INDIA).validate(known).is_ok());
    let cases = [
        (
            "[routes]\ndefault = [\"sim\"]\ncountries.IN = [{ carrier = \"sim\", cost = -1.0 }]",
            "routes.countries.IN[0].cost",
        ),
        (
            "[routes]\ndefault = [\"sim\"]\ncountries.IN = [{ carrier = \"sim\", prefixes = [\"+9190\"] }]",
            "routes.countries.IN[0].prefixes",
        ),
        (
            "[routes]\ndefault = [\"sim\", \"nobody\"]",
            "routes.default[1].carrier",
        ),
        ("[routes]\ndefault = []", "routes.default"),
        (
            "[routes]\ndefault = [\"sim\"]\ncountries.in = [\"sim\"]",
            "routes.countries.in",
        ),
        (
            "[routes]\ndefault = [\"sim\", \"sim\"]",
            "routes.default[1].carrier",
        ),
        (
            "[routes]\ndefault = [\"sim\"]\n[routes.breaker]\ncool_down = \"0s\"",
            "routes.breaker.cool_down",
        ),
    ];
    for (text, key) in cases {
        let error = plan(text).validate(known).unwrap_err();
        assert_eq!(error.key, key, "{text}: {error}");
    }
}

#[test]
fn unknown_keys_and_bad_durations_are_refused_when_reading() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct File {
        routes: RoutePlan,
    }
    let error = toml::from_str::<File>(
        "[routes]\ndefault = [\"sim\"]\ncountries.IN = [{ carrier = \"sim\", costs = 1.0 }]",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("unknown field `costs`"), "{error}");
    let error = toml::from_str::<File>(
        "[routes]\ndefault = [\"sim\"]\n[routes.breaker]\ncool_down = \"30\"",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("needs a unit"), "{error}");
}

#[test]
fn declared_costs_come_from_the_region_list_or_the_default() {
    let india = plan(INDIA);
    assert_eq!(india.declared_cost("IN", "gupshup"), Some(0.0021));
    // Only a prefix entry declares airtel's cost.
    assert_eq!(india.declared_cost("IN", "airtel"), Some(0.0040));
    assert_eq!(india.declared_cost("GB", "twilio"), None);
    assert_eq!(india.declared_cost("HN", "gupshup"), None);
    let with_default = plan(
        r#"
[routes]
default = [{ carrier = "sim", cost = 0.05 }]
"#,
    );
    assert_eq!(with_default.declared_cost("HN", "sim"), Some(0.05));
}
