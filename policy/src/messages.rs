//! The words of a verification message, per channel and locale.

use std::time::Duration;

use verify_carrier::Channel;

/// What a service adds to the words of its messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wording<'a> {
    /// The service's friendly name ("Your Acme verification code is ..."); empty names none.
    pub service: &'a str,
    /// The service's own text for this channel and locale, with `{code}` and optionally
    /// `{service}` and `{lifetime}`; `None` uses the shipped words.
    pub template: Option<&'a str>,
    /// Android SMS Retriever: the app's 11-character hash, put on a line of its own; empty
    /// for none. SMS only.
    pub app_hash: &'a str,
    /// Domain-bound code (iOS and macOS Safari, WebOTP): the web site's host, put as the last
    /// line `@host #code`; empty for none. SMS only.
    pub domain: &'a str,
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["{code}", "{service}", "{lifetime}"];

/// Most GSM 7-bit septets in one SMS part.
pub const ONE_PART_GSM7: usize = 160;
/// Most UTF-16 code units in one SMS part of Unicode (UCS-2) text.
pub const ONE_PART_UCS2: usize = 70;

/// The text of one message: what an SMS says, or what a call speaks. `left` is how long the
/// code stays valid, said in whole minutes (rounded up) or, under a minute, in seconds, with
/// the right form for one ("1 minute") in the message's language.
pub fn render(channel: Channel, locale: &str, code: &str, left: Duration) -> String {
    render_for(channel, locale, code, left, Wording::default())
}

/// [`render`] in a service's words: its template when it has one for this channel and
/// locale, else the shipped words naming the service; for SMS with the autofill lines asked
/// for. When those lines would take the shipped words past one SMS part (140 bytes, what the
/// SMS Retriever reads), the short words are used instead ("Your Acme code is 123456.").
/// With both autofill lines, the app hash comes on the line before the domain-bound line,
/// which must be the last (the SMS Retriever needs the hash anywhere in the message).
pub fn render_for(
    channel: Channel,
    locale: &str,
    code: &str,
    left: Duration,
    wording: Wording<'_>,
) -> String {
    let words = words_for(locale);
    let named = !wording.service.trim().is_empty();
    let text = match (wording.template, channel, named) {
        (Some(template), ..) => template,
        (None, Channel::Sms, false) => words.sms,
        (None, Channel::Sms, true) => words.sms_named,
        (None, Channel::Voice, false) => words.voice,
        (None, Channel::Voice, true) => words.voice_named,
    };
    let body = fill(text, &words, channel, code, left, wording);
    if channel != Channel::Sms || (wording.app_hash.is_empty() && wording.domain.is_empty()) {
        return body;
    }
    let with_lines = with_autofill(body, code, wording);
    if wording.template.is_some() || sms_parts(&with_lines) == 1 {
        return with_lines;
    }
    let short = if named {
        words.short_named
    } else {
        words.short
    };
    with_autofill(
        fill(short, &words, channel, code, left, wording),
        code,
        wording,
    )
}

/// `body` with the autofill lines of `wording`.
fn with_autofill(mut body: String, code: &str, wording: Wording<'_>) -> String {
    if !wording.app_hash.is_empty() {
        body.push_str("\n\n");
        body.push_str(wording.app_hash);
    }
    if !wording.domain.is_empty() {
        body.push_str(if wording.app_hash.is_empty() {
            "\n\n"
        } else {
            "\n"
        });
        body.push_str(&format!("@{} #{code}", wording.domain));
    }
    body
}

/// `text` with its placeholders filled.
fn fill(
    text: &str,
    words: &Words,
    channel: Channel,
    code: &str,
    left: Duration,
    wording: Wording<'_>,
) -> String {
    let code = match channel {
        Channel::Sms => code.to_string(),
        // Digit by digit with pauses, twice, so it can be written down.
        Channel::Voice => code
            .chars()
            .map(String::from)
            .collect::<Vec<_>>()
            .join(", "),
    };
    text.replace("{service}", wording.service.trim())
        .replace("{lifetime}", &lifetime(words, left))
        .replace("{code}", &code)
}

