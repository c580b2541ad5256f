//! Checks of request fields shared by the use cases: each failure names the field and says
//! what a good value looks like.

use verify_policy::abuse::{RawContext, RequestContext};
use verify_policy::{TerritoryId, parse_region_hint};

use super::UseCaseError;

/// Longest verification or notification id accepted.
pub const MAX_ID_LENGTH: usize = 128;
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 255;
/// Longest number text accepted.
pub const MAX_NUMBER_INPUT_LENGTH: usize = 250;

/// An id: present and of sane length (unknown ones are NOT_FOUND later).
pub fn validate_id(field: &'static str, id: &str) -> Result<(), UseCaseError> {
    if id.trim().is_empty() {
        return Err(UseCaseError::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LENGTH {
        return Err(UseCaseError::invalid(
            field,
            format!("longer than {MAX_ID_LENGTH} characters"),
        ));
    }
    Ok(())
}

/// A phone number as typed: present and of sane length (its validity is classification's).
pub fn validate_number_input(field: &'static str, number: &str) -> Result<(), UseCaseError> {
    if number.trim().is_empty() {
        return Err(UseCaseError::invalid(
            field,
            "must not be empty; give the number in E.164, e.g. +14155550123",
        ));
    }
    if number.len() > MAX_NUMBER_INPUT_LENGTH {
        return Err(UseCaseError::invalid(
            field,
            format!("longer than {MAX_NUMBER_INPUT_LENGTH} characters"),
        ));
    }
    Ok(())
}

/// A client's idempotency key: empty is none, and it has a length limit.
pub fn idempotency_key(key: &str) -> Result<Option<String>, UseCaseError> {
    match key {
        "" => Ok(None),
        key if key.len() > MAX_IDEMPOTENCY_KEY_LENGTH => Err(UseCaseError::invalid(
            "idempotency_key",
            format!("longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters"),
        )),
        key => Ok(Some(key.to_string())),
    }
}

/// A language tag such as `en`, `es-MX` or `pt-BR`.
pub fn validate_locale(locale: &str) -> Result<(), UseCaseError> {
    let well_formed = locale.len() <= 35
        && locale.split(['-', '_']).all(|part| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if well_formed {
        Ok(())
    } else {
        Err(UseCaseError::invalid(
            "locale",
            format!("`{locale}` is not a language tag such as en, es-MX or pt-BR"),
        ))
    }
}

/// A region hint: empty for none, else an ISO 3166-1 alpha-2 region.
pub fn region_hint(hint: &str) -> Result<Option<TerritoryId>, UseCaseError> {
    parse_region_hint(hint).map_err(|e| UseCaseError::invalid("region_hint", e.to_string()))
}

/// A code as typed: 4 to 10 digits.
pub fn validate_code(code: &str) -> Result<(), UseCaseError> {
    if code.is_empty() {
        return Err(UseCaseError::invalid("code", "must not be empty"));
    }
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UseCaseError::invalid("code", "must contain digits only"));
    }
    if !(4..=10).contains(&code.len()) {
        return Err(UseCaseError::invalid(
            "code",
            format!("must be 4 to 10 digits, got {}", code.len()),
        ));
    }
    Ok(())
}

/// The request context, checked part by part (each failure names its field).
pub fn request_context(context: &RawContext) -> Result<RequestContext, UseCaseError> {
    RequestContext::parse(context).map_err(|error| UseCaseError::invalid(error.field, error.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_and_reason(error: UseCaseError) -> String {
        error.to_string()
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(field_and_reason(validate_code("12a4").unwrap_err()).starts_with("code: "));
        assert!(field_and_reason(validate_code("123").unwrap_err()).contains("4 to 10 digits"));
        assert!(
            field_and_reason(validate_number_input("to", " ").unwrap_err()).starts_with("to: ")
        );
        assert!(validate_locale("es-MX").is_ok());
        assert!(validate_locale("es MX").is_err());
        assert!(field_and_reason(region_hint("QQQ").unwrap_err()).starts_with("region_hint: "));
        assert!(
            field_and_reason(idempotency_key(&"k".repeat(256)).unwrap_err())
                .starts_with("idempotency_key: ")
        );
        assert_eq!(idempotency_key("").unwrap(), None);
        assert!(validate_id("verification_id", "").is_err());
    }
}
