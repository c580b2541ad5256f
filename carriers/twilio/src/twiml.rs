//! The TwiML of a verification call: the localized sentence read in the message's language,
//! the code digit by digit, twice, with a pause between the two readings.

use std::collections::BTreeMap;

use verify_carrier::OutboundMessage;

/// The largest inline `Twiml` parameter Twilio's Calls API takes, in characters.
pub const MAX_TWIML_CHARS: usize = 4000;

/// The `<Say language>` used when a locale has no mapping (and for the English fallback text
/// verifyd writes for locales it has no words for).
pub const FALLBACK_LANGUAGE: &str = "en-US";

/// One language: its code, its Say language per region, and the Say language otherwise.
struct LanguageVariants {
    language: &'static str,
    by_region: &'static [(&'static str, &'static str)],
    default: &'static str,
}

/// Say languages Twilio documents, keyed by language and optional region, for the languages
/// verifyd has words for. Region variants are chosen from the locale's region, then from the
/// destination's region.
const LANGUAGES: &[LanguageVariants] = &[
    LanguageVariants {
        language: "en",
        by_region: &[
            ("US", "en-US"),
            ("GB", "en-GB"),
            ("UK", "en-GB"),
            ("AU", "en-AU"),
            ("IN", "en-IN"),
            ("CA", "en-CA"),
            ("NZ", "en-NZ"),
            ("ZA", "en-ZA"),
        ],
        default: "en-US",
    },
    LanguageVariants {
        language: "es",
        by_region: &[("ES", "es-ES"), ("MX", "es-MX"), ("US", "es-US")],
        default: "es-MX",
    },
    LanguageVariants {
        language: "fr",
        by_region: &[("FR", "fr-FR"), ("CA", "fr-CA")],
        default: "fr-FR",
    },
    LanguageVariants {
        language: "de",
        by_region: &[("DE", "de-DE")],
        default: "de-DE",
    },
    LanguageVariants {
        language: "pt",
        by_region: &[("BR", "pt-BR"), ("PT", "pt-PT")],
        default: "pt-BR",
    },
    LanguageVariants {
        language: "it",
        by_region: &[("IT", "it-IT")],
        default: "it-IT",
    },
    LanguageVariants {
        language: "hi",
        by_region: &[("IN", "hi-IN")],
        default: "hi-IN",
    },
];

/// The `<Say language>` for `locale` (e.g. `es`, `pt-PT`, `en_GB`), with `region` (the
/// destination's ISO code) choosing among a language's variants when the locale names none.
///
/// `overrides` (the `say_languages` setting) is consulted first, by full locale then by
/// language. A language verifyd has no words for gets [`FALLBACK_LANGUAGE`]: verifyd's message
/// catalogue falls back to English text for it, so an English voice must read it.
pub fn say_language(
    locale: &str,
    region: Option<&str>,
    overrides: &BTreeMap<String, String>,
) -> String {
    let mut parts = locale.split(['-', '_']);
    let language = parts.next().unwrap_or("").to_ascii_lowercase();
    let locale_region = parts.next().map(str::to_ascii_uppercase);
    let normalized = match &locale_region {
        Some(r) => format!("{language}-{r}"),
        None => language.clone(),
    };
    for key in [locale, normalized.as_str(), language.as_str()] {
        if let Some(mapped) = overrides.get(key) {
            return mapped.clone();
        }
    }
    let Some(variants) = LANGUAGES.iter().find(|v| v.language == language) else {
        return FALLBACK_LANGUAGE.to_string();
    };
    let region = region.map(str::to_ascii_uppercase);
    locale_region
        .iter()
        .chain(region.iter())
        .find_map(|r| variants.by_region.iter().find(|(code, _)| code == r))
        .map(|(_, say)| (*say).to_string())
        .unwrap_or_else(|| variants.default.to_string())
}

