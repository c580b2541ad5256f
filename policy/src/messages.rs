//! The words of a verification message, per channel and locale.

use verify_carrier::Channel;

/// The text of one message: what an SMS says, or what a call speaks.
pub fn render(channel: Channel, locale: &str, code: &str, ttl_minutes: u64) -> String {
    let words = words_for(locale);
    match channel {
        Channel::Sms => words
            .sms
            .replace("{code}", code)
            .replace("{minutes}", &ttl_minutes.to_string()),
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
}

fn words_for(locale: &str) -> Words {
    let language = locale
        .split(['-', '_'])
        .next()
        .unwrap_or("en")
        .to_ascii_lowercase();
    match language.as_str() {
        "es" => Words {
            sms: "Tu código de verificación es {code}. Caduca en {minutes} minutos. No lo compartas con nadie.",
            voice: "Tu código de verificación es: {code}. Repito: {code}.",
        },
        "fr" => Words {
            sms: "Votre code de vérification est {code}. Il expire dans {minutes} minutes. Ne le partagez avec personne.",
            voice: "Votre code de vérification est : {code}. Je répète : {code}.",
        },
        "de" => Words {
            sms: "Ihr Bestätigungscode lautet {code}. Er läuft in {minutes} Minuten ab. Geben Sie ihn nicht weiter.",
            voice: "Ihr Bestätigungscode lautet: {code}. Noch einmal: {code}.",
        },
        "pt" => Words {
            sms: "Seu código de verificação é {code}. Ele expira em {minutes} minutos. Não o compartilhe.",
            voice: "Seu código de verificação é: {code}. Repetindo: {code}.",
        },
        "it" => Words {
            sms: "Il tuo codice di verifica è {code}. Scade tra {minutes} minuti. Non condividerlo.",
            voice: "Il tuo codice di verifica è: {code}. Ripeto: {code}.",
        },
        "hi" => Words {
            sms: "आपका सत्यापन कोड {code} है। यह {minutes} मिनट में समाप्त हो जाएगा। इसे किसी के साथ साझा न करें।",
            voice: "आपका सत्यापन कोड है: {code}. फिर से: {code}.",
        },
        _ => Words {
            sms: "Your verification code is {code}. It expires in {minutes} minutes. Do not share it with anyone.",
            voice: "Your verification code is: {code}. Again: {code}.",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_carries_code_and_lifetime() {
        let text = render(Channel::Sms, "en", "493817", 10);
        assert_eq!(
            text,
            "Your verification code is 493817. It expires in 10 minutes. Do not share it with anyone."
        );
        assert!(render(Channel::Sms, "es-MX", "493817", 10).starts_with("Tu código"));
        assert!(render(Channel::Sms, "xx", "493817", 10).starts_with("Your"));
    }

    #[test]
    fn voice_reads_digits_twice() {
        let text = render(Channel::Voice, "en", "4938", 10);
        assert_eq!(
            text,
            "Your verification code is: 4, 9, 3, 8. Again: 4, 9, 3, 8."
        );
    }
}
