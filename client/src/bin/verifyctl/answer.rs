//! Reads encoded `ClassifyBatchResponse`s in place: each classification becomes a
//! [`ClassificationView`] of `&str`s pointing into the received bytes, so turning a chunk into
//! CSV rows allocates nothing per number (decoding into `Classification`s allocates about ten
//! strings per number, which was half of `verifyctl classify --input`'s CPU time).
//!
//! Follows prost's reading of the same bytes (unknown fields are skipped, the last value of a
//! scalar field wins) except that strings stay bytes, unchecked: they go to the CSV as they
//! came, and verifyd's strings are Rust `String`s, UTF-8 by construction.

use std::fmt;

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed ClassifyBatchResponse: {}", self.0)
    }
}

fn malformed(what: impl Into<String>) -> WireError {
    WireError(what.into())
}

/// A value as the wire format carries it.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed 32- or 64-bit value, which no field read here uses.
    Fixed,
}

/// Reads the fields of one message in order.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Self {
        Self { rest: message }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (index, &byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                self.rest = &self.rest[index + 1..];
                return Ok(value);
            }
        }
        Err(malformed("truncated or overlong varint"))
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], WireError> {
        if length > self.rest.len() {
            return Err(malformed("field runs past the end of its message"));
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }

    /// The next field's number and value, `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, WireError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(malformed("field number 0"));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let length = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("length does not fit in memory"))?;
                Value::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            wire_type => {
                return Err(malformed(format!(
                    "field {number} has unsupported wire type {wire_type}"
                )));
            }
        };
        Ok(Some((number, value)))
    }
}

fn varint_field(number: u64, value: Value<'_>) -> Result<u64, WireError> {
    match value {
        Value::Varint(value) => Ok(value),
        _ => Err(malformed(format!("field {number} is not a varint"))),
    }
}

fn bytes_field(number: u64, value: Value<'_>) -> Result<&[u8], WireError> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        _ => Err(malformed(format!("field {number} is not length-delimited"))),
    }
}

/// The top level of an encoded `ClassifyBatchResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerView<'a> {
    /// `chunk_index`.
    pub chunk_index: u64,
    /// How many classifications the answer holds.
    pub len: usize,
    message: &'a [u8],
}

impl<'a> AnswerView<'a> {
    /// Reads the top level of `message` (the classifications are read by [`Self::for_each`]).
    pub fn parse(message: &'a [u8]) -> Result<Self, WireError> {
        let mut fields = Fields::new(message);
        let mut chunk_index = 0;
        let mut len = 0;
        while let Some((number, value)) = fields.next_field()? {
            match number {
                1 => {
                    bytes_field(number, value)?;
                    len += 1;
                }
                2 => chunk_index = varint_field(number, value)?,
                _ => {}
            }
        }
        Ok(Self {
            chunk_index,
            len,
            message,
        })
    }

    /// Calls `each` with every classification, in order; stops at the first error of either.
    pub fn for_each<E: From<WireError>>(
        &self,
        mut each: impl FnMut(&ClassificationView<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut fields = Fields::new(self.message);
        while let Some((number, value)) = fields.next_field()? {
            if number == 1 {
                each(&ClassificationView::parse(bytes_field(number, value)?)?)?;
            }
        }
        Ok(())
    }
}

/// One `Classification`, its strings borrowed (as bytes) from the encoded answer. `detail` is
/// not read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassificationView<'a> {
    /// `input`.
    pub input: &'a [u8],
    /// `valid`.
    pub valid: bool,
    /// `e164`.
    pub e164: &'a [u8],
    /// `region_code`.
    pub region_code: &'a [u8],
    /// `country_calling_code`.
    pub country_calling_code: u32,
    /// `line_type`, a `LineType` value.
    pub line_type: i32,
    /// `carrier`.
    pub carrier: &'a [u8],
    /// `recommended_channel`, a `Channel` value.
    pub recommended_channel: i32,
    /// `invalid_reason`, an `InvalidReason` value.
    pub invalid_reason: i32,
    /// `national_format`.
    pub national_format: &'a [u8],
    /// `international_format`.
    pub international_format: &'a [u8],
    /// The first of the `time_zones`.
    first_zone: &'a [u8],
    /// How many `time_zones` there are.
    zones: usize,
    /// The whole message, to read `time_zones` again when there are several.
    message: &'a [u8],
}

impl<'a> ClassificationView<'a> {
    /// Reads one encoded `Classification`.
    pub fn parse(message: &'a [u8]) -> Result<Self, WireError> {
        let mut view = ClassificationView {
            message,
            ..ClassificationView::default()
        };
        let mut fields = Fields::new(message);
        while let Some((number, value)) = fields.next_field()? {
            match number {
                1 => view.input = bytes_field(number, value)?,
                2 => view.valid = varint_field(number, value)? != 0,
                3 => view.e164 = bytes_field(number, value)?,
                4 => view.region_code = bytes_field(number, value)?,
                // Truncating casts, as prost reads uint32 and enum fields.
                5 => view.country_calling_code = varint_field(number, value)? as u32,
                6 => view.line_type = varint_field(number, value)? as i32,
                7 => view.carrier = bytes_field(number, value)?,
                8 => {
                    let zone = bytes_field(number, value)?;
                    if view.zones == 0 {
                        view.first_zone = zone;
                    }
                    view.zones += 1;
                }
                9 => view.recommended_channel = varint_field(number, value)? as i32,
                10 => view.invalid_reason = varint_field(number, value)? as i32,
                12 => view.national_format = bytes_field(number, value)?,
                13 => view.international_format = bytes_field(number, value)?,
                _ => {}
            }
        }
        Ok(view)
    }

