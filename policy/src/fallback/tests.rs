//! The fallback strategies at the library level, with real route plans; the Honduras scenario
//! of issue 5 among them.

use std::time::Duration;

use super::*;
use crate::routing::{AllHealthy, RoutePlan, RoutePlanner};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Honduras: two SMS routes (`sim`, then `sim-b`) and one voice route (`sim-voice`).
fn hn_routes() -> impl Fn(Channel) -> Vec<Candidate> {
    let planner = RoutePlanner::new(RoutePlan {
        default: ["sim", "sim-b", "sim-voice"]
            .iter()
            .map(|n| crate::routing::RouteEntry::named(n))
            .collect(),
        ..RoutePlan::default()
    });
    move |channel| {
        planner.candidates(
            Some("HN"),
            "50494567890",
            channel,
            |carrier| (carrier == "sim-voice") == (channel == Channel::Voice),
            &AllHealthy,
        )
    }
}

fn no_voice_routes() -> impl Fn(Channel) -> Vec<Candidate> {
    let routes = hn_routes();
    move |channel| match channel {
        Channel::Voice => Vec::new(),
        Channel::Sms => routes(channel),
    }
}

fn facts<'a>(workflow: &'a Workflow, history: &'a [StepRecord]) -> VerificationFacts<'a> {
    VerificationFacts {
        region: Some("HN"),
        line_type: LineType::Mobile,
        requested_channel: None,
        workflow,
        max_sends: 5,
        sends: history.len() as u32,
        history,
    }
}

fn sent(step: usize, plan: &StepPlan) -> StepRecord {
    StepRecord {
        step,
        channel: plan.channel,
        carrier: plan.carrier().to_string(),
        outcome: StepOutcome::Pending,
    }
}

fn send(next: Next) -> StepPlan {
    match next {
        Next::Send(plan) => plan,
        other => panic!("expected a send, got {other:?}"),
    }
}

fn stop(next: Next) -> String {
    match next {
        Next::Stop { reason } => reason,
        other => panic!("expected a stop, got {other:?}"),
    }
}

fn hn_stats(sms: (u64, u64), voice: (u64, u64)) -> Arc<ConversionTable> {
    let mut table = ConversionTable::new();
    table.set(
        "HN",
        Channel::Sms,
        "sim",
        Conversion {
            sent: sms.0,
            verified: sms.1,
        },
    );
    table.set(
        "HN",
        Channel::Voice,
        "sim-voice",
        Conversion {
            sent: voice.0,
            verified: voice.1,
        },
    );
    Arc::new(table)
}

const HN_WORKFLOW: &str = "sms(30s) -> voice(60s)";

#[test]
fn honduras_ordered_code_not_checked_in_30s_is_called_by_voice_with_the_same_code() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = hn_routes();
    let start = Ordered.start(&facts(&workflow, &[]), &routes);
    assert_eq!(start.strategy, StrategyKind::Ordered);
    assert_eq!(start.workflow, workflow);
    let first = send(start.next);
    assert_eq!(
        (first.step, first.channel, first.wait),
        (0, Channel::Sms, secs(30))
    );
    assert_eq!(first.carrier(), "sim");
    assert_eq!(first.failover(), ["sim-b"]);
    assert_eq!(
        first.explanation(),
        "ordered workflow sms(30s) -> voice(1m): step 1 of 2, sms(30s); route sim: 1st route listed in the default list"
    );

    let history = [sent(0, &first)];
    let second = send(Ordered.next(
        &facts(&start.workflow, &history),
        &FallbackEvent::DeadlinePassed { step: 0 },
        &routes,
    ));
    assert_eq!(
        (second.step, second.channel, second.wait),
        (1, Channel::Voice, secs(60))
    );
    assert_eq!(second.carrier(), "sim-voice");
    assert_eq!(
        second.reason,
        "no approved check within 30s of step 1 (sms): step 2 of 2, voice(1m) with the same code"
    );

    // The call is the last step: when its wait passes too, nothing more is sent.
    let history = [sent(0, &first), sent(1, &second)];
    let reason = stop(Ordered.next(
        &facts(&start.workflow, &history),
        &FallbackEvent::DeadlinePassed { step: 1 },
        &routes,
    ));
    assert_eq!(
        reason,
        "no approved check within 1m of step 2 (voice); it was the last step of sms(30s) -> voice(1m); the code stays valid until it expires"
    );
}

