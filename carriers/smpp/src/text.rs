//! Message text on the wire: GSM 03.38 (one septet per octet, extension table through 0x1B) when
//! every character fits, else UCS-2 (UTF-16BE); long texts split into parts with a
//! concatenation UDH (IEI 0x00, 8-bit reference).

use bytes::Bytes;
use verify_carrier::gsm7;

/// data_coding for the SMSC default alphabet (GSM 03.38).
pub const DATA_CODING_GSM: u8 = 0x00;
/// data_coding for UCS-2.
pub const DATA_CODING_UCS2: u8 = 0x08;
/// esm_class bit saying short_message starts with a UDH.
pub const ESM_CLASS_UDHI: u8 = 0x40;

/// Septets of one GSM message without a UDH.
const GSM_SINGLE: usize = 160;
/// Septets per part of a concatenated GSM message (160 minus the 7 septets of a 6-octet UDH).
const GSM_PART: usize = 153;
/// UTF-16 code units of one UCS-2 message.
const UCS2_SINGLE: usize = 70;
/// UTF-16 code units per part of a concatenated UCS-2 message.
const UCS2_PART: usize = 67;
/// Most parts a concatenation UDH can number.
const MAX_PARTS: usize = 255;

/// Encodes `text` as UCS-2 (UTF-16BE; characters beyond the BMP as surrogate pairs).
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// One short_message ready for submit_sm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The octets (UDH first when the message is split).
    pub short_message: Bytes,
    /// esm_class: [`ESM_CLASS_UDHI`] on parts of a split message.
    pub esm_class: u8,
}

/// A message body encoded for SMPP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// data_coding of every part.
    pub data_coding: u8,
    /// The parts, in order.
    pub parts: Vec<Part>,
}

/// Why a body cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// More parts than a concatenation UDH can number.
    TooLong {
        /// Parts the text would need.
        parts: usize,
    },
}

/// Encodes `text` (GSM 03.38 when it fits, else UCS-2) and splits it into parts with a UDH
/// carrying `reference` when it does not fit one message.
pub fn encode_message(text: &str, reference: u8) -> Result<Encoded, TextError> {
    let (data_coding, chunks): (u8, Vec<Vec<u8>>) = match gsm7::encode(text) {
        Some(septets) if septets.len() <= GSM_SINGLE => (DATA_CODING_GSM, vec![septets]),
        Some(septets) => (DATA_CODING_GSM, split_gsm(&septets)),
        None => {
            let units: Vec<u16> = text.encode_utf16().collect();
            let chunks = if units.len() <= UCS2_SINGLE {
                vec![units]
            } else {
                split_ucs2(&units)
            };
            let chunks = chunks
                .into_iter()
                .map(|c| c.into_iter().flat_map(u16::to_be_bytes).collect())
                .collect();
            (DATA_CODING_UCS2, chunks)
        }
    };
    if chunks.len() > MAX_PARTS {
        return Err(TextError::TooLong {
            parts: chunks.len(),
        });
    }
    if chunks.len() == 1 {
        let only = chunks.into_iter().next().unwrap_or_default();
        return Ok(Encoded {
            data_coding,
            parts: vec![Part {
                short_message: Bytes::from(only),
                esm_class: 0,
            }],
        });
    }
    let total = chunks.len() as u8;
    let parts = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut octets = Vec::with_capacity(6 + chunk.len());
            octets.extend_from_slice(&[0x05, 0x00, 0x03, reference, total, (i + 1) as u8]);
            octets.extend_from_slice(&chunk);
            Part {
                short_message: Bytes::from(octets),
                esm_class: ESM_CLASS_UDHI,
            }
        })
        .collect();
    Ok(Encoded { data_coding, parts })
}

/// Splits septets into parts of at most 153, never between an escape and its code.
fn split_gsm(septets: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < septets.len() {
        let mut end = (start + GSM_PART).min(septets.len());
        if end < septets.len() && end > start && escape_open(&septets[start..end]) {
            end -= 1;
        }
        parts.push(septets[start..end].to_vec());
        start = end;
    }
    parts
}

/// Whether the chunk ends on an escape that starts an extension character.
fn escape_open(chunk: &[u8]) -> bool {
    let mut open = false;
    for &s in chunk {
        open = !open && s == 0x1B;
    }
    open
}