/// The code as TTS should read it: one digit (or character) at a time, separated by commas.
pub fn spoken_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace())
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The two spoken parts of the call: before and after the pause. Each part holds one reading
/// of the code, digit by digit.
///
/// verifyd's voice text already says the code twice, digit by digit ("Your code is: 4, 9, 3,
/// 8. Again: 4, 9, 3, 8."): it is split after the first reading. A text with the code as a
/// block of digits has them spread out first; a text that reads the code once or not at all
/// gets the missing readings added, so every call reads the code twice.
pub fn spoken_parts(body: &str, code: &str) -> (String, String) {
    let spoken = spoken_code(code);
    if spoken.is_empty() {
        return (body.trim().to_string(), String::new());
    }
    let mut text = body.trim().to_string();
    if !text.contains(&spoken) && !code.is_empty() && text.contains(code) {
        text = text.replace(code, &spoken);
    }
    match text
        .match_indices(&spoken)
        .map(|(i, _)| i)
        .collect::<Vec<_>>()[..]
    {
        [] if text.is_empty() => (spoken.clone(), spoken),
        [] => (format!("{text} {spoken}."), spoken),
        [_] => (text, spoken),
        [first, ..] => {
            let end = first + spoken.len();
            let before = text[..end].trim_end().to_string();
            let after = text[end..]
                .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '.' | '।' | ','))
                .to_string();
            (before, after)
        }
    }
}

/// Escapes text for an XML element or a double-quoted attribute.
pub fn escape_xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0; TTS has nothing to say for them.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

/// How a call speaks: the `<Say>` attributes besides the text.
#[derive(Debug, Clone, Default)]
pub struct VoiceOptions {
    /// `<Say voice>` for every language, when set.
    pub voice: Option<String>,
    /// `<Say voice>` per Say language, over `voice`.
    pub voices: BTreeMap<String, String>,
    /// Locale → Say language overrides.
    pub say_languages: BTreeMap<String, String>,
}

/// The inline TwiML of the call that reads `message`'s code.
pub fn verification_twiml(message: &OutboundMessage, options: &VoiceOptions) -> String {
    let language = say_language(
        &message.locale,
        message.region_code.as_deref(),
        &options.say_languages,
    );
    let voice = options.voices.get(&language).or(options.voice.as_ref());
    let mut attributes = format!(" language=\"{}\"", escape_xml(&language));
    if let Some(voice) = voice {
        attributes.push_str(&format!(" voice=\"{}\"", escape_xml(voice)));
    }
    let (first, second) = spoken_parts(&message.body, message.code.expose());
    let mut twiml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>");
    // A short pause first: the start of the greeting is often lost while the phone is lifted.
    twiml.push_str("<Pause length=\"1\"/>");
    twiml.push_str(&format!("<Say{attributes}>{}</Say>", escape_xml(&first)));
    twiml.push_str("<Pause length=\"1\"/>");
    if !second.is_empty() {
        twiml.push_str(&format!("<Say{attributes}>{}</Say>", escape_xml(&second)));
    }
    twiml.push_str("</Response>");
    twiml
}

#[cfg(test)]
mod tests {
    use super::*;
    use verify_carrier::{Channel, OneTimeCode};

