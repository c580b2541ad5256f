//! Scenarios of the shipped rules on a fixed clock, overrides, and rule-file errors.

use chrono::{DateTime, TimeZone, Utc};
use verify_carrier::Channel;

use super::*;
use crate::classify::classify;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn zones_of(number: &str) -> Vec<String> {
    let classification = classify(number, None);
    assert!(classification.valid, "{number}");
    classification.time_zones
}

/// A program registered everywhere a shipped rule asks for registrations.
fn registered_program() -> Program {
    let mut program = Program::new("shop");
    for region in ["IN", "CN", "NG", "ID"] {
        let registration = Registration {
            entity_id: Some("1101234567890123456".into()),
            templates: Category::ALL
                .iter()
                .map(|c| (c.as_str().to_string(), format!("1107{}", *c as u8)))
                .chain([("login".to_string(), "1107999".to_string())])
                .collect(),
            senders: vec!["SHOPIN".into()],
        };
        program
            .registrations
            .insert(region.to_string(), registration);
    }
    program
}

fn message<'a>(
    region: &'a str,
    zones: &'a [String],
    category: Category,
    program: &'a Program,
) -> Message<'a> {
    Message {
        region,
        time_zones: zones,
        category,
        channel: Channel::Sms,
        sender: None,
        program,
        template: None,
    }
}

fn deferred_until(decision: &Decision) -> DateTime<Utc> {
    match decision {
        Decision::Defer { until, .. } => *until,
        other => panic!("expected a deferral, got {}", other.explain()),
    }
}

fn rejected_by(decision: &Decision) -> &str {
    match decision {
        Decision::Reject { rule, .. } => &rule.id,
        other => panic!("expected a rejection, got {}", other.explain()),
    }
}

fn is_send_now(decision: &Decision) -> bool {
    matches!(decision, Decision::SendNow { .. })
}

#[test]
fn every_shipped_file_parses_validates_and_cites_a_source() {
    let mut set = RuleSet::empty();
    for (origin, text) in BUILTIN_FILES {
        set.merge_toml(origin, text).unwrap();
        let file: CountryFile = toml::from_str(text).unwrap();
        let expected = format!("policy/rules/{}.toml", file.country);
        if file.country != "*" {
            assert_eq!(*origin, expected, "file name matches its country");
        }
        for rule in &file.rules {
            assert!(!rule.source.trim().is_empty(), "{}", rule.id);
            assert!(!rule.reason.trim().is_empty(), "{}", rule.id);
        }
    }
    assert_eq!(set, RuleSet::builtin());
    let countries: Vec<&str> = set.countries().collect();
    for region in [
        "IN", "US", "CA", "GB", "DE", "FR", "MX", "BR", "CN", "JP", "HN", "SV", "NG", "ID",
    ] {
        assert!(countries.contains(&region), "{region} ships rules");
        assert!(set.country_name(region).is_some(), "{region} has a name");
        let own = set
            .rules(region)
            .filter(|r| r.id.starts_with(region))
            .count();
        assert!(own > 0, "{region} has rules of its own");
        for rule in set.rules(region) {
            assert!(
                !rule.source.is_empty() && !rule.reason.is_empty(),
                "{}",
                rule.id
            );
        }
    }
}

#[test]
fn india_marketing_at_22_ist_waits_until_09_the_next_morning() {
    let rules = RuleSet::builtin();
    let program = registered_program();
    // libphonenumber says Asia/Calcutta, the legacy name of Asia/Kolkata.
    let zones = zones_of("+91 98123 45678");
    assert_eq!(zones, ["Asia/Calcutta"]);
    let now = utc(2026, 11, 25, 16, 30); // 22:00 IST
    let decision = rules.evaluate(&message("IN", &zones, Category::Marketing, &program), now);
    assert_eq!(deferred_until(&decision), utc(2026, 11, 26, 3, 30)); // 09:00 IST
    assert_eq!(
        decision.rule().unwrap().id.as_ref(),
        "IN.trai.marketing_hours"
    );
    let explanation = decision.explain();
    assert!(
        explanation.starts_with(
            "MARKETING to IN at 22:00 Asia/Calcutta is outside 09:00-21:00 (IN.trai.marketing_hours, TRAI TCCCPR 2018"
        ),
        "{explanation}"
    );
    assert!(
        explanation.ends_with("deferred to 2026-11-26T03:30:00Z"),
        "{explanation}"
    );
}

