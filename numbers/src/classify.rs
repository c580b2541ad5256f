//! Number classification: what kind of number a person typed, before anything is sent.
//!
//! Validity, region, line type and formats come from the classification engine (libphonenumber
//! metadata compiled to DFAs); carrier names and time zones from libphonenumber's prefix data.
//! What to do about a number (which channel, or none) is `verify-policy`'s business.

use crate::engine::{Engine, TerritoryId};
use crate::number_data::NumberData;

/// The kind of line a number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineType {
    /// A geographic landline.
    FixedLine,
    /// A mobile phone.
    Mobile,
    /// Either; the region's numbering plan does not tell them apart (e.g. +1).
    FixedLineOrMobile,
    /// Freephone.
    TollFree,
    /// Premium rate.
    PremiumRate,
    /// Shared cost.
    SharedCost,
    /// Voice over IP.
    Voip,
    /// Personal number that forwards elsewhere.
    PersonalNumber,
    /// Pager.
    Pager,
    /// Universal access number.
    Uan,
    /// Voicemail access.
    Voicemail,
    /// Valid, but of no known type.
    Unknown,
}

impl LineType {
    /// Lines whose original carrier is meaningful (libphonenumber names carriers only for these).
    fn has_carrier(self) -> bool {
        matches!(
            self,
            LineType::Mobile | LineType::FixedLineOrMobile | LineType::Pager
        )
    }
}

/// Why a number is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// Not a phone number at all.
    NotANumber,
    /// Unknown country calling code, or a national number without a region hint.
    InvalidCountryCode,
    /// Too few digits.
    TooShort,
    /// Too many digits.
    TooLong,
    /// A length no number of the country has, between valid lengths.
    InvalidLength,
    /// A possible length, but in no numbering range of the country.
    NoSuchRange,
}

impl InvalidReason {
    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            InvalidReason::NotANumber => "not a phone number",
            InvalidReason::InvalidCountryCode => {
                "unknown country calling code; give the number in E.164 (+<country code><number>) or pass a region hint"
            }
            InvalidReason::TooShort => "too short for a number of this country",
            InvalidReason::TooLong => "too long for a number of this country",
            InvalidReason::InvalidLength => "no number of this country has this many digits",
            InvalidReason::NoSuchRange => "no numbering range of this country contains this number",
        }
    }
}

/// What a number is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The input as given.
    pub input: String,
    /// Whether the number is valid.
    pub valid: bool,
    /// E.164 form when the input parsed.
    pub e164: Option<String>,
    /// ISO 3166-1 alpha-2 region ("001" for non-geographic numbers).
    pub region_code: Option<String>,
    /// Country calling code, 0 when the input did not parse.
    pub country_calling_code: u32,
    /// Line type when valid.
    pub line_type: Option<LineType>,
    /// Original carrier, English, where known.
    pub carrier: Option<String>,
    /// IANA time zones where known.
    pub time_zones: Vec<String>,
    /// Why the number is invalid (`InvalidReason::describe` says it in a sentence).
    pub invalid_reason: Option<InvalidReason>,
    /// National format.
    pub national_format: Option<String>,
    /// International format.
    pub international_format: Option<String>,
}

/// A region hint that is not an ISO 3166-1 alpha-2 region libphonenumber knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region `{0}`: use an ISO 3166-1 alpha-2 code such as IN, US or GB")]
pub struct UnknownRegion(pub String);

/// Parses an optional region hint (ISO 3166-1 alpha-2, any case); empty means none.
pub fn parse_region_hint(hint: &str) -> Result<Option<TerritoryId>, UnknownRegion> {
    let hint = hint.trim();
    if hint.is_empty() {
        return Ok(None);
    }
    Engine::embedded()
        .region(hint)
        .map(Some)
        .ok_or_else(|| UnknownRegion(hint.to_string()))
}

/// Calling codes whose mobile numbers are geographic (libphonenumber's GEO_MOBILE_COUNTRIES):
/// their mobile numbers get area time zones, others the whole country's.
const GEO_MOBILE_COUNTRIES: [u16; 5] = [52, 54, 55, 62, 86];