    fn voice_message(locale: &str, region: &str, body: &str, code: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: "msg_1".into(),
            verification_id: "vf_1".into(),
            to: "+442079460001".into(),
            region_code: Some(region.into()),
            channel: Channel::Voice,
            body: body.into(),
            code: OneTimeCode::new(code),
            locale: locale.into(),
            sender: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn locale_maps_to_a_documented_say_language() {
        let none = BTreeMap::new();
        assert_eq!(say_language("en", Some("US"), &none), "en-US");
        assert_eq!(say_language("en", Some("GB"), &none), "en-GB");
        assert_eq!(say_language("en-GB", Some("US"), &none), "en-GB");
        assert_eq!(say_language("en_au", None, &none), "en-AU");
        assert_eq!(say_language("es", Some("ES"), &none), "es-ES");
        assert_eq!(say_language("es", Some("HN"), &none), "es-MX");
        assert_eq!(say_language("es-US", None, &none), "es-US");
        assert_eq!(say_language("fr", Some("CA"), &none), "fr-CA");
        assert_eq!(say_language("fr", Some("SN"), &none), "fr-FR");
        assert_eq!(say_language("de", Some("AT"), &none), "de-DE");
        assert_eq!(say_language("pt", Some("BR"), &none), "pt-BR");
        assert_eq!(say_language("pt", Some("PT"), &none), "pt-PT");
        assert_eq!(say_language("it", None, &none), "it-IT");
        assert_eq!(say_language("hi", Some("IN"), &none), "hi-IN");
        assert_eq!(say_language("ja", Some("JP"), &none), "en-US");
        assert_eq!(say_language("", None, &none), "en-US");
        let overrides = BTreeMap::from([
            ("ja".to_string(), "ja-JP".to_string()),
            ("es-419".to_string(), "es-US".to_string()),
        ]);
        assert_eq!(say_language("ja", Some("JP"), &overrides), "ja-JP");
        assert_eq!(say_language("es-419", None, &overrides), "es-US");
    }

    #[test]
    fn verifyd_voice_text_is_split_between_the_two_readings() {
        // The text verifyd's policy writes for voice.
        let body = "Your verification code is: 4, 9, 3, 8. Again: 4, 9, 3, 8.";
        let twiml = verification_twiml(
            &voice_message("en", "GB", body, "4938"),
            &Default::default(),
        );
        assert_eq!(
            twiml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Pause length=\"1\"/>\
             <Say language=\"en-GB\">Your verification code is: 4, 9, 3, 8</Say>\
             <Pause length=\"1\"/><Say language=\"en-GB\">Again: 4, 9, 3, 8.</Say></Response>"
        );
    }

    #[test]
    fn spanish_text_gets_a_spanish_voice() {
        let body = "Tu código de verificación es: 1, 2, 3, 4, 5, 6. Repito: 1, 2, 3, 4, 5, 6.";
        let options = VoiceOptions {
            voice: Some("Polly.Joanna".into()),
            voices: BTreeMap::from([("es-MX".to_string(), "Polly.Mia".to_string())]),
            ..Default::default()
        };
        let twiml = verification_twiml(&voice_message("es", "MX", body, "123456"), &options);
        assert!(
            twiml.contains("<Say language=\"es-MX\" voice=\"Polly.Mia\">Tu código de verificación es: 1, 2, 3, 4, 5, 6</Say>"),
            "{twiml}"
        );
        assert!(
            twiml.contains(">Repito: 1, 2, 3, 4, 5, 6.</Say>"),
            "{twiml}"
        );
        assert_eq!(twiml.matches("1, 2, 3, 4, 5, 6").count(), 2);
    }

    #[test]
    fn code_as_a_block_is_spread_and_read_twice() {
        let body = "Your verification code is 424242. It expires in 10 minutes.";
        let twiml = verification_twiml(
            &voice_message("en", "US", body, "424242"),
            &Default::default(),
        );
        assert!(!twiml.contains("424242"), "{twiml}");
        assert_eq!(twiml.matches("4, 2, 4, 2, 4, 2").count(), 2, "{twiml}");
        assert_eq!(twiml.matches("<Pause length=\"1\"/>").count(), 2);
    }

    #[test]
    fn text_without_the_code_still_reads_it_twice() {
        let (first, second) = spoken_parts("Hello.", "12");
        assert_eq!(first, "Hello. 1, 2.");
        assert_eq!(second, "1, 2");
        let (first, second) = spoken_parts("", "12");
        assert_eq!((first.as_str(), second.as_str()), ("1, 2", "1, 2"));
    }

    #[test]
    fn everything_is_escaped() {
        let options = VoiceOptions {
            voice: Some("a\"b".into()),
            ..Default::default()
        };
        let body = "<Hangup/> & \"quotes\" 1, 2. again 1, 2.";
        let twiml = verification_twiml(&voice_message("en", "US", body, "12"), &options);
        assert!(!twiml.contains("<Hangup/>"), "{twiml}");
        assert!(
            twiml.contains("&lt;Hangup/&gt; &amp; &quot;quotes&quot; 1, 2"),
            "{twiml}"
        );
        assert!(twiml.contains("voice=\"a&quot;b\""), "{twiml}");
        assert_eq!(escape_xml("a\u{1}b'"), "a b&apos;");
    }
}