#[test]
fn india_alerts_and_otps_go_at_22_with_their_dlt_ids() {
    let rules = RuleSet::builtin();
    let program = registered_program();
    let zones = zones_of("+91 98123 45678");
    let now = utc(2026, 11, 25, 16, 30);
    for category in [Category::Alert, Category::Otp, Category::Transactional] {
        let decision = rules.evaluate(&message("IN", &zones, category, &program), now);
        let Decision::SendNow {
            applied,
            entity_id,
            template_id,
        } = &decision
        else {
            panic!("{category}: {}", decision.explain());
        };
        assert_eq!(entity_id.as_deref(), Some("1101234567890123456"));
        assert_eq!(template_id, &Some(format!("1107{}", category as u8)));
        let ids: Vec<&str> = applied.iter().map(|r| r.id.as_ref()).collect();
        assert!(ids.contains(&"IN.dlt.template_required"), "{ids:?}");
        assert!(!ids.contains(&"IN.trai.marketing_hours"), "{ids:?}");
    }
    // A template name wins over the category.
    let mut named = message("IN", &zones, Category::Otp, &program);
    named.template = Some("login");
    let Decision::SendNow { template_id, .. } = rules.evaluate(&named, now) else {
        panic!("a registered template goes");
    };
    assert_eq!(template_id.as_deref(), Some("1107999"));
}

#[test]
fn india_without_dlt_registrations_is_rejected_naming_the_rule() {
    let rules = RuleSet::builtin();
    let zones = zones_of("+91 98123 45678");
    let now = utc(2026, 11, 25, 6, 30); // noon IST: no window in the way
    let mut program = registered_program();
    let india = program.registrations.get_mut("IN").unwrap();
    india.templates.remove("OTP");
    let decision = rules.evaluate(&message("IN", &zones, Category::Otp, &program), now);
    assert_eq!(rejected_by(&decision), "IN.dlt.template_required");
    assert!(
        decision
            .explain()
            .contains("program `shop` has no registered template ID for OTP messages to IN"),
        "{}",
        decision.explain()
    );
    let mut named = message("IN", &zones, Category::Otp, &program);
    named.template = Some("signup");
    assert!(
        rules
            .evaluate(&named, now)
            .explain()
            .contains("`signup` or OTP")
    );

    let unregistered = Program::new("new-app");
    let decision = rules.evaluate(&message("IN", &zones, Category::Otp, &unregistered), now);
    assert_eq!(rejected_by(&decision), "IN.dlt.entity_required");

    let program = registered_program();
    let mut with_sender = message("IN", &zones, Category::Otp, &program);
    with_sender.sender = Some(Sender {
        kind: SenderKind::Alphanumeric,
        address: "OTHERS",
    });
    let decision = rules.evaluate(&with_sender, now);
    assert_eq!(rejected_by(&decision), "IN.dlt.header_registered");
    with_sender.sender = Some(Sender {
        kind: SenderKind::Alphanumeric,
        address: "SHOPIN",
    });
    assert!(is_send_now(&rules.evaluate(&with_sender, now)));
    // Voice calls need no DLT template.
    let mut call = message("IN", &zones, Category::Otp, &unregistered);
    call.channel = Channel::Voice;
    assert!(is_send_now(&rules.evaluate(&call, now)));
}

