//! The GSM 03.38 alphabet (default table and its extension table), shared by carriers that
//! choose between GSM 7-bit text and Unicode: SMPP encodes with it, HTTP vendors ask whether a
//! text fits (Vonage's `type=text` or `unicode`).

/// The GSM 03.38 default alphabet, indexed by septet value.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The GSM 03.38 extension table: character and the septet that follows the 0x1B escape.
const EXTENSION: [(char, u8); 10] = [
    ('\u{0c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// The septets of `c`: one for the default alphabet, two (escape + code) for the extension
/// table, none when GSM 03.38 cannot carry it.
fn septets_of(c: char) -> Option<([u8; 2], usize)> {
    if c != '\u{1b}'
        && let Some(index) = BASIC.iter().position(|&g| g == c)
    {
        return Some(([index as u8, 0], 1));
    }
    EXTENSION
        .iter()
        .find(|(g, _)| *g == c)
        .map(|&(_, code)| ([0x1B, code], 2))
}

/// Encodes `text` in GSM 03.38, one septet per octet, or `None` if a character does not fit.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (septets, n) = septets_of(c)?;
        out.extend_from_slice(&septets[..n]);
    }
    Some(out)
}

/// Decodes unpacked GSM 03.38 septets (for receipts and tests); unknown septets become `?`.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut escaped = false;
    for &s in septets {
        if escaped {
            escaped = false;
            match EXTENSION.iter().find(|(_, code)| *code == s) {
                Some((c, _)) => out.push(*c),
                None => out.push('?'),
            }
        } else if s == 0x1B {
            escaped = true;
        } else {
            out.push(BASIC.get(s as usize).copied().unwrap_or('?'));
        }
    }
    out
}

/// Whether every character of `text` can be sent as GSM 7-bit text.
pub fn fits(text: &str) -> bool {
    text.chars().all(|c| septets_of(c).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_text_fits_and_other_scripts_do_not() {
        assert!(fits("Your code is 123456. @example.com #123456"));
        assert!(!fits("Code 123456 — ok"), "the em dash is not GSM");
        assert!(!fits("Tu código es 123456"), "ó is not GSM (ò is)");
        assert!(fits("Il codice è 123456 [ok] {x} €5 però"));
        assert!(!fits("आपका कोड 123456 है"));
        assert!(!fits("code 😀"));
        assert!(!fits("\u{1b}"), "the escape itself is not a character");
    }

    #[test]
    fn extension_characters_take_two_septets_and_round_trip() {
        let text = "{€}";
        let septets = encode(text).unwrap();
        assert_eq!(septets, [0x1B, 0x28, 0x1B, 0x65, 0x1B, 0x29]);
        assert_eq!(decode(&septets), text);
    }
}