#[test]
fn honduras_ordered_failed_receipt_calls_by_voice_at_once() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = hn_routes();
    let first = send(Ordered.start(&facts(&workflow, &[]), &routes).next);
    let history = [sent(0, &first)];
    let second = send(Ordered.next(
        &facts(&workflow, &history),
        &FallbackEvent::MessageFailed {
            step: 0,
            reason: "stat:UNDELIV err:001".into(),
        },
        &routes,
    ));
    assert_eq!(second.channel, Channel::Voice);
    assert_eq!(
        second.reason,
        "step 1 (sms via sim) failed: stat:UNDELIV err:001: step 2 of 2, voice(1m) at once with the same code"
    );

    // The deadline of the SMS step passing later is about a step no longer running.
    let history = [sent(0, &first), sent(1, &second)];
    let ignored = Ordered.next(
        &facts(&workflow, &history),
        &FallbackEvent::DeadlinePassed { step: 0 },
        &routes,
    );
    assert_eq!(
        ignored,
        Next::Ignore {
            reason: "event about step 1 while step 2 is running".into()
        }
    );
}

#[test]
fn honduras_adaptive_starts_on_voice_once_it_converts_better() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = hn_routes();
    let adaptive = Adaptive::new(hn_stats((400, 220), (250, 200)), 100);
    let start = adaptive.start(&facts(&workflow, &[]), &routes);
    assert_eq!(start.strategy, StrategyKind::Adaptive);
    assert_eq!(start.workflow.to_string(), "voice(1m) -> sms(30s)");
    let first = send(start.next);
    assert_eq!((first.channel, first.wait), (Channel::Voice, secs(60)));
    assert_eq!(first.carrier(), "sim-voice");
    assert_eq!(
        first.reason,
        "adaptive: voice via sim-voice converts best for HN (80% of 250 sends; sms via sim: 55% of 400), so the workflow voice(1m) -> sms(30s): step 1 of 2, voice(1m)"
    );

    // Not answered: the SMS step follows, with the same code.
    let history = [sent(0, &first)];
    let second = send(adaptive.next(
        &facts(&start.workflow, &history),
        &FallbackEvent::DeadlinePassed { step: 0 },
        &routes,
    ));
    assert_eq!((second.step, second.channel), (1, Channel::Sms));
}

#[test]
fn honduras_adaptive_with_too_few_samples_runs_the_ordered_workflow() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = hn_routes();
    let adaptive = Adaptive::new(hn_stats((40, 22), (30, 24)), 100);
    let start = adaptive.start(&facts(&workflow, &[]), &routes);
    assert_eq!(start.workflow, workflow);
    let first = send(start.next);
    assert_eq!(first.channel, Channel::Sms);
    assert_eq!(
        first.reason,
        "adaptive: fewer than 100 sends measured on every route to HN (most: sms via sim, 40), so the ordered workflow sms(30s) -> voice(1m): step 1 of 2, sms(30s)"
    );
    // Same with no statistics at all.
    let blind = Adaptive::new(Arc::new(NoConversionStats), 100);
    let first = send(blind.start(&facts(&workflow, &[]), &routes).next);
    assert_eq!(first.channel, Channel::Sms);
}

#[test]
fn adaptive_prefers_the_best_converting_route_of_a_channel() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = hn_routes();
    let mut table = ConversionTable::new();
    let counts = |sent, verified| Conversion { sent, verified };
    table.set("HN", Channel::Sms, "sim", counts(400, 220));
    table.set("HN", Channel::Sms, "sim-b", counts(300, 255));
    table.set("HN", Channel::Voice, "sim-voice", counts(250, 200));
    let adaptive = Adaptive::new(Arc::new(table), 100);
    let first = send(adaptive.start(&facts(&workflow, &[]), &routes).next);
    assert_eq!((first.channel, first.carrier()), (Channel::Sms, "sim-b"));
    assert_eq!(first.failover(), ["sim"]);
    assert!(
        first.routes[0]
            .reason
            .starts_with("best measured conversion for sms to HN"),
        "{}",
        first.routes[0].reason
    );
}

#[test]
fn landlines_start_on_voice_whatever_the_workflow_or_statistics() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = hn_routes();
    let landline = VerificationFacts {
        line_type: LineType::FixedLine,
        ..facts(&workflow, &[])
    };
    let start = Ordered.start(&landline, &routes);
    assert_eq!(start.workflow.to_string(), "voice(1m)");
    let first = send(start.next);
    assert_eq!(first.channel, Channel::Voice);
    assert!(
        first
            .reason
            .ends_with("a landline cannot receive SMS, so it starts on voice"),
        "{}",
        first.reason
    );
    // SMS converting best does not matter: an SMS cannot reach a landline.
    let adaptive = Adaptive::new(hn_stats((400, 390), (250, 100)), 100);
    assert_eq!(
        send(adaptive.start(&landline, &routes).next).channel,
        Channel::Voice
    );
    // A workflow with no voice step still calls.
    let sms_only = Workflow::parse("sms(45s)").unwrap();
    let first = send(
        Ordered
            .start(
                &VerificationFacts {
                    workflow: &sms_only,
                    ..landline
                },
                &routes,
            )
            .next,
    );
    assert_eq!((first.channel, first.wait), (Channel::Voice, secs(45)));
    // Premium-rate numbers get nothing.
    let premium = VerificationFacts {
        line_type: LineType::PremiumRate,
        ..facts(&workflow, &[])
    };
    assert!(stop(Ordered.start(&premium, &routes).next).contains("premium-rate"));
}