#[test]
fn us_marketing_follows_each_recipients_own_clock() {
    let rules = RuleSet::builtin();
    let program = Program::new("shop");
    let new_york = zones_of("+1 212 555 0123");
    let san_francisco = zones_of("+1 415 555 0123");
    assert_eq!(new_york, ["America/New_York"]);
    assert_eq!(san_francisco, ["America/Los_Angeles"]);

    let at_2030_new_york = utc(2026, 11, 26, 1, 30);
    for zones in [&new_york, &san_francisco] {
        let decision = rules.evaluate(
            &message("US", zones, Category::Marketing, &program),
            at_2030_new_york,
        );
        assert!(is_send_now(&decision), "{}", decision.explain());
    }

    let at_2130_new_york = utc(2026, 11, 26, 2, 30);
    let decision = rules.evaluate(
        &message("US", &new_york, Category::Marketing, &program),
        at_2130_new_york,
    );
    assert_eq!(deferred_until(&decision), utc(2026, 11, 26, 13, 0)); // 08:00 EST
    assert_eq!(
        decision.rule().unwrap().id.as_ref(),
        "US.tcpa.marketing_hours"
    );
    assert!(
        decision
            .explain()
            .starts_with("MARKETING to US at 21:30 America/New_York is outside 08:00-21:00"),
        "{}",
        decision.explain()
    );
    let decision = rules.evaluate(
        &message("US", &san_francisco, Category::Marketing, &program),
        at_2130_new_york,
    );
    assert!(is_send_now(&decision), "18:30 in San Francisco");
}

#[test]
fn us_numbers_refuse_alphanumeric_senders_in_every_category() {
    let rules = RuleSet::builtin();
    let program = Program::new("shop");
    let zones = zones_of("+1 212 555 0123");
    let noon = utc(2026, 11, 25, 17, 0);
    for category in Category::ALL {
        let mut sms = message("US", &zones, category, &program);
        sms.sender = Some(Sender {
            kind: SenderKind::guess("SHOP"),
            address: "SHOP",
        });
        let decision = rules.evaluate(&sms, noon);
        assert_eq!(rejected_by(&decision), "US.ctia.sender_types", "{category}");
        assert!(
            decision.explain().starts_with(
                "an alphanumeric sender (SHOP) cannot send sms to US numbers; use one of: long_code, short_code, toll_free (US.ctia.sender_types, carrier requirement"
            ),
            "{}",
            decision.explain()
        );
        for address in ["+15017122661", "12345"] {
            sms.sender = Some(Sender {
                kind: SenderKind::guess(address),
                address,
            });
            assert!(is_send_now(&rules.evaluate(&sms, noon)), "{address}");
        }
    }
    assert_eq!(
        rejected_by(&rules.evaluate(
            &Message {
                sender: Some(Sender {
                    kind: SenderKind::Alphanumeric,
                    address: "SHOP",
                }),
                ..message("CA", &zones, Category::Otp, &program)
            },
            noon
        )),
        "CA.carrier.sender_types"
    );
}

#[test]
fn otp_is_never_deferred_by_any_shipped_rule() {
    let rules = RuleSet::builtin();
    let program = registered_program();
    let regions: Vec<&str> = rules.countries().collect();
    for region in regions {
        for hour in 0..24 {
            for day in [23, 28, 29] {
                // Monday, Saturday and Sunday in November 2026.
                let now = utc(2026, 11, day, hour, 7);
                let decision = rules.evaluate(&message(region, &[], Category::Otp, &program), now);
                assert!(is_send_now(&decision), "{region}: {}", decision.explain());
            }
        }
    }
}