/// Checks an Android SMS Retriever app hash: 11 characters of base64 (`A-Z a-z 0-9 + /`).
pub fn check_app_hash(hash: &str) -> Result<(), String> {
    let well_formed = hash.len() == 11
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{hash}` is not an SMS Retriever app hash: 11 characters of A-Z, a-z, 0-9, + and / (Android's AppSignatureHelper prints it)"
        ))
    }
}

/// Checks the host of a domain-bound code and returns it in lower case: a host name such as
/// `example.com` or `login.example.co.uk`, with no scheme, port or path (an international
/// name in its `xn--` form).
pub fn check_domain(domain: &str) -> Result<String, String> {
    let host = domain.to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.len() <= 253 && host.contains('.') && host.split('.').all(label_ok) {
        Ok(host)
    } else {
        Err(format!(
            "`{domain}` is not a host name such as example.com (no scheme, port or path; an international name in its xn-- form)"
        ))
    }
}

/// How many SMS parts `text` takes: GSM 7-bit when every character has a septet (extension
/// characters take two), UCS-2 otherwise; one part up to 160 septets or 70 code units, then
/// 153 or 67 per part.
pub fn sms_parts(text: &str) -> usize {
    let (length, single, multi) = match verify_carrier::gsm7::encode(text) {
        Some(septets) => (septets.len(), ONE_PART_GSM7, 153),
        None => (text.encode_utf16().count(), ONE_PART_UCS2, 67),
    };
    if length <= single {
        1
    } else {
        length.div_ceil(multi)
    }
}

/// Checks a service's template: it carries `{code}`, uses no other placeholder than
/// [`PLACEHOLDERS`], and for SMS fits one part with the longest code (10 digits), the
/// service's name and the longest lifetime said in minutes; the error says which and why.
pub fn check_template(
    channel: Channel,
    locale: &str,
    text: &str,
    service: &str,
) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    if text.chars().count() > 1_000 {
        return Err("is longer than 1000 characters".into());
    }
    if !text.contains("{code}") {
        return Err("has no `{code}` placeholder: the message must carry the code".into());
    }
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let placeholder = after.find('}').map(|end| &after[..=end]).unwrap_or(after);
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(format!(
                "`{placeholder}` is not a placeholder; use {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[placeholder.len()..];
    }
    if channel == Channel::Sms {
        let longest = render_for(
            channel,
            locale,
            "0123456789",
            Duration::from_secs(59 * 60),
            Wording {
                service,
                template: Some(text),
                ..Wording::default()
            },
        );
        let parts = sms_parts(&longest);
        if parts > 1 {
            let (limit, alphabet) = if verify_carrier::gsm7::fits(&longest) {
                (ONE_PART_GSM7, "GSM 7-bit characters")
            } else {
                (
                    ONE_PART_UCS2,
                    "characters in Unicode (a character outside GSM 7-bit is used)",
                )
            };
            return Err(format!(
                "with a 10-digit code it takes {parts} SMS parts; one part holds {limit} {alphabet}"
            ));
        }
    }
    Ok(())
}

/// Locales with their own words; others fall back to their language, then to English.
pub const SUPPORTED_LOCALES: &[&str] = &["en", "es", "fr", "de", "pt", "it", "hi"];

struct Words {
    sms: &'static str,
    voice: &'static str,
    /// The same, naming the service (`{service}`).
    sms_named: &'static str,
    voice_named: &'static str,
    /// The shortest SMS, without and with the service, for when the autofill lines would not
    /// fit one part otherwise.
    short: &'static str,
    short_named: &'static str,
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
            sms_named: "Tu código de verificación de {service} es {code}. Caduca en {lifetime}. No lo compartas con nadie.",
            voice_named: "Tu código de verificación de {service} es: {code}. Repito: {code}.",
            short: "Tu código es {code}.",
            short_named: "Tu código de {service} es {code}.",
            minute: ("minuto", "minutos"),
            second: ("segundo", "segundos"),
        },
        "fr" => Words {
            sms: "Votre code de vérification est {code}. Il expire dans {lifetime}. Ne le partagez avec personne.",
            voice: "Votre code de vérification est : {code}. Je répète : {code}.",
            sms_named: "Votre code de vérification {service} est {code}. Il expire dans {lifetime}. Ne le partagez avec personne.",
            voice_named: "Votre code de vérification {service} est : {code}. Je répète : {code}.",
            short: "Votre code est {code}.",
            short_named: "Votre code {service} est {code}.",
            minute: ("minute", "minutes"),
            second: ("seconde", "secondes"),
        },
        "de" => Words {
            sms: "Ihr Bestätigungscode lautet {code}. Er läuft in {lifetime} ab. Geben Sie ihn nicht weiter.",
            voice: "Ihr Bestätigungscode lautet: {code}. Noch einmal: {code}.",
            sms_named: "Ihr {service}-Bestätigungscode lautet {code}. Er läuft in {lifetime} ab. Geben Sie ihn nicht weiter.",
            voice_named: "Ihr {service}-Bestätigungscode lautet: {code}. Noch einmal: {code}.",
            short: "Ihr Code lautet {code}.",
            short_named: "Ihr {service}-Code lautet {code}.",
            minute: ("Minute", "Minuten"),
            second: ("Sekunde", "Sekunden"),
        },
        "pt" => Words {
            sms: "Seu código de verificação é {code}. Ele expira em {lifetime}. Não o compartilhe.",
            voice: "Seu código de verificação é: {code}. Repetindo: {code}.",
            sms_named: "Seu código de verificação {service} é {code}. Ele expira em {lifetime}. Não o compartilhe.",
            voice_named: "Seu código de verificação {service} é: {code}. Repetindo: {code}.",
            short: "Seu código é {code}.",
            short_named: "Seu código {service} é {code}.",
            minute: ("minuto", "minutos"),
            second: ("segundo", "segundos"),
        },
        "it" => Words {
            sms: "Il tuo codice di verifica è {code}. Scade tra {lifetime}. Non condividerlo.",
            voice: "Il tuo codice di verifica è: {code}. Ripeto: {code}.",
            sms_named: "Il tuo codice di verifica {service} è {code}. Scade tra {lifetime}. Non condividerlo.",
            voice_named: "Il tuo codice di verifica {service} è: {code}. Ripeto: {code}.",
            short: "Il tuo codice è {code}.",
            short_named: "Il tuo codice {service} è {code}.",
            minute: ("minuto", "minuti"),
            second: ("secondo", "secondi"),
        },
        "hi" => Words {
            sms: "आपका सत्यापन कोड {code} है। यह {lifetime} में समाप्त हो जाएगा। इसे किसी के साथ साझा न करें।",
            voice: "आपका सत्यापन कोड है: {code}. फिर से: {code}.",
            sms_named: "आपका {service} सत्यापन कोड {code} है। यह {lifetime} में समाप्त हो जाएगा। इसे किसी के साथ साझा न करें।",
            voice_named: "आपका {service} सत्यापन कोड है: {code}. फिर से: {code}.",
            short: "आपका कोड {code} है।",
            short_named: "आपका {service} कोड {code} है।",
            minute: ("मिनट", "मिनट"),
            second: ("सेकंड", "सेकंड"),
        },
        _ => Words {
            sms: "Your verification code is {code}. It expires in {lifetime}. Do not share it with anyone.",
            voice: "Your verification code is: {code}. Again: {code}.",
            sms_named: "Your {service} verification code is {code}. It expires in {lifetime}. Do not share it with anyone.",
            voice_named: "Your {service} verification code is: {code}. Again: {code}.",
            short: "Your code is {code}.",
            short_named: "Your {service} code is {code}.",
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
    fn a_service_is_named_and_its_template_used() {
        let acme = Wording {
            service: "Acme",
            ..Wording::default()
        };
        assert_eq!(
            render_for(Channel::Sms, "en", "493817", TEN_MINUTES, acme),
            "Your Acme verification code is 493817. It expires in 10 minutes. Do not share it with anyone."
        );
        assert_eq!(
            render_for(Channel::Voice, "en", "49", TEN_MINUTES, acme),
            "Your Acme verification code is: 4, 9. Again: 4, 9."
        );
        for locale in SUPPORTED_LOCALES {
            let text = render_for(Channel::Sms, locale, "493817", TEN_MINUTES, acme);
            assert!(text.contains("Acme") && text.contains("493817"), "{text}");
            assert!(!text.contains('{'), "{text}");
        }
        let own = Wording {
            service: "Acme",
            template: Some("{code} is your {service} code ({lifetime})"),
            ..Wording::default()
        };
        assert_eq!(
            render_for(Channel::Sms, "en", "4938", Duration::from_secs(60), own),
            "4938 is your Acme code (1 minute)"
        );
    }

    #[test]
    fn templates_need_the_code_known_placeholders_and_one_part() {
        assert!(check_template(Channel::Sms, "en", "Code: {code}", "Acme").is_ok());
        let error = check_template(Channel::Sms, "en", "Welcome to {service}", "Acme").unwrap_err();
        assert!(error.contains("{code}"), "{error}");
        let error = check_template(Channel::Sms, "en", "{code} {name}", "Acme").unwrap_err();
        assert!(error.contains("`{name}` is not a placeholder"), "{error}");
        let long = format!("{{code}} {}", "x".repeat(150));
        let error = check_template(Channel::Sms, "en", &long, "Acme").unwrap_err();
        assert!(
            error.contains("2 SMS parts") && error.contains("160"),
            "{error}"
        );
        let unicode = format!("{{code}} — {}", "x".repeat(60));
        let error = check_template(Channel::Sms, "en", &unicode, "").unwrap_err();
        assert!(error.contains("70"), "{error}");
        assert!(check_template(Channel::Voice, "en", &long, "Acme").is_ok());
        assert_eq!(sms_parts(&"a".repeat(160)), 1);
        assert_eq!(sms_parts(&"a".repeat(161)), 2);
        assert_eq!(sms_parts(&"ó".repeat(71)), 2);
    }

    #[test]
    fn autofill_lines_have_the_exact_formats() {
        let sms = |app_hash, domain| {
            render_for(
                Channel::Sms,
                "en",
                "493817",
                TEN_MINUTES,
                Wording {
                    service: "Acme",
                    app_hash,
                    domain,
                    ..Wording::default()
                },
            )
        };
        let body = "Your Acme verification code is 493817. It expires in 10 minutes. Do not share it with anyone.";
        assert_eq!(
            sms("", "example.com"),
            format!("{body}\n\n@example.com #493817")
        );
        assert_eq!(sms("FA+9qCX9VSu", ""), format!("{body}\n\nFA+9qCX9VSu"));
        assert_eq!(
            sms("FA+9qCX9VSu", "example.com"),
            format!("{body}\n\nFA+9qCX9VSu\n@example.com #493817")
        );
        for text in [sms("FA+9qCX9VSu", "example.com"), sms("", "example.com")] {
            assert_eq!(sms_parts(&text), 1, "{text}");
            assert!(text.len() <= 140, "{} bytes: {text}", text.len());
        }
        // Voice has no autofill lines.
        let voice = render_for(
            Channel::Voice,
            "en",
            "49",
            TEN_MINUTES,
            Wording {
                domain: "example.com",
                ..Wording::default()
            },
        );
        assert!(!voice.contains('@'), "{voice}");
    }

    #[test]
    fn autofill_keeps_one_part_with_the_short_words() {
        // Hindi is Unicode (70 characters a part): the long words with the lines would take
        // two parts, so the short ones go.
        let text = render_for(
            Channel::Sms,
            "hi",
            "493817",
            TEN_MINUTES,
            Wording {
                service: "Acme",
                domain: "example.com",
                ..Wording::default()
            },
        );
        assert_eq!(text, "आपका Acme कोड 493817 है।\n\n@example.com #493817");
        assert_eq!(sms_parts(&text), 1);
        let long_name = render_for(
            Channel::Sms,
            "de",
            "4938170000",
            TEN_MINUTES,
            Wording {
                service: "Vereinigte Versicherungen AG",
                app_hash: "FA+9qCX9VSu",
                domain: "login.versicherungen.example",
                ..Wording::default()
            },
        );
        assert!(long_name.starts_with("Ihr Vereinigte Versicherungen AG-Code lautet 4938170000."));
        assert_eq!(sms_parts(&long_name), 1, "{long_name}");
    }

    #[test]
    fn app_hashes_and_domains_are_checked() {
        assert!(check_app_hash("FA+9qCX9VSu").is_ok());
        for bad in ["FA+9qCX9VS", "FA+9qCX9VSu1", "FA-9qCX9VSu"] {
            assert!(check_app_hash(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_domain("Login.Example.COM").unwrap(),
            "login.example.com"
        );
        for bad in [
            "https://example.com",
            "example.com:443",
            "example.com/x",
            "localhost",
            "-a.com",
            "exa mple.com",
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
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