/// Classifies `input`, read in national form for `region_hint` when it has no `+` prefix.
/// Never fails: invalid input is a classification with a reason.
pub fn classify(input: &str, region_hint: Option<TerritoryId>) -> Classification {
    let engine = Engine::embedded();
    let classified = engine.classify(input, region_hint);
    let parsed = classified.parsed.ok();
    let e164 = parsed.map(|number| engine.e164(&number));
    let region_code = classified
        .territory
        .map(|territory| engine.region_code(territory).to_string());
    let country_calling_code = parsed.map_or(0, |number| u32::from(number.country_code));
    let (Some(number), true) = (parsed, classified.valid) else {
        let reason = classified
            .invalid_reason
            .unwrap_or(InvalidReason::NoSuchRange);
        return Classification {
            input: input.to_string(),
            valid: false,
            e164,
            region_code,
            country_calling_code,
            line_type: None,
            carrier: None,
            time_zones: Vec::new(),
            invalid_reason: Some(reason),
            national_format: None,
            international_format: None,
        };
    };
    let line_type = classified.line_type;
    let digits = e164.as_deref().map_or("", |text| &text[1..]);
    let data = NumberData::embedded();
    let carrier = if line_type.has_carrier() {
        data.carrier(digits).map(str::to_string)
    } else {
        None
    };
    let geographical = matches!(line_type, LineType::FixedLine | LineType::FixedLineOrMobile)
        || (line_type == LineType::Mobile && GEO_MOBILE_COUNTRIES.contains(&number.country_code));
    let zones = if geographical {
        data.time_zones(digits)
    } else {
        data.country_time_zones(number.country_code)
    };
    Classification {
        input: input.to_string(),
        valid: true,
        e164,
        region_code,
        country_calling_code,
        line_type: Some(line_type),
        carrier,
        time_zones: zones.iter().map(|zone| zone.to_string()).collect(),
        invalid_reason: None,
        national_format: Some(engine.format(&number, true)),
        international_format: Some(engine.format(&number, false)),
    }
}

/// Compiles the metadata and loads the prefix data so the first real request is not the slow one.
pub fn warm_up() {
    let _ = NumberData::embedded();
    Engine::embedded().compile_all_formats();
    for sample in [
        "+14155550123",
        "+919812345678",
        "+442071838750",
        "+5215512345678",
    ] {
        let _ = classify(sample, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(code: &str) -> Option<TerritoryId> {
        parse_region_hint(code).unwrap()
    }

    #[test]
    fn mobile_and_landline_get_type_region_and_zones() {
        let mobile = classify("+91 98123 45678", None);
        assert!(mobile.valid, "{mobile:?}");
        assert_eq!(mobile.e164.as_deref(), Some("+919812345678"));
        assert_eq!(mobile.region_code.as_deref(), Some("IN"));
        assert_eq!(mobile.country_calling_code, 91);
        assert_eq!(mobile.line_type, Some(LineType::Mobile));
        assert_eq!(mobile.time_zones, vec!["Asia/Calcutta".to_string()]);

        let landline = classify("+44 20 7183 8750", None);
        assert!(landline.valid, "{landline:?}");
        assert_eq!(landline.line_type, Some(LineType::FixedLine));
        assert_eq!(landline.time_zones, vec!["Europe/London".to_string()]);
        assert_eq!(landline.carrier, None, "landlines have no original carrier");
        assert_eq!(landline.national_format.as_deref(), Some("020 7183 8750"));
        assert_eq!(
            landline.international_format.as_deref(),
            Some("+44 20 7183 8750")
        );
    }

    #[test]
    fn national_form_uses_the_region_hint() {
        let classification = classify("098123 45678", region("IN"));
        assert!(classification.valid, "{classification:?}");
        assert_eq!(classification.e164.as_deref(), Some("+919812345678"));
        let without_hint = classify("098123 45678", None);
        assert_eq!(
            without_hint.invalid_reason,
            Some(InvalidReason::InvalidCountryCode)
        );
    }

    #[test]
    fn shared_calling_codes_find_their_region() {
        assert_eq!(
            classify("+1 416 555 0123", None).region_code.as_deref(),
            Some("CA")
        );
        assert_eq!(
            classify("+1 212 555 0123", None).region_code.as_deref(),
            Some("US")
        );
        assert_eq!(
            classify("+7 701 123 4567", None).region_code.as_deref(),
            Some("KZ")
        );
    }

    #[test]
    fn invalid_input_says_why() {
        let cases = [
            ("", InvalidReason::NotANumber),
            ("hello", InvalidReason::NotANumber),
            ("+999 123456", InvalidReason::InvalidCountryCode),
            ("+91 98", InvalidReason::TooShort),
            ("+1 212 555 01234567", InvalidReason::TooLong),
            (&"9".repeat(40), InvalidReason::InvalidCountryCode),
            ("+1 099 555 0123", InvalidReason::NoSuchRange),
        ];
        for (input, reason) in cases {
            let classification = classify(input, None);
            assert!(!classification.valid, "{input}");
            assert_eq!(classification.invalid_reason, Some(reason), "{input}");
            assert_eq!(classification.line_type, None, "{input}");
        }
        let forty = format!("+{}", "1".repeat(40));
        assert_eq!(
            classify(&forty, None).invalid_reason,
            Some(InvalidReason::TooLong)
        );
    }

    #[test]
    fn premium_rate_numbers_are_valid_and_say_so() {
        let premium = classify("+44 909 876 5432", None);
        assert!(premium.valid, "{premium:?}");
        assert_eq!(premium.line_type, Some(LineType::PremiumRate));
        assert_eq!(premium.invalid_reason, None);
    }

    #[test]
    fn unknown_region_hint_is_refused() {
        assert!(parse_region_hint("XX1").is_err());
        assert_eq!(parse_region_hint("").unwrap(), None);
        assert_eq!(
            parse_region_hint("in").unwrap(),
            Engine::embedded().region("IN")
        );
    }
}