#[test]
fn a_blocked_country_rejects_everything_and_none_is_blocked_by_default() {
    let program = registered_program();
    let noon = utc(2026, 11, 25, 12, 0);
    let default = RuleSet::from_config(&RulesConfig::default()).unwrap();
    assert_eq!(default, RuleSet::builtin());
    assert!(is_send_now(
        &default.evaluate(&message("KP", &[], Category::Otp, &program), noon)
    ));

    let config = RulesConfig {
        blocked_countries: vec!["KP".into(), "IN".into()],
        ..RulesConfig::default()
    };
    let rules = RuleSet::from_config(&config).unwrap();
    for category in Category::ALL {
        for region in ["KP", "IN"] {
            let mut call = message(region, &[], category, &program);
            call.channel = Channel::Voice;
            let decision = rules.evaluate(&call, noon);
            assert_eq!(rejected_by(&decision), format!("{region}.config.blocked"));
            assert!(
                decision
                    .explain()
                    .starts_with(&format!("messages to {region} are blocked"))
            );
        }
    }
    let error = RuleSet::from_config(&RulesConfig {
        blocked_countries: vec!["Korea".into()],
        ..RulesConfig::default()
    })
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("policy.rules.blocked_countries: field `country`"),
        "{error}"
    );
}

#[test]
fn several_zones_allow_only_the_times_allowed_in_all_of_them() {
    let rules = RuleSet::builtin();
    let program = Program::new("shop");
    let both: Vec<String> = vec!["America/New_York".into(), "America/Los_Angeles".into()];
    let marketing = message("US", &both, Category::Marketing, &program);
    // 20:30 New York / 17:30 Los Angeles: inside in both.
    assert!(is_send_now(
        &rules.evaluate(&marketing, utc(2026, 11, 26, 1, 30))
    ));
    // 21:30 New York: the earliest instant allowed in both is 08:00 in Los Angeles (11:00 NY).
    let decision = rules.evaluate(&marketing, utc(2026, 11, 26, 2, 30));
    assert_eq!(deferred_until(&decision), utc(2026, 11, 26, 16, 0));
    // 09:00 New York is 06:00 in Los Angeles: wait for Los Angeles.
    let decision = rules.evaluate(&marketing, utc(2026, 11, 26, 14, 0));
    assert_eq!(deferred_until(&decision), utc(2026, 11, 26, 16, 0));
    assert!(
        decision.explain().contains("06:00 America/Los_Angeles"),
        "{}",
        decision.explain()
    );

    // A Brazilian number without zones of its own: all four of the country's. Monday 08:30 in
    // São Paulo; the window opens last in Rio Branco (09:00 there, 14:00Z).
    let brazil = message("BR", &[], Category::Marketing, &program);
    let decision = rules.evaluate(&brazil, utc(2026, 11, 23, 11, 30));
    assert_eq!(deferred_until(&decision), utc(2026, 11, 23, 14, 0));
    // Saturday 09:00-13:00 holds in all four zones only from 14:00Z (09:00 in Rio Branco)
    // to 15:00Z (13:00 in Noronha).
    let decision = rules.evaluate(&brazil, utc(2026, 11, 28, 14, 30));
    assert!(is_send_now(&decision), "{}", decision.explain());
    // Saturday 16:00Z: closed in Noronha; next is Monday 09:00 Rio Branco (14:00Z).
    let decision = rules.evaluate(&brazil, utc(2026, 11, 28, 16, 0));
    assert_eq!(deferred_until(&decision), utc(2026, 11, 30, 14, 0));

    // Zones whose windows never overlap: rejected, naming the rule.
    let mut set = RuleSet::builtin();
    set.merge_toml(
        "test",
        r#"
        country = "JP"
        [[rule]]
        id = "JP.practice.marketing_hours"
        kind = "window"
        categories = ["MARKETING"]
        windows = ["09:00-10:00"]
        reason = "r"
        source = "s"
        "#,
    )
    .unwrap();
    let apart: Vec<String> = vec!["Asia/Tokyo".into(), "America/New_York".into()];
    let decision = set.evaluate(
        &message("JP", &apart, Category::Marketing, &program),
        utc(2026, 11, 26, 0, 0),
    );
    assert_eq!(rejected_by(&decision), "JP.practice.marketing_hours");
    assert!(
        decision.explain().contains("Asia/Tokyo, America/New_York"),
        "{}",
        decision.explain()
    );
}