#[test]
fn max_sends_stops_the_workflow() {
    let workflow = Workflow::parse("sms(30s) -> sms(30s) -> voice(2m)").unwrap();
    let routes = hn_routes();
    let first = send(Ordered.start(&facts(&workflow, &[]), &routes).next);
    let history = [sent(0, &first)];
    let capped = VerificationFacts {
        max_sends: 2,
        sends: 2, // the client resent once by hand
        ..facts(&workflow, &history)
    };
    let reason = stop(Ordered.next(&capped, &FallbackEvent::DeadlinePassed { step: 0 }, &routes));
    assert_eq!(
        reason,
        "no approved check within 30s of step 1 (sms); all 2 sends used"
    );
    let spent = VerificationFacts {
        max_sends: 1,
        sends: 1,
        ..facts(&workflow, &[])
    };
    assert_eq!(
        stop(Ordered.start(&spent, &routes).next),
        "all 1 sends used"
    );
}

#[test]
fn a_repeated_channel_resends_on_the_next_route() {
    let workflow = Workflow::parse("sms(30s) -> sms(30s) -> voice(2m)").unwrap();
    let routes = hn_routes();
    let first = send(Ordered.start(&facts(&workflow, &[]), &routes).next);
    assert_eq!(first.carrier(), "sim");
    let history = [sent(0, &first)];
    let second = send(Ordered.next(
        &facts(&workflow, &history),
        &FallbackEvent::DeadlinePassed { step: 0 },
        &routes,
    ));
    assert_eq!((second.channel, second.carrier()), (Channel::Sms, "sim-b"));
    assert_eq!(second.failover(), ["sim"]);
    assert!(
        second.reason.ends_with("; resent on the next route, sim-b"),
        "{}",
        second.reason
    );
    let history = [sent(0, &first), sent(1, &second)];
    let third = send(Ordered.next(
        &facts(&workflow, &history),
        &FallbackEvent::DeadlinePassed { step: 1 },
        &routes,
    ));
    assert_eq!((third.channel, third.wait), (Channel::Voice, secs(120)));
}

#[test]
fn a_requested_channel_runs_first() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = hn_routes();
    let wants_voice = VerificationFacts {
        requested_channel: Some(Channel::Voice),
        ..facts(&workflow, &[])
    };
    let start = Ordered.start(&wants_voice, &routes);
    assert_eq!(start.workflow.to_string(), "voice(1m) -> sms(30s)");
    // Adaptive respects the request too, even when SMS converts best.
    let adaptive = Adaptive::new(hn_stats((400, 390), (250, 100)), 100);
    let start = adaptive.start(&wants_voice, &routes);
    assert_eq!(send(start.next).channel, Channel::Voice);
    // A channel the workflow lacks is added in front.
    let sms_only = Workflow::parse("sms(30s)").unwrap();
    let start = Ordered.start(
        &VerificationFacts {
            workflow: &sms_only,
            ..wants_voice
        },
        &routes,
    );
    assert_eq!(start.workflow.to_string(), "voice(30s) -> sms(30s)");
}

#[test]
fn steps_no_route_can_carry_are_skipped_with_a_reason() {
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let routes = no_voice_routes();
    let first = send(Ordered.start(&facts(&workflow, &[]), &routes).next);
    let history = [sent(0, &first)];
    let reason = stop(Ordered.next(
        &facts(&workflow, &history),
        &FallbackEvent::MessageFailed {
            step: 0,
            reason: "expired".into(),
        },
        &routes,
    ));
    assert_eq!(
        reason,
        "step 1 (sms via sim) failed: expired; no route carries voice to HN, step 2 skipped"
    );
    let nothing = |_: Channel| Vec::new();
    assert!(
        stop(Ordered.start(&facts(&workflow, &[]), &nothing).next).contains("no route carries sms")
    );
}

