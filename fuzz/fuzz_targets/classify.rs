//! The number parser and classifier: `verify_policy::parse_region_hint` on the hint a request
//! carries and `verify_policy::classify` on the number a person typed, with and without it.
//!
//! Input: `HINT\nNUMBER`, or `NUMBER` alone (no hint). A valid number's E.164 form classifies
//! again to itself, with the same line type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verify_policy::{Classification, classify, parse_region_hint};

fn check(classification: &Classification, input: &str) {
    assert_eq!(classification.input, input);
    if classification.valid {
        let e164 = classification
            .e164
            .as_deref()
            .expect("a valid number has an E.164 form");
        assert!(
            e164.len() > 1
                && e164.starts_with('+')
                && e164[1..].bytes().all(|b| b.is_ascii_digit()),
            "E.164 form `{e164}` of `{input}`"
        );
        assert!(classification.line_type.is_some());
        assert!(classification.invalid_reason.is_none());
        assert!(classification.national_format.is_some());
        assert!(classification.international_format.is_some());
        assert_ne!(classification.country_calling_code, 0);
    } else {
        assert!(classification.invalid_reason.is_some());
        assert!(classification.line_type.is_none());
        assert!(!classification.detail.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (hint, number) = match text.split_once('\n') {
        Some((hint, number)) => (Some(hint), number),
        None => (None, text),
    };
    let region = match hint.map(parse_region_hint) {
        None => None,
        Some(Ok(region)) => region,
        Some(Err(unknown)) => {
            assert!(
                !hint.unwrap_or_default().trim().is_empty(),
                "an empty hint was refused"
            );
            assert!(unknown.to_string().contains("unknown region"));
            return;
        }
    };
    let classification = classify(number, region);
    check(&classification, number);
    if region.is_some() {
        check(&classify(number, None), number);
    }
    if classification.valid {
        let e164 = classification.e164.as_deref().unwrap_or_default();
        let again = classify(e164, None);
        check(&again, e164);
        assert!(
            again.valid,
            "`{number}` is valid as {e164}, which is not: {again:?}"
        );
        assert_eq!(again.e164.as_deref(), Some(e164), "`{number}`");
        assert_eq!(again.line_type, classification.line_type, "`{number}`");
    }
});