fn night_rule_set() -> RuleSet {
    let mut set = RuleSet::builtin();
    set.merge_toml(
        "night.toml",
        r#"
        country = "GB"
        [[rule]]
        id = "GB.test.night_only"
        kind = "window"
        categories = ["ALERT"]
        windows = ["fri 22:00-06:00"]
        reason = "night shift"
        source = "a test"
        "#,
    )
    .unwrap();
    set
}

#[test]
fn windows_crossing_midnight_cover_the_next_morning() {
    let rules = night_rule_set();
    let program = Program::new("shop");
    let alert = message("GB", &[], Category::Alert, &program);
    // London is on GMT in November. Friday 27 November 2026.
    assert!(is_send_now(
        &rules.evaluate(&alert, utc(2026, 11, 27, 23, 0))
    ));
    assert!(is_send_now(
        &rules.evaluate(&alert, utc(2026, 11, 28, 5, 59))
    ));
    let decision = rules.evaluate(&alert, utc(2026, 11, 28, 6, 0));
    assert_eq!(deferred_until(&decision), utc(2026, 12, 4, 22, 0));
    let decision = rules.evaluate(&alert, utc(2026, 11, 27, 12, 0));
    assert_eq!(deferred_until(&decision), utc(2026, 11, 27, 22, 0));
    assert!(
        decision.explain().contains("at Fri 12:00 Europe/London"),
        "{}",
        decision.explain()
    );
}

#[test]
fn daylight_saving_changes_move_the_window_in_utc() {
    let rules = RuleSet::builtin();
    let program = Program::new("shop");
    let zones: Vec<String> = vec!["America/New_York".into()];
    let marketing = message("US", &zones, Category::Marketing, &program);
    // Sunday 8 March 2026, clocks go from 02:00 EST to 03:00 EDT: 08:00 is 12:00Z, not 13:00Z.
    let decision = rules.evaluate(&marketing, utc(2026, 3, 8, 6, 30));
    assert_eq!(deferred_until(&decision), utc(2026, 3, 8, 12, 0));
    // 20:59 EDT that evening still goes; 21:00 EDT (01:00Z) waits for 08:00 EDT.
    assert!(is_send_now(
        &rules.evaluate(&marketing, utc(2026, 3, 9, 0, 59))
    ));
    assert_eq!(
        deferred_until(&rules.evaluate(&marketing, utc(2026, 3, 9, 1, 0))),
        utc(2026, 3, 9, 12, 0)
    );
    // Sunday 1 November 2026, back from EDT to EST: 08:00 is 13:00Z.
    let decision = rules.evaluate(&marketing, utc(2026, 11, 1, 5, 0));
    assert_eq!(deferred_until(&decision), utc(2026, 11, 1, 13, 0));

    // A window opening inside the skipped hour opens when the hour ends (03:00 EDT, 07:00Z).
    let mut set = RuleSet::builtin();
    set.merge_toml(
        "gap.toml",
        r#"
        country = "US"
        [[rule]]
        id = "US.test.early"
        kind = "window"
        categories = ["ALERT"]
        windows = ["02:30-04:00"]
        reason = "r"
        source = "s"
        "#,
    )
    .unwrap();
    let alert = message("US", &zones, Category::Alert, &program);
    assert_eq!(
        deferred_until(&set.evaluate(&alert, utc(2026, 3, 8, 6, 0))),
        utc(2026, 3, 8, 7, 0)
    );
}

