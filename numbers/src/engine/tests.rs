use super::*;

fn engine() -> &'static Engine {
    Engine::embedded()
}

fn classify(input: &str, hint: Option<&str>) -> Classified {
    let engine = engine();
    engine.classify(input, hint.and_then(|h| engine.region(h)))
}

fn region_of(c: &Classified) -> Option<&'static str> {
    c.territory.map(|t| engine().region_code(t))
}

#[test]
fn metadata_loads_every_territory() {
    let engine = engine();
    assert_eq!(engine.metadata_version(), "9.0.43");
    assert!(
        engine.territory_count() > 250,
        "{}",
        engine.territory_count()
    );
    assert!(engine.region("IN").is_some());
    assert!(engine.region("ZZ").is_none());
}

#[test]
fn e164_numbers_get_type_and_region() {
    let c = classify("+91 98123 45678", None);
    assert!(c.valid, "{c:?}");
    assert_eq!(c.line_type, LineType::Mobile);
    assert_eq!(region_of(&c), Some("IN"));

    let c = classify("+44 20 7946 0123", None);
    assert!(c.valid);
    assert_eq!(c.line_type, LineType::FixedLine);

    // Shared calling codes find their territory.
    assert_eq!(region_of(&classify("+1 416 555 0123", None)), Some("CA"));
    assert_eq!(region_of(&classify("+1 268 464 1234", None)), Some("AG"));
    assert_eq!(region_of(&classify("+7 701 123 4567", None)), Some("KZ"));
    assert_eq!(
        classify("+1 212 555 0123", None).line_type,
        LineType::FixedLineOrMobile
    );
}

#[test]
fn national_input_uses_the_hint_and_strips_the_prefix() {
    let engine = engine();
    let c = classify("098123 45678", Some("IN"));
    assert!(c.valid, "{c:?}");
    let parsed = c.parsed.unwrap();
    assert_eq!(engine.e164(&parsed), "+919812345678");
    let c = classify("(020) 7946 0123", Some("GB"));
    assert_eq!(engine.e164(&c.parsed.unwrap()), "+442079460123");
    // International prefix dialled from the hint's country.
    let c = classify("00 44 20 7946 0123", Some("DE"));
    assert_eq!(engine.e164(&c.parsed.unwrap()), "+442079460123");
    // Local seven-digit number of Antigua becomes its full number by the transform rule.
    let c = classify("464 1234", Some("AG"));
    assert_eq!(engine.e164(&c.parsed.unwrap()), "+12684641234");
}

#[test]
fn invalid_input_has_reasons() {
    assert_eq!(
        classify("", None).invalid_reason,
        Some(InvalidReason::NotANumber)
    );
    assert_eq!(
        classify("hello", None).invalid_reason,
        Some(InvalidReason::NotANumber)
    );
    assert_eq!(
        classify("+999 123456", None).invalid_reason,
        Some(InvalidReason::InvalidCountryCode)
    );
    assert_eq!(
        classify("0123456", None).invalid_reason,
        Some(InvalidReason::InvalidCountryCode)
    );
    assert_eq!(
        classify("+91 98", None).invalid_reason,
        Some(InvalidReason::TooShort)
    );
    assert_eq!(
        classify(&format!("+1{}", "2".repeat(30)), None).invalid_reason,
        Some(InvalidReason::TooLong)
    );
    assert_eq!(
        classify("+1 099 555 0123", None).invalid_reason,
        Some(InvalidReason::NoSuchRange)
    );
}

#[test]
fn formats_follow_the_metadata() {
    let engine = engine();
    let parsed = classify("+91 98123 45678", None).parsed.unwrap();
    assert_eq!(engine.format(&parsed, true), "098123 45678");
    assert_eq!(engine.format(&parsed, false), "+91 98123 45678");
    let parsed = classify("+44 20 7946 0123", None).parsed.unwrap();
    assert_eq!(engine.format(&parsed, true), "020 7946 0123");
    assert_eq!(engine.format(&parsed, false), "+44 20 7946 0123");
    let parsed = classify("+1 212 555 0123", None).parsed.unwrap();
    assert_eq!(engine.format(&parsed, true), "(212) 555-0123");
    assert_eq!(engine.format(&parsed, false), "+1 212-555-0123");
}
