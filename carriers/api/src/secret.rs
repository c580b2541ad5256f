//! Secret settings of carriers (API secrets, auth tokens, bind passwords, HMAC keys).
//!
//! A [`Secret`] never shows its value in `Debug` or `Display` output, and a mistyped secret in
//! the configuration is refused without echoing it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A secret setting. `Debug` and `Display` print `<redacted>`; the value is reached only through
/// [`Secret::expose`], where it is signed or sent to the peer.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for signing or sending to the peer. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor of our own, so a mistyped secret (a number) is not echoed in the error.
        struct SecretVisitor;
        impl serde::de::Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string"))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("s3cr3t");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.to_string(), "<redacted>");
        assert_eq!(secret.expose(), "s3cr3t");
    }

    #[test]
    fn reads_a_string_and_refuses_anything_else_without_echoing_it() {
        let secret: Secret = serde_json::from_value(serde_json::json!("s3cr3t")).unwrap();
        assert_eq!(secret.expose(), "s3cr3t");
        let error = serde_json::from_value::<Secret>(serde_json::json!(424242))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("424242"), "{error}");
        assert!(error.contains("must be a string"), "{error}");
        assert_eq!(serde_json::to_value(&secret).unwrap(), "s3cr3t");
    }
}
