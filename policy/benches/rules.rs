//! Cost of one country-rules evaluation, against classifying the same number in the same run
//! (the server does both per message; the machine is shared, so read the ratios).
//!
//! Run: `cargo bench -p verify-policy --bench rules`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use verify_policy::Channel;
use verify_policy::classify::classify;
use verify_policy::rules::{Category, Message, Program, Registration, RuleSet};

/// Runs `work` for about `budget` and returns nanoseconds per call.
fn per_call(budget: Duration, mut work: impl FnMut()) -> f64 {
    for _ in 0..1_000 {
        work();
    }
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget {
        for _ in 0..1_000 {
            work();
        }
        calls += 1_000;
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    let budget = Duration::from_millis(700);
    let rules = RuleSet::builtin();
    let mut program = Program::new("shop");
    program.registrations.insert(
        "IN".into(),
        Registration {
            entity_id: Some("1101234567890123456".into()),
            templates: [("OTP".to_string(), "1107000000000000001".to_string())]
                .into_iter()
                .collect(),
            senders: vec!["SHOPIN".into()],
        },
    );
    let india = classify("+91 98123 45678", None).time_zones;
    let new_york = classify("+1 212 555 0123", None).time_zones;
    let noon_india = Utc.with_ymd_and_hms(2026, 11, 25, 6, 30, 0).unwrap();
    let late_new_york = Utc.with_ymd_and_hms(2026, 11, 26, 2, 30, 0).unwrap();
    let message = |region, zones, category| Message {
        region,
        time_zones: zones,
        category,
        channel: Channel::Sms,
        sender: None,
        program: &program,
        template: None,
    };

    let baseline = per_call(budget, || {
        black_box(classify(black_box("+91 98123 45678"), None));
    });
    let cases = [
        (
            "IN OTP, DLT checked, send now",
            message("IN", &india, Category::Otp),
            noon_india,
        ),
        (
            "IN MARKETING at noon, window checked, send now",
            message("IN", &india, Category::Marketing),
            noon_india,
        ),
        (
            "US MARKETING at 21:30, deferred (search)",
            message("US", &new_york, Category::Marketing),
            late_new_york,
        ),
        (
            "BR MARKETING, 4 country zones, deferred",
            message("BR", &[], Category::Marketing),
            late_new_york,
        ),
    ];
    println!("baseline: classify one number: {baseline:.0} ns");
    for (name, message, now) in cases {
        let ns = per_call(budget, || {
            black_box(rules.evaluate(black_box(&message), now));
        });
        println!(
            "{name}: {ns:.0} ns per evaluation, {:.2}x a classification",
            ns / baseline
        );
    }
}