#[test]
fn overrides_replace_add_and_remove_rules() {
    #[derive(serde::Deserialize)]
    struct Config {
        policy: Policy,
    }
    #[derive(serde::Deserialize)]
    struct Policy {
        rules: RulesConfig,
    }
    let config: Config = toml::from_str(
        r#"
        [policy.rules]
        blocked_countries = ["KP"]

        # Florida-style hours for every US number.
        [[policy.rules.override]]
        country = "US"
        remove = ["US.ctia.sender_types"]
        [[policy.rules.override.rule]]
        id = "US.tcpa.marketing_hours"
        kind = "window"
        categories = ["MARKETING"]
        windows = ["08:00-20:00"]
        reason = "Florida Telephone Solicitation Act hours, for every number"
        source = "Fla. Stat. § 501.059(8)(a)"

        # A country verifyd ships nothing for.
        [[policy.rules.override]]
        country = "AU"
        time_zones = ["Australia/Sydney"]
        remove = ["default.marketing_no_voice"]
        [[policy.rules.override.rule]]
        id = "AU.spam.marketing_hours"
        kind = "window"
        categories = ["MARKETING"]
        windows = ["09:00-20:00"]
        reason = "r"
        source = "s"
        "#,
    )
    .unwrap();
    let rules = RuleSet::from_config(&config.policy.rules).unwrap();
    let program = Program::new("shop");
    let zones: Vec<String> = vec!["America/New_York".into()];
    let mut us = message("US", &zones, Category::Marketing, &program);
    let decision = rules.evaluate(&us, utc(2026, 11, 26, 1, 30)); // 20:30 New York
    assert_eq!(deferred_until(&decision), utc(2026, 11, 26, 13, 0));
    assert!(
        decision.explain().contains("Fla. Stat."),
        "{}",
        decision.explain()
    );
    us.sender = Some(Sender {
        kind: SenderKind::Alphanumeric,
        address: "SHOP",
    });
    us.category = Category::Otp;
    assert!(
        is_send_now(&rules.evaluate(&us, utc(2026, 11, 26, 1, 30))),
        "rule removed"
    );

    let au = message("AU", &[], Category::Marketing, &program);
    assert!(is_send_now(&rules.evaluate(&au, utc(2026, 11, 25, 8, 0)))); // 19:00 AEDT
    assert_eq!(
        deferred_until(&rules.evaluate(&au, utc(2026, 11, 25, 10, 0))), // 21:00 AEDT
        utc(2026, 11, 25, 22, 0)
    );
    let mut call = au;
    call.channel = Channel::Voice;
    call.category = Category::Marketing;
    let noon_sydney = utc(2026, 11, 25, 1, 0);
    assert!(
        is_send_now(&rules.evaluate(&call, noon_sydney)),
        "default removed for AU"
    );
    let mut gb_call = message("GB", &[], Category::Marketing, &program);
    gb_call.channel = Channel::Voice;
    assert_eq!(
        rejected_by(&rules.evaluate(&gb_call, utc(2026, 11, 25, 12, 0))),
        "default.marketing_no_voice"
    );
    assert_eq!(
        rejected_by(&rules.evaluate(&message("KP", &[], Category::Otp, &program), noon_sydney)),
        "KP.config.blocked"
    );
}