#[test]
fn config_picks_strategy_and_workflow_per_country() {
    #[derive(Deserialize)]
    struct File {
        fallback: FallbackConfig,
    }
    let file: File = toml::from_str(
        r#"
[fallback]
strategy = "ordered"
workflow = "sms(60s) -> voice(2m)"

[fallback.adaptive]
min_samples = 200
stats_refresh = "1m30s"

[fallback.countries.HN]
strategy = "adaptive"
workflow = "sms(30s) -> voice(60s)"

[fallback.countries.SV]
workflow = "sms(30s) -> sms(30s) -> voice(1m)"
"#,
    )
    .unwrap();
    let policy = FallbackPolicy::new(file.fallback, Arc::new(NoConversionStats)).unwrap();
    let (strategy, workflow) = policy.for_region(Some("HN"));
    assert_eq!(strategy.kind(), StrategyKind::Adaptive);
    assert_eq!(workflow.to_string(), "sms(30s) -> voice(1m)");
    let (strategy, workflow) = policy.for_region(Some("SV"));
    assert_eq!(strategy.kind(), StrategyKind::Ordered);
    assert_eq!(workflow.len(), 3);
    let (strategy, workflow) = policy.for_region(None);
    assert_eq!(strategy.kind(), StrategyKind::Ordered);
    assert_eq!(workflow.to_string(), "sms(1m) -> voice(2m)");
    assert_eq!(policy.config().adaptive.min_samples, 200);
    assert_eq!(
        policy.config().adaptive.stats_refresh,
        Duration::from_secs(90)
    );
    assert!(policy.config().uses_adaptive());

    // With no [fallback] at all: one send, as before workflows.
    let defaults = FallbackConfig::default();
    assert_eq!(defaults.workflow.to_string(), "sms(10m)");
    assert_eq!(defaults.adaptive.stats_refresh, Duration::from_secs(60));
    assert!(!defaults.uses_adaptive());
}

#[test]
fn config_errors_name_the_key_or_step() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct File {
        fallback: FallbackConfig,
    }
    let error =
        toml::from_str::<File>("[fallback.countries.HN]\nworkflow = \"sms(30s) -> vioce(60s)\"")
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("step 2 `vioce(60s)`: unknown channel `vioce`"),
        "{error}"
    );
    let error = toml::from_str::<File>("[fallback.countries.HN]\nstrategi = \"adaptive\"")
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown field `strategi`"), "{error}");
    let error = toml::from_str::<File>("[fallback]\nstrategy = \"random\"")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`ordered`, `adaptive`") || error.contains("ordered"),
        "{error}"
    );

    let mut config = FallbackConfig::default();
    config
        .countries
        .insert("hn".into(), CountryFallback::default());
    assert_eq!(config.validate().unwrap_err().key, "fallback.countries.hn");
    config.countries.clear();
    config
        .countries
        .insert("HN".into(), CountryFallback::default());
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "fallback.countries.HN: sets neither strategy nor workflow"
    );
    config.countries.clear();
    config.adaptive.min_samples = 0;
    assert_eq!(
        config.validate().unwrap_err().key,
        "fallback.adaptive.min_samples"
    );
    config.adaptive = AdaptiveSettings {
        stats_refresh: Duration::from_millis(500),
        ..AdaptiveSettings::default()
    };
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "fallback.adaptive.stats_refresh: must be at least 1s, got 500ms"
    );
    let error = toml::from_str::<File>("[fallback.adaptive]\nstats_refresh = 60")
        .unwrap_err()
        .to_string();
    assert!(error.contains("stats_refresh"), "{error}");
}

#[test]
fn stored_strategy_names_round_trip() {
    for kind in [StrategyKind::Ordered, StrategyKind::Adaptive] {
        assert_eq!(StrategyKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(StrategyKind::parse("random"), None);
}

#[test]
fn an_open_breaker_steers_the_first_step_to_the_next_route() {
    use crate::routing::{Admission, BreakerSettings, CircuitBreakers, RouteKey};
    use std::time::Instant;

    let planner = RoutePlanner::new(RoutePlan {
        default: ["sim", "sim-b", "sim-voice"]
            .iter()
            .map(|n| crate::routing::RouteEntry::named(n))
            .collect(),
        ..RoutePlan::default()
    });
    let breakers = CircuitBreakers::new(BreakerSettings {
        consecutive_failures: 2,
        ..BreakerSettings::default()
    });
    let t0 = Instant::now();
    let sim = RouteKey::new("sim", Some("HN"), Channel::Sms);
    // The dispatcher reports two throttled submissions on sim to HN.
    for _ in 0..2 {
        assert_eq!(breakers.admit(&sim, t0), Admission::Allowed);
        breakers.record_failure(&sim, t0, "ESME_RTHROTTLED");
    }
    let view = breakers.at(t0 + secs(1));
    let routes = |channel: Channel| {
        planner.candidates(
            Some("HN"),
            "50494567890",
            channel,
            |carrier| (carrier == "sim-voice") == (channel == Channel::Voice),
            &view,
        )
    };
    let workflow = Workflow::parse(HN_WORKFLOW).unwrap();
    let first = send(Ordered.start(&facts(&workflow, &[]), &routes).next);
    assert_eq!(first.carrier(), "sim-b");
    assert_eq!(
        first.failover(),
        ["sim"],
        "the open route stays as last resort"
    );
    assert!(
        first.routes[1]
            .reason
            .starts_with("sim breaker open for 1s"),
        "{}",
        first.routes[1].reason
    );
}
