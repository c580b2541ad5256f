use std::sync::{Arc, Barrier};
use std::thread;

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn settings() -> BreakerSettings {
    BreakerSettings {
        consecutive_failures: 3,
        cool_down: secs(30),
        half_open_probes: 2,
        ..BreakerSettings::default()
    }
}

fn route() -> RouteKey {
    RouteKey::new("airtel", Some("IN"), Channel::Sms)
}

#[test]
fn opens_after_consecutive_temporary_failures_and_a_success_resets_the_count() {
    let breakers = CircuitBreakers::new(settings());
    let t0 = Instant::now();
    breakers.record_failure(&route(), t0, "throttled");
    breakers.record_failure(&route(), t0, "throttled");
    breakers.record_success(&route(), t0);
    breakers.record_failure(&route(), t0, "throttled");
    breakers.record_failure(&route(), t0, "throttled");
    assert_eq!(breakers.admit(&route(), t0), Admission::Allowed);

    breakers.record_failure(&route(), t0 + secs(1), "ESME_RTHROTTLED");
    let Admission::Rejected { why } = breakers.admit(&route(), t0 + secs(13)) else {
        panic!("three failures in a row open the breaker");
    };
    assert_eq!(
        why,
        "breaker open for 12s after 3 temporary failures in a row (last: ESME_RTHROTTLED); probes in 18s"
    );
    // Other routes of the same carrier are not affected.
    let voice = RouteKey::new("airtel", Some("IN"), Channel::Voice);
    assert_eq!(breakers.admit(&voice, t0 + secs(2)), Admission::Allowed);
    let snapshot = breakers.snapshot(&route(), t0 + secs(13));
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.probes_in, Some(secs(18)));
    assert_eq!(snapshot.times_opened, 1);
}

#[test]
fn half_open_lets_k_probes_through_and_closes_on_success() {
    let breakers = CircuitBreakers::new(settings());
    let t0 = Instant::now();
    for _ in 0..3 {
        breakers.record_failure(&route(), t0, "down");
    }
    assert!(matches!(
        breakers.admit(&route(), t0 + secs(29)),
        Admission::Rejected { .. }
    ));
    let t1 = t0 + secs(30);
    assert_eq!(breakers.admit(&route(), t1), Admission::Probe);
    assert_eq!(breakers.admit(&route(), t1), Admission::Probe);
    let Admission::Rejected { why } = breakers.admit(&route(), t1) else {
        panic!("only two probes at once");
    };
    assert!(why.contains("half-open"), "{why}");
    assert_eq!(
        breakers.snapshot(&route(), t1).state,
        BreakerState::HalfOpen
    );

    breakers.record_success(&route(), t1 + secs(1));
    assert_eq!(breakers.admit(&route(), t1 + secs(1)), Admission::Allowed);
    let snapshot = breakers.snapshot(&route(), t1 + secs(1));
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.consecutive_failures, 0);
}

#[test]
fn a_failed_probe_opens_the_breaker_again_for_a_full_cool_down() {
    let breakers = CircuitBreakers::new(settings());
    let t0 = Instant::now();
    for _ in 0..3 {
        breakers.record_failure(&route(), t0, "down");
    }
    let t1 = t0 + secs(30);
    assert_eq!(breakers.admit(&route(), t1), Admission::Probe);
    breakers.record_failure(&route(), t1 + secs(2), "still down");
    let snapshot = breakers.snapshot(&route(), t1 + secs(2));
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.cause.as_deref(), Some("probe failed: still down"));
    assert_eq!(snapshot.times_opened, 2);
    assert!(matches!(
        breakers.admit(&route(), t1 + secs(31)),
        Admission::Rejected { .. }
    ));
    assert_eq!(breakers.admit(&route(), t1 + secs(32)), Admission::Probe);
}

#[test]
fn probes_never_reported_free_their_slots_after_a_cool_down() {
    let breakers = CircuitBreakers::new(settings());
    let t0 = Instant::now();
    for _ in 0..3 {
        breakers.record_failure(&route(), t0, "down");
    }
    let t1 = t0 + secs(30);
    assert_eq!(breakers.admit(&route(), t1), Admission::Probe);
    assert_eq!(breakers.admit(&route(), t1), Admission::Probe);
    assert!(matches!(
        breakers.admit(&route(), t1 + secs(29)),
        Admission::Rejected { .. }
    ));
    assert_eq!(breakers.admit(&route(), t1 + secs(30)), Admission::Probe);
}

