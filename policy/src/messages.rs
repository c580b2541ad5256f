//! The words of a verification message, per channel and locale.

use std::time::Duration;

use verify_carrier::Channel;

/// The text of one message: what an SMS says, or what a call speaks. `left` is how long the
/// code stays valid, said in whole minutes (rounded up) or, under a minute, in seconds, with
/// the right form for one ("1 minute") in the message's language.
pub fn render(channel: Channel, locale: &str, code: &str, left: Duration) -> String {
    let words = words_for(locale);
    match channel {
        Channel::Sms => words
            .sms
            .replace("{code}", code)
            .replace("{lifetime}", &lifetime(&words, left)),
        Channel::Voice => {
            // Digit by digit with pauses, twice, so it can be written down.
            let spoken = code
                .chars()
                .map(String::from)
                .collect::<Vec<_>>()
                .join(", ");
            words.voice.replace("{code}", &spoken)
        }
    }
}

/// Locales with their own words; others fall back to their language, then to English.
pub const SUPPORTED_LOCALES: &[&str] = &["en", "es", "fr", "de", "pt", "it", "hi"];

struct Words {
    sms: &'static str,
    voice: &'static str,
    /// A minute and minutes, a second and seconds.
    minute: (&'static str, &'static str),
    second: (&'static str, &'static str),
}

/// `left` in `words`' language: "10 minutes", "1 minute", "45 seconds".
fn lifetime(words: &Words, left: Duration) -> String {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let (count, (one, many)) = if seconds < 60 {
        (seconds.max(1), words.second)
    } else {
        (seconds.div_ceil(60), words.minute)
    };
    format!("{count} {}", if count == 1 { one } else { many })
}

fn words_for(locale: &str) -> Words {
    let language = locale
        .split(['-', '_'])
        .next()
        .unwrap_or("en")
        .to_ascii_lowercase();
    match language.as_str() {
        "es" => Words {
            sms: "Tu código de verificación es {code}. Caduca en {lifetime}. No lo compartas con nadie.",
            voice: "Tu código de verificación es: {code}. Repito: {code}.",
            minute: ("minuto", "minutos"),
            second: ("segundo", "segundos"),
        },
        "fr" => Words {
            sms: "Votre code de vérification est {code}. Il expire dans {lifetime}. Ne le partagez avec personne.",
            voice: "Votre code de vérification est : {code}. Je répète : {code}.",
            minute: ("minute", "minutes"),
            second: ("seconde", "secondes"),
        },
        "de" => Words {
            sms: "Ihr Bestätigungscode lautet {code}. Er läuft in {lifetime} ab. Geben Sie ihn nicht weiter.",
            voice: "Ihr Bestätigungscode lautet: {code}. Noch einmal: {code}.",
            minute: ("Minute", "Minuten"),
            second: ("Sekunde", "Sekunden"),
        },
        "pt" => Words {
            sms: "Seu código de verificação é {code}. Ele expira em {lifetime}. Não o compartilhe.",
            voice: "Seu código de verificação é: {code}. Repetindo: {code}.",
            minute: ("minuto", "minutos"),
            second: ("segundo", "segundos"),
        },
        "it" => Words {
            sms: "Il tuo codice di verifica è {code}. Scade tra {lifetime}. Non condividerlo.",
            voice: "Il tuo codice di verifica è: {code}. Ripeto: {code}.",
            minute: ("minuto", "minuti"),
            second: ("secondo", "secondi"),
        },
        "hi" => Words {
            sms: "आपका सत्यापन कोड {code} है। यह {lifetime} में समाप्त हो जाएगा। इसे किसी के साथ साझा न करें।",
            voice: "आपका सत्यापन कोड है: {code}. फिर से: {code}.",
            minute: ("मिनट", "मिनट"),
            second: ("सेकंड", "सेकंड"),
        },
        _ => Words {
            sms: "Your verification code is {code}. It expires in {lifetime}. Do not share it with anyone.",
            voice: "Your verification code is: {code}. Again: {code}.",
            minute: ("minute", "minutes"),
            second: ("second", "seconds"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    #[test]
    fn sms_carries_code_and_lifetime() {
        let text = render(Channel::Sms, "en", "493817", TEN_MINUTES);
        assert_eq!(
            text,
            "Your verification code is 493817. It expires in 10 minutes. Do not share it with anyone."
        );
        assert!(render(Channel::Sms, "es-MX", "493817", TEN_MINUTES).starts_with("Tu código"));
        assert!(render(Channel::Sms, "xx", "493817", TEN_MINUTES).starts_with("Your"));
    }

    #[test]
    fn lifetimes_are_said_with_the_right_number_and_unit() {
        let in_english = |millis: u64| {
            let text = render(Channel::Sms, "en", "1234", Duration::from_millis(millis));
            let said = text["Your verification code is 1234. It expires in ".len()..].to_string();
            said[..said.find('.').unwrap()].to_string()
        };
        assert_eq!(in_english(60_000), "1 minute");
        assert_eq!(in_english(59_001), "1 minute");
        assert_eq!(in_english(61_000), "2 minutes");
        assert_eq!(in_english(600_000), "10 minutes");
        assert_eq!(in_english(45_000), "45 seconds");
        assert_eq!(in_english(1_000), "1 second");
        assert_eq!(in_english(300), "1 second");
        assert_eq!(in_english(0), "1 second");
        for (locale, one_minute, minutes, seconds) in [
            ("es", "1 minuto.", "5 minutos.", "30 segundos."),
            ("fr", "1 minute.", "5 minutes.", "30 secondes."),
            ("de", "1 Minute ab.", "5 Minuten ab.", "30 Sekunden ab."),
            ("pt", "1 minuto.", "5 minutos.", "30 segundos."),
            ("it", "1 minuto.", "5 minuti.", "30 secondi."),
            ("hi", "1 मिनट में", "5 मिनट में", "30 सेकंड में"),
        ] {
            for (left, expected) in [(60, one_minute), (300, minutes), (30, seconds)] {
                let text = render(Channel::Sms, locale, "1234", Duration::from_secs(left));
                assert!(text.contains(expected), "{locale} {left}s: {text}");
            }
        }
    }

    #[test]
    fn voice_reads_digits_twice() {
        let text = render(Channel::Voice, "en", "4938", TEN_MINUTES);
        assert_eq!(
            text,
            "Your verification code is: 4, 9, 3, 8. Again: 4, 9, 3, 8."
        );
    }
}