    /// `time_zones`, in order. Most numbers have one or none; several are read again from
    /// the message (which [`Self::parse`] has checked, so reading it again cannot fail).
    pub fn time_zones(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let single = (self.zones == 1).then_some(self.first_zone);
        let mut fields = Fields::new(if self.zones > 1 { self.message } else { &[] });
        let several = std::iter::from_fn(move || {
            loop {
                match fields.next_field() {
                    Ok(Some((8, Value::Bytes(zone)))) => return Some(zone),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return None,
                }
            }
        });
        single.into_iter().chain(several)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use verify_client::proto::v1::{
        Channel, Classification, ClassifyBatchResponse, InvalidReason, LineType,
    };

    use super::*;

    fn full() -> Classification {
        Classification {
            input: "+34 661 31 86 09".into(),
            valid: true,
            e164: "+34661318609".into(),
            region_code: "ES".into(),
            country_calling_code: 34,
            line_type: LineType::Mobile as i32,
            carrier: "Vodafone".into(),
            time_zones: vec!["Atlantic/Canary".into(), "Europe/Madrid".into()],
            recommended_channel: Channel::Sms as i32,
            invalid_reason: InvalidReason::Unspecified as i32,
            detail: "words".into(),
            national_format: "661 31 86 09".into(),
            international_format: "+34 661 31 86 09".into(),
        }
    }

    fn assert_same(view: &ClassificationView<'_>, expected: &Classification) {
        assert_eq!(view.input, expected.input.as_bytes());
        assert_eq!(view.valid, expected.valid);
        assert_eq!(view.e164, expected.e164.as_bytes());
        assert_eq!(view.region_code, expected.region_code.as_bytes());
        assert_eq!(view.country_calling_code, expected.country_calling_code);
        assert_eq!(view.line_type, expected.line_type);
        assert_eq!(view.carrier, expected.carrier.as_bytes());
        let zones: Vec<&[u8]> = expected.time_zones.iter().map(|z| z.as_bytes()).collect();
        assert_eq!(view.time_zones().collect::<Vec<_>>(), zones);
        assert_eq!(view.recommended_channel, expected.recommended_channel);
        assert_eq!(view.invalid_reason, expected.invalid_reason);
        assert_eq!(view.national_format, expected.national_format.as_bytes());
        assert_eq!(
            view.international_format,
            expected.international_format.as_bytes()
        );
    }

    fn views(answer: &ClassifyBatchResponse) -> (AnswerView<'static>, Vec<Classification>) {
        let bytes: &'static [u8] = answer.encode_to_vec().leak();
        let view = AnswerView::parse(bytes).unwrap();
        (view, answer.classifications.clone())
    }

    #[test]
    fn reads_what_prost_writes() {
        let invalid = Classification {
            input: "call me".into(),
            invalid_reason: InvalidReason::NotANumber as i32,
            detail: "not a number".into(),
            ..Classification::default()
        };
        let one_zone = Classification {
            time_zones: vec!["Asia/Kolkata".into()],
            ..full()
        };
        let three_zones = Classification {
            time_zones: vec!["A/B".into(), "C/D".into(), "E/F".into()],
            ..full()
        };
        let answer = ClassifyBatchResponse {
            classifications: vec![
                full(),
                invalid,
                Classification::default(),
                one_zone,
                three_zones,
            ],
            chunk_index: 300,
        };
        let (view, expected) = views(&answer);
        assert_eq!(view.chunk_index, 300);
        assert_eq!(view.len, 5);
        let mut seen = 0;
        view.for_each(|classification| {
            assert_same(classification, &expected[seen]);
            seen += 1;
            Ok::<(), WireError>(())
        })
        .unwrap();
        assert_eq!(seen, 5);
    }

    #[test]
    fn an_empty_answer_is_chunk_zero_with_nothing() {
        let view = AnswerView::parse(&[]).unwrap();
        assert_eq!((view.chunk_index, view.len), (0, 0));
    }

    #[test]
    fn unknown_fields_are_skipped_and_the_last_scalar_wins() {
        let mut bytes = full().encode_to_vec();
        // Field 14 varint, field 15 fixed64, field 16 length-delimited, field 17 fixed32.
        bytes.extend_from_slice(&[14 << 3, 0x96, 0x01]);
        bytes.extend_from_slice(&[15 << 3 | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        bytes.extend_from_slice(&[0x82, 0x01, 3, b'a', b'b', b'c']);
        bytes.extend_from_slice(&[0x8d, 0x01, 1, 2, 3, 4]);
        // A second `country_calling_code` (field 5) replaces the first.
        bytes.extend_from_slice(&[5 << 3, 44]);
        let view = ClassificationView::parse(&bytes).unwrap();
        let expected = Classification {
            country_calling_code: 44,
            ..full()
        };
        assert_same(&view, &expected);
        // Prost reads the same bytes the same way.
        assert_eq!(Classification::decode(&bytes[..]).unwrap(), expected);
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        let good = ClassifyBatchResponse {
            classifications: vec![full(), full()],
            chunk_index: 7,
        }
        .encode_to_vec();
        for end in 0..good.len() {
            let truncated = &good[..end];
            let result = AnswerView::parse(truncated).and_then(|view| {
                view.for_each(|_| Ok::<(), WireError>(()))?;
                Ok(view)
            });
            // A cut exactly between top-level fields is a valid, shorter answer.
            if let Ok(view) = result {
                assert!(view.len < 2 || view.chunk_index != 7, "{end}");
            }
        }
        let wrong_type = [2 << 3 | 2, 0];
        assert!(ClassificationView::parse(&wrong_type).is_err());
        let group = [3 << 3 | 3];
        assert!(ClassificationView::parse(&group).is_err());
        let overlong = [
            5 << 3,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x01,
        ];
        assert!(ClassificationView::parse(&overlong).is_err());
    }
}
