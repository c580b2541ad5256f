//! `google.protobuf.Timestamp` for the generated messages, with its proto3 JSON form.
//!
//! pbjson-types' Timestamp prints `+00:00` where the mapping requires `Z`, so the messages use
//! this one; prost-types does the printing and parsing.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

/// `google.protobuf.Timestamp`: a point in time as seconds and nanoseconds since the Unix epoch
/// (UTC). Same fields and wire encoding as `prost_types::Timestamp`; convert with `From`.
///
/// Its JSON form is the proto3 one: an RFC 3339 string in UTC ending in `Z`, with 0, 3, 6 or 9
/// fractional digits (`"2026-11-25T01:56:09Z"`, `"2026-11-25T01:56:09.250Z"`). Parsing also
/// accepts other offsets (`"2026-11-25T07:26:09+05:30"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, 0 to 999,999,999 once normalized.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl prost::Name for Timestamp {
    const PACKAGE: &'static str = "google.protobuf";
    const NAME: &'static str = "Timestamp";
}

impl From<prost_types::Timestamp> for Timestamp {
    fn from(time: prost_types::Timestamp) -> Self {
        Self {
            seconds: time.seconds,
            nanos: time.nanos,
        }
    }
}

impl From<Timestamp> for prost_types::Timestamp {
    fn from(time: Timestamp) -> Self {
        Self {
            seconds: time.seconds,
            nanos: time.nanos,
        }
    }
}

impl fmt::Display for Timestamp {
    /// The proto3 JSON form, without quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        prost_types::Timestamp::from(*self).fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an RFC 3339 timestamp such as \"2026-11-25T01:56:09Z\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
        prost_types::Timestamp::from_str(text)
            .map(Timestamp::from)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(seconds: i64, nanos: i32) -> String {
        serde_json::to_string(&Timestamp { seconds, nanos }).unwrap()
    }

    #[test]
    fn prints_utc_with_z_and_0_3_6_or_9_fractional_digits() {
        assert_eq!(json(1_764_033_600, 0), r#""2025-11-25T01:20:00Z""#);
        assert_eq!(
            json(1_764_033_600, 250_000_000),
            r#""2025-11-25T01:20:00.250Z""#
        );
        assert_eq!(
            json(1_764_033_600, 250_000),
            r#""2025-11-25T01:20:00.000250Z""#
        );
        assert_eq!(json(0, 1), r#""1970-01-01T00:00:00.000000001Z""#);
    }

    #[test]
    fn negative_nanos_are_normalized_before_printing() {
        assert_eq!(json(10, -500_000_000), r#""1970-01-01T00:00:09.500Z""#);
    }

    #[test]
    fn parses_z_and_other_offsets() {
        let parse = |text: &str| serde_json::from_str::<Timestamp>(text).unwrap();
        let expected = Timestamp {
            seconds: 1_764_033_600,
            nanos: 0,
        };
        assert_eq!(parse(r#""2025-11-25T01:20:00Z""#), expected);
        assert_eq!(parse(r#""2025-11-25T06:50:00+05:30""#), expected);
    }

    #[test]
    fn a_malformed_timestamp_is_an_error_quoting_it() {
        let error = serde_json::from_str::<Timestamp>(r#""yesterday""#).unwrap_err();
        assert!(error.to_string().contains("\"yesterday\""), "{error}");
        assert!(error.to_string().contains("RFC 3339"), "{error}");
    }

    #[test]
    fn wire_encoding_is_the_well_known_type() {
        use prost::Message;
        let ours = Timestamp {
            seconds: 1_764_033_600,
            nanos: 7,
        };
        let theirs = prost_types::Timestamp::decode(ours.encode_to_vec().as_slice()).unwrap();
        assert_eq!(Timestamp::from(theirs), ours);
    }
}