#[test]
fn failure_rate_over_a_window_opens_the_breaker() {
    let settings = BreakerSettings {
        consecutive_failures: 100,
        failure_rate: Some(0.5),
        window: secs(60),
        min_calls: 10,
        ..settings()
    };
    let mut breaker = Breaker::new();
    let t0 = Instant::now();
    // Alternating outcomes never make 100 in a row, but half of the calls fail.
    for i in 0..9 {
        if i % 2 == 0 {
            breaker.record_failure(&settings, t0, "throttled");
        } else {
            breaker.record_success(&settings, t0);
        }
    }
    assert_eq!(breaker.state(&settings, t0), BreakerState::Closed);
    breaker.record_failure(&settings, t0, "throttled"); // 6 of 10
    assert_eq!(breaker.state(&settings, t0), BreakerState::Open);
    assert_eq!(
        breaker.snapshot(&settings, t0).cause.as_deref(),
        Some("6 of 10 calls failed within 1m (last: throttled)")
    );

    // A new window forgets the old calls.
    let mut breaker = Breaker::new();
    for i in 0..9 {
        if i % 2 == 0 {
            breaker.record_failure(&settings, t0, "throttled");
        } else {
            breaker.record_success(&settings, t0);
        }
    }
    // The tenth call would open it, but it falls in the next window.
    breaker.record_failure(&settings, t0 + secs(61), "throttled");
    assert_eq!(
        breaker.state(&settings, t0 + secs(61)),
        BreakerState::Closed
    );
    assert_eq!(breaker.snapshot(&settings, t0 + secs(61)).window_calls, 1);
}

#[test]
fn health_view_reports_probing_and_unhealthy_routes() {
    let breakers = CircuitBreakers::new(settings());
    let t0 = Instant::now();
    for _ in 0..3 {
        breakers.record_failure(&route(), t0, "down");
    }
    let view = breakers.at(t0 + secs(5));
    assert!(!view.health("airtel", Some("IN"), Channel::Sms).is_usable());
    assert_eq!(
        view.health("airtel", Some("GB"), Channel::Sms),
        RouteHealth::Healthy
    );
    assert_eq!(
        breakers
            .at(t0 + secs(30))
            .health("airtel", Some("IN"), Channel::Sms),
        RouteHealth::Probing
    );
    assert_eq!(breakers.snapshots(t0).len(), 1);
}

#[test]
fn disabled_breakers_always_admit() {
    let breakers = CircuitBreakers::new(BreakerSettings {
        enabled: false,
        ..settings()
    });
    let t0 = Instant::now();
    for _ in 0..10 {
        breakers.record_failure(&route(), t0, "down");
    }
    assert_eq!(breakers.admit(&route(), t0), Admission::Allowed);
}

#[test]
fn concurrent_tasks_open_the_breaker_once_and_share_the_probe_slots() {
    let breakers = Arc::new(CircuitBreakers::new(BreakerSettings {
        consecutive_failures: 50,
        half_open_probes: 3,
        ..settings()
    }));
    let t0 = Instant::now();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let breakers = Arc::clone(&breakers);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..25 {
                    breakers.record_failure(&route(), t0, "throttled");
                }
                barrier.wait();
                (0..10)
                    .filter(|_| breakers.admit(&route(), t0 + secs(30)) == Admission::Probe)
                    .count()
            })
        })
        .collect();
    let probes: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(probes, 3, "exactly half_open_probes probes in all");
    let snapshot = breakers.snapshot(&route(), t0 + secs(30));
    assert_eq!(snapshot.times_opened, 1, "200 failures open it once");
    assert_eq!(snapshot.probes_in_flight, 3);
}

#[test]
fn settings_validation_names_the_key() {
    let error = BreakerSettings {
        failure_rate: Some(1.5),
        ..BreakerSettings::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(error.key, "routes.breaker.failure_rate");
    let error = BreakerSettings {
        consecutive_failures: 0,
        ..BreakerSettings::default()
    }
    .validate()
    .unwrap_err();
    assert_eq!(error.key, "routes.breaker.consecutive_failures");
    assert!(BreakerSettings::default().validate().is_ok());
}
