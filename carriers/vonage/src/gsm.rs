//! Whether a text fits the GSM 03.38 alphabet (default table plus its extension table), which
//! decides between Vonage's `type=text` and `type=unicode`.

/// The GSM 03.38 default alphabet, less the escape character.
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// Characters reached through the extension table (two septets each).
const EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Whether every character of `text` can be sent as GSM 7-bit text.
pub fn is_gsm7(text: &str) -> bool {
    text.chars()
        .all(|c| BASIC.contains(c) || EXTENSION.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_text_is_gsm_and_scripts_are_not() {
        assert!(is_gsm7("Your code is 123456. @example.com #123456"));
        assert!(!is_gsm7("Code 123456 — ok"), "the em dash is not GSM");
        assert!(!is_gsm7("Tu código es 123456"), "ó is not GSM (ò is)");
        assert!(is_gsm7("Il codice è 123456 [ok] {x} €5 però"));
        assert!(!is_gsm7("आपका कोड 123456 है"));
        assert!(!is_gsm7("验证码 123456"));
        assert!(!is_gsm7("code 😀"));
        assert!(
            !is_gsm7("ç"),
            "lowercase c-cedilla is not in the default table"
        );
    }
}