#[test]
fn bad_rule_files_name_the_file_and_field() {
    let cases: [(&str, &str); 10] = [
        (
            "country = \"US\"\n[[rule]]\nid = \"US.x\"\nkind = \"window\"\ncategories = [\"MARKETING\"]\nwindow = [\"09:00-21:00\"]\nreason = \"r\"\nsource = \"s\"\n",
            "window",
        ),
        (
            "country = \"US\"\n[[rule]]\nid = \"US.x\"\nkind = \"window\"\ncategories = [\"MARKETING\"]\nwindows = [\"9-21\"]\nreason = \"r\"\nsource = \"s\"\n",
            "rule `US.x`: field `windows`",
        ),
        (
            "country = \"US\"\n[[rule]]\nid = \"US.x\"\nkind = \"window\"\nwindows = [\"09:00-21:00\"]\nreason = \"r\"\nsource = \"s\"\n",
            "rule `US.x`: field `categories`",
        ),
        (
            "country = \"US\"\n[[rule]]\nid = \"US.x\"\nkind = \"window\"\ncategories = [\"PROMO\"]\nwindows = [\"09:00-21:00\"]\nreason = \"r\"\nsource = \"s\"\n",
            "categories",
        ),
        ("country = \"XX\"\n", "field `country`"),
        (
            "country = \"US\"\ntime_zones = [\"America/Gotham\"]\n",
            "field `time_zones`: `America/Gotham`",
        ),
        (
            "country = \"AU\"\n[[rule]]\nid = \"AU.x\"\nkind = \"window\"\ncategories = [\"MARKETING\"]\nwindows = [\"09:00-21:00\"]\nreason = \"r\"\nsource = \"s\"\n",
            "field `time_zones`: required",
        ),
        (
            "country = \"US\"\n[[rule]]\nid = \"US.x\"\nkind = \"sender_kinds\"\nallowed_senders = [\"long_code\"]\nreason = \"r\"\nsource = \" \"\n",
            "rule `US.x`: field `source`: must not be empty",
        ),
        (
            "country = \"US\"\n[[rule]]\nid = \"IN.x\"\nkind = \"block\"\nreason = \"r\"\nsource = \"s\"\n",
            "rule `IN.x`: field `id`",
        ),
        (
            "country = \"US\"\n[[rule]]\nid = \"US.x\"\nkind = \"block\"\nwindows = [\"09:00-21:00\"]\nreason = \"r\"\nsource = \"s\"\n",
            "field `windows`: belongs to `window` rules",
        ),
    ];
    for (text, expected) in cases {
        let mut set = RuleSet::builtin();
        let error = set.merge_toml("policy/rules/bad.toml", text).unwrap_err();
        let shown = error.to_string();
        assert!(shown.starts_with("policy/rules/bad.toml: "), "{shown}");
        assert!(shown.contains(expected), "{expected:?} not in {shown}");
        assert_eq!(set, RuleSet::builtin(), "a failed merge changes nothing");
    }
    let mut set = RuleSet::builtin();
    let error = set
        .merge_toml("o", "country = \"US\"\nremove = [\"US.nope\"]\n")
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("field `remove`: there is no rule `US.nope`")
    );
}

#[test]
fn marketing_calls_are_refused_by_default_and_explanations_read_well() {
    let rules = RuleSet::builtin();
    let program = registered_program();
    let zones = zones_of("+44 20 7183 8750");
    let mut call = message("GB", &zones, Category::Marketing, &program);
    call.channel = Channel::Voice;
    let decision = rules.evaluate(&call, utc(2026, 11, 25, 12, 0));
    assert_eq!(
        decision.explain(),
        "MARKETING messages to GB cannot go by voice (default.marketing_no_voice, EU ePrivacy Directive 2002/58/EC Art. 13(1) (automated calling systems); US 47 U.S.C. § 227(b)(1) and 47 CFR 64.1200(a)(2)-(3) (artificial or prerecorded voice); verifyd's conservative default elsewhere): rejected"
    );
    call.channel = Channel::Sms;
    let decision = rules.evaluate(&call, utc(2026, 11, 25, 12, 0));
    assert_eq!(
        decision.explain(),
        "sent now: allowed by default.marketing_no_voice, GB.industry.marketing_hours"
    );
    let nothing = RuleSet::empty().evaluate(&call, utc(2026, 11, 25, 12, 0));
    assert_eq!(nothing.explain(), "sent now: no country rule applies");
}

#[test]
fn the_readme_table_lists_every_shipped_rule() {
    let readme = include_str!("../../rules/README.md");
    let rules = RuleSet::builtin();
    let regions: Vec<&str> = rules.countries().collect();
    for region in regions {
        for rule in rules.rules(region) {
            assert!(
                readme.contains(&format!("`{}`", rule.id)),
                "policy/rules/README.md does not list {}",
                rule.id
            );
        }
    }
}

#[test]
fn every_zone_libphonenumber_names_resolves_in_the_tz_database() {
    let names = verify_numbers::number_data::NumberData::embedded().time_zone_names();
    assert!(names.len() > 250, "{}", names.len());
    let unknown: Vec<&str> = names
        .into_iter()
        .filter(|name| file::parse_zone(name).is_none())
        .collect();
    assert!(unknown.is_empty(), "not in chrono-tz: {unknown:?}");
}
