//! A number's classification as verifyd answers it: what the number is (`verify-numbers`) and
//! what to do about it (the channel to verify it on, or why none).

use verify_carrier::Channel;
pub use verify_numbers::classify::{
    InvalidReason, LineType, UnknownRegion, parse_region_hint, warm_up,
};

use crate::channel::recommended_channel;

/// What a number is, with the channel policy recommends for it.
///
/// The fields up to `time_zones` and the formats are `verify_numbers::Classification`'s;
/// `recommended_channel` and `detail` are this crate's advice.
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
    /// Channel to use; `None` when the number should not be used for verification.
    pub recommended_channel: Option<Channel>,
    /// Why the number is invalid.
    pub invalid_reason: Option<InvalidReason>,
    /// A sentence for people: why the number is invalid, or advice on the line type (empty
    /// when there is nothing to say). One of a fixed set: nothing is written per number.
    pub detail: &'static str,
    /// National format.
    pub national_format: Option<String>,
    /// International format.
    pub international_format: Option<String>,
}

impl From<verify_numbers::Classification> for Classification {
    /// Adds the recommended channel and the advice for the number's line type.
    fn from(number: verify_numbers::Classification) -> Classification {
        let verify_numbers::Classification {
            input,
            valid,
            e164,
            region_code,
            country_calling_code,
            line_type,
            carrier,
            time_zones,
            invalid_reason,
            national_format,
            international_format,
        } = number;
        let (recommended_channel, detail) = match (invalid_reason, line_type) {
            (Some(reason), _) => (None, reason.describe()),
            (None, None) => (None, ""),
            (None, Some(line_type)) => match recommended_channel(line_type) {
                Ok(Channel::Voice) => (
                    Some(Channel::Voice),
                    "this line cannot receive SMS: call it with the code, or ask for a mobile number",
                ),
                Ok(channel) => (Some(channel), ""),
                Err(reason) => (None, reason),
            },
        };
        Classification {
            input,
            valid,
            e164,
            region_code,
            country_calling_code,
            line_type,
            carrier,
            time_zones,
            recommended_channel,
            invalid_reason,
            detail,
            national_format,
            international_format,
        }
    }
}

/// Classifies `input` (read in national form for `region_hint` when it has no `+` prefix) and
/// recommends a channel. Never fails: invalid input is a classification with a reason.
pub fn classify(input: &str, region_hint: Option<verify_numbers::TerritoryId>) -> Classification {
    verify_numbers::classify(input, region_hint).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_get_sms_and_landlines_voice_with_advice() {
        let mobile = classify("+91 98123 45678", None);
        assert_eq!(mobile.line_type, Some(LineType::Mobile));
        assert_eq!(mobile.recommended_channel, Some(Channel::Sms));
        assert_eq!(mobile.detail, "");

        let landline = classify("+44 20 7183 8750", None);
        assert_eq!(landline.line_type, Some(LineType::FixedLine));
        assert_eq!(landline.recommended_channel, Some(Channel::Voice));
        assert!(
            landline.detail.contains("mobile number"),
            "{}",
            landline.detail
        );
    }

    #[test]
    fn premium_rate_is_not_used_for_verification() {
        let premium = classify("+44 909 876 5432", None);
        assert!(premium.valid, "{premium:?}");
        assert_eq!(premium.line_type, Some(LineType::PremiumRate));
        assert_eq!(premium.recommended_channel, None);
        assert!(premium.detail.contains("toll-fraud"), "{}", premium.detail);
    }

    #[test]
    fn invalid_numbers_get_no_channel_and_say_why() {
        let invalid = classify("+91 98", None);
        assert!(!invalid.valid);
        assert_eq!(invalid.invalid_reason, Some(InvalidReason::TooShort));
        assert_eq!(invalid.recommended_channel, None);
        assert_eq!(invalid.detail, InvalidReason::TooShort.describe());
    }
}
