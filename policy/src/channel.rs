//! Channel choice for a verification: the channel each line type is reached on (or why none),
//! and the request's wish checked against the number's line type.

use verify_carrier::Channel;

use crate::classify::{Classification, LineType};

/// The channel to reach this kind of line with, or, when it must not be used to verify anyone,
/// the reason.
pub fn recommended_channel(line_type: LineType) -> Result<Channel, &'static str> {
    match line_type {
        LineType::Mobile
        | LineType::FixedLineOrMobile
        | LineType::Voip
        | LineType::PersonalNumber
        | LineType::Unknown => Ok(Channel::Sms),
        LineType::FixedLine | LineType::TollFree | LineType::Uan => Ok(Channel::Voice),
        LineType::PremiumRate => Err(
            "a premium-rate number costs money to call or text (toll-fraud risk); ask for a mobile number",
        ),
        LineType::SharedCost => {
            Err("a shared-cost number is not a personal line; ask for a mobile number")
        }
        LineType::Pager => Err("a pager cannot answer a code; ask for a mobile number"),
        LineType::Voicemail => {
            Err("a voicemail access number is not a personal line; ask for a mobile number")
        }
    }
}

/// Whether an SMS can reach this kind of line.
pub fn accepts_sms(line_type: LineType) -> bool {
    recommended_channel(line_type) == Ok(Channel::Sms)
}

/// Why a number cannot be verified on the asked channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelRefusal {
    /// The number is not valid; the caller should fix the input.
    #[error("invalid phone number: {0}")]
    InvalidNumber(String),
    /// The number is valid but cannot (or must not) receive a code this way.
    #[error("{0}")]
    Unreachable(String),
}

/// The channel to send a code on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelDecision {
    /// The channel.
    pub channel: Channel,
    /// Why it was chosen, for the response and events.
    pub reason: String,
}

/// Picks the channel for a verification. `requested` is `None` when the client lets verifyd
/// choose: landlines then get voice. An explicit SMS to a landline is refused with advice.
pub fn choose_channel(
    requested: Option<Channel>,
    classification: &Classification,
) -> Result<ChannelDecision, ChannelRefusal> {
    if !classification.valid {
        return Err(ChannelRefusal::InvalidNumber(
            classification.detail.to_string(),
        ));
    }
    let line_type = classification.line_type.unwrap_or(LineType::Unknown);
    let recommended = recommended_channel(line_type)
        .map_err(|reason| ChannelRefusal::Unreachable(reason.to_string()))?;
    match requested {
        None => Ok(ChannelDecision {
            channel: recommended,
            reason: format!(
                "{} chosen for a {} number",
                recommended,
                describe(line_type)
            ),
        }),
        Some(Channel::Sms) if !accepts_sms(line_type) => Err(ChannelRefusal::Unreachable(format!(
            "{} cannot receive SMS: ask the user for a mobile number, or send the code with channel voice",
            article(describe(line_type))
        ))),
        Some(channel) => Ok(ChannelDecision {
            channel,
            reason: format!("{channel} requested by the client"),
        }),
    }
}

fn describe(line_type: LineType) -> &'static str {
    match line_type {
        LineType::FixedLine => "landline",
        LineType::Mobile => "mobile",
        LineType::FixedLineOrMobile => "landline-or-mobile",
        LineType::TollFree => "toll-free",
        LineType::PremiumRate => "premium-rate",
        LineType::SharedCost => "shared-cost",
        LineType::Voip => "VoIP",
        LineType::PersonalNumber => "personal",
        LineType::Pager => "pager",
        LineType::Uan => "universal access",
        LineType::Voicemail => "voicemail",
        LineType::Unknown => "valid",
    }
}

fn article(noun_phrase: &str) -> String {
    let first = noun_phrase
        .chars()
        .next()
        .unwrap_or('x')
        .to_ascii_lowercase();
    let article = if "aeiou".contains(first) { "an" } else { "a" };
    format!("{article} {noun_phrase} number")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    #[test]
    fn open_channel_picks_voice_for_landlines_and_sms_for_mobiles() {
        let landline = classify("+44 20 7183 8750", None);
        let decision = choose_channel(None, &landline).unwrap();
        assert_eq!(decision.channel, Channel::Voice);
        assert!(decision.reason.contains("landline"), "{}", decision.reason);

        let mobile = classify("+91 98123 45678", None);
        assert_eq!(choose_channel(None, &mobile).unwrap().channel, Channel::Sms);
        assert_eq!(
            choose_channel(Some(Channel::Voice), &mobile)
                .unwrap()
                .channel,
            Channel::Voice
        );
    }

    #[test]
    fn explicit_sms_to_a_landline_is_refused_with_advice() {
        let landline = classify("+44 20 7183 8750", None);
        let refusal = choose_channel(Some(Channel::Sms), &landline).unwrap_err();
        let ChannelRefusal::Unreachable(message) = refusal else {
            panic!("a landline is valid, so this is not an input error");
        };
        assert!(
            message.contains("a landline number cannot receive SMS"),
            "{message}"
        );
        assert!(message.contains("mobile number"), "{message}");
        assert!(message.contains("voice"), "{message}");
    }

    #[test]
    fn invalid_numbers_are_input_errors() {
        let refusal = choose_channel(None, &classify("12", None)).unwrap_err();
        assert!(matches!(refusal, ChannelRefusal::InvalidNumber(_)));
    }
}