/// Splits UTF-16 units into parts of at most 67, never inside a surrogate pair.
fn split_ucs2(units: &[u16]) -> Vec<Vec<u16>> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let mut end = (start + UCS2_PART).min(units.len());
        if end < units.len() && (0xD800..0xDC00).contains(&units[end - 1]) {
            end -= 1;
        }
        parts.push(units[start..end].to_vec());
        start = end;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_default_alphabet_is_one_septet_per_octet() {
        assert_eq!(
            gsm7::encode("A@£ 0"),
            Some(vec![0x41, 0x00, 0x01, 0x20, 0x30])
        );
        assert_eq!(gsm7::encode("Ñandú"), None, "ú is not in GSM 03.38");
        assert_eq!(
            gsm7::encode("Ñandu"),
            Some(vec![0x5D, 0x61, 0x6E, 0x64, 0x75])
        );
    }

    #[test]
    fn gsm_extension_characters_use_the_escape() {
        assert_eq!(gsm7::encode("€"), Some(vec![0x1B, 0x65]));
        assert_eq!(
            gsm7::encode("{x}"),
            Some(vec![0x1B, 0x28, 0x78, 0x1B, 0x29])
        );
        assert_eq!(
            gsm7::encode("[~]|^\\"),
            Some(vec![
                0x1B, 0x3C, 0x1B, 0x3D, 0x1B, 0x3E, 0x1B, 0x40, 0x1B, 0x14, 0x1B, 0x2F
            ])
        );
        let text = "Price: 5€ {code} [ok] ~ | ^ \\ @ñ";
        assert_eq!(gsm7::decode(&gsm7::encode(text).expect("fits")), text);
    }

    #[test]
    fn hindi_text_is_ucs2() {
        let encoded = encode_message("आपका कोड 123456 है", 1).expect("encodes");
        assert_eq!(encoded.data_coding, DATA_CODING_UCS2);
        assert_eq!(encoded.parts.len(), 1);
        assert_eq!(
            &encoded.parts[0].short_message[..4],
            &[0x09, 0x06, 0x09, 0x2A]
        );
        assert_eq!(encoded.parts[0].esm_class, 0);
    }

    #[test]
    fn short_gsm_text_is_one_part_without_udh() {
        let text = "x".repeat(160);
        let encoded = encode_message(&text, 9).expect("encodes");
        assert_eq!(encoded.data_coding, DATA_CODING_GSM);
        assert_eq!(encoded.parts.len(), 1);
        assert_eq!(encoded.parts[0].short_message.len(), 160);
    }

    #[test]
    fn long_gsm_text_splits_into_153_septet_parts_with_udh() {
        let text = "y".repeat(161);
        let encoded = encode_message(&text, 0x2A).expect("encodes");
        assert_eq!(encoded.parts.len(), 2);
        let first = &encoded.parts[0];
        assert_eq!(first.esm_class, ESM_CLASS_UDHI);
        assert_eq!(
            &first.short_message[..6],
            &[0x05, 0x00, 0x03, 0x2A, 0x02, 0x01]
        );
        assert_eq!(first.short_message.len(), 6 + 153);
        assert_eq!(
            &encoded.parts[1].short_message[..6],
            &[0x05, 0x00, 0x03, 0x2A, 0x02, 0x02]
        );
        assert_eq!(encoded.parts[1].short_message.len(), 6 + 8);
    }

    #[test]
    fn split_never_cuts_an_escape_sequence() {
        // 152 plain septets then '€' (two septets) would straddle the 153 boundary.
        let text = format!("{}€tail{}", "a".repeat(152), "b".repeat(20));
        let encoded = encode_message(&text, 1).expect("encodes");
        let first = &encoded.parts[0].short_message[6..];
        assert_eq!(first.len(), 152, "the escape moves to the next part");
        assert_eq!(&encoded.parts[1].short_message[6..8], &[0x1B, 0x65]);
        let joined: Vec<u8> = encoded
            .parts
            .iter()
            .flat_map(|p| p.short_message[6..].to_vec())
            .collect();
        assert_eq!(gsm7::decode(&joined), text);
    }

    #[test]
    fn long_ucs2_text_splits_into_67_unit_parts() {
        let text = "क".repeat(140);
        let encoded = encode_message(&text, 7).expect("encodes");
        assert_eq!(encoded.data_coding, DATA_CODING_UCS2);
        assert_eq!(encoded.parts.len(), 3);
        assert_eq!(encoded.parts[0].short_message.len(), 6 + 134);
        assert_eq!(encoded.parts[2].short_message.len(), 6 + 12);
        assert_eq!(&encoded.parts[2].short_message[..6], &[5, 0, 3, 7, 3, 3]);
    }

    #[test]
    fn surrogate_pairs_stay_in_one_part() {
        let text = format!("{}😀{}", "क".repeat(66), "क".repeat(10));
        let encoded = encode_message(&text, 1).expect("encodes");
        assert_eq!(encoded.parts[0].short_message.len(), 6 + 132);
        assert_eq!(&encoded.parts[1].short_message[6..8], &[0xD8, 0x3D]);
    }

    #[test]
    fn texts_beyond_255_parts_are_refused() {
        let text = "z".repeat(153 * 256);
        assert_eq!(
            encode_message(&text, 1),
            Err(TextError::TooLong { parts: 256 })
        );
    }
}
