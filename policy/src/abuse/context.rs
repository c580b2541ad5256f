//! What a client says about the person behind a request.

use std::net::IpAddr;

/// Longest accepted `device_id`, `user_id` or `app_version`, in bytes.
pub const MAX_TEXT: usize = 128;
/// Most `risk_tags` on one request.
pub const MAX_RISK_TAGS: usize = 16;
/// Longest accepted risk tag, in bytes.
pub const MAX_RISK_TAG: usize = 64;

/// What the client knows of the person asking: every part optional, used only for rate limits
/// and abuse signals (never sent to a carrier, never shown to the person).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The end user's IP address, as the client's own server saw it.
    pub client_ip: Option<IpAddr>,
    /// A stable id of the end user's device or app installation.
    pub device_id: Option<String>,
    /// The version of the client's app.
    pub app_version: Option<String>,
    /// The client's own id of the end user (an account id, never a secret).
    pub user_id: Option<String>,
    /// Free-form labels the client attaches (`"new_account"`, `"vpn"` ...).
    pub risk_tags: Vec<String>,
    /// The API key the request came with, by its configured name (never the secret).
    pub api_key: Option<String>,
}

/// A part of a request context that cannot be used, naming the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ContextError {
    /// The field, as clients name it (`context.client_ip`).
    pub field: &'static str,
    /// Why, in one sentence.
    pub reason: String,
}

impl ContextError {
    fn new(field: &'static str, reason: impl Into<String>) -> ContextError {
        ContextError {
            field,
            reason: reason.into(),
        }
    }
}

/// The parts of a request context as a client sends them (empty means absent), with the API
/// key the request came with.
#[derive(Debug, Clone, Default)]
pub struct RawContext {
    /// `client_ip`.
    pub client_ip: String,
    /// `device_id`.
    pub device_id: String,
    /// `app_version`.
    pub app_version: String,
    /// `user_id`.
    pub user_id: String,
    /// `risk_tags`.
    pub risk_tags: Vec<String>,
    /// The configured name of the API key the request was authenticated with, if any.
    pub api_key: Option<String>,
}

impl RequestContext {
    /// Validates what a client sent: an IP address that parses (IPv4, IPv6, or IPv4-mapped
    /// IPv6, kept as IPv4), texts of printable characters and bounded length, a bounded number
    /// of tags. Surrounding spaces are trimmed; an empty part is absent.
    pub fn parse(raw: &RawContext) -> Result<RequestContext, ContextError> {
        let client_ip = match raw.client_ip.trim() {
            "" => None,
            text => {
                let ip: IpAddr = text.parse().map_err(|_| {
                    ContextError::new(
                        "context.client_ip",
                        format!("`{}` is not an IPv4 or IPv6 address", shown(text)),
                    )
                })?;
                Some(ip.to_canonical())
            }
        };
        let mut risk_tags = Vec::new();
        if raw.risk_tags.len() > MAX_RISK_TAGS {
            return Err(ContextError::new(
                "context.risk_tags",
                format!(
                    "{} tags; at most {MAX_RISK_TAGS} are accepted",
                    raw.risk_tags.len()
                ),
            ));
        }
        for tag in &raw.risk_tags {
            if let Some(tag) = text("context.risk_tags", tag, MAX_RISK_TAG)?
                && !risk_tags.contains(&tag)
            {
                risk_tags.push(tag);
            }
        }
        Ok(RequestContext {
            client_ip,
            device_id: text("context.device_id", &raw.device_id, MAX_TEXT)?,
            app_version: text("context.app_version", &raw.app_version, MAX_TEXT)?,
            user_id: text("context.user_id", &raw.user_id, MAX_TEXT)?,
            risk_tags,
            api_key: raw.api_key.clone(),
        })
    }
}

/// A text part: trimmed, `None` when empty, refused when too long or not printable.
fn text(field: &'static str, value: &str, max: usize) -> Result<Option<String>, ContextError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > max {
        return Err(ContextError::new(
            field,
            format!("{} bytes; at most {max} are accepted", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ContextError::new(field, "contains control characters"));
    }
    Ok(Some(value.to_string()))
}

/// A client's text as an error message may show it: at most 64 characters, no controls.
fn shown(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 64 {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_context_is_absent_parts() {
        let context = RequestContext::parse(&RawContext::default()).unwrap();
        assert_eq!(context, RequestContext::default());
    }

    #[test]
    fn parts_are_trimmed_and_addresses_canonical() {
        let tags = vec![" vpn ".to_string(), "vpn".into(), "".into(), "new".into()];
        let context = RequestContext::parse(&RawContext {
            client_ip: " ::ffff:203.0.113.9 ".into(),
            device_id: " dev-1 ".into(),
            app_version: "4.2.0".into(),
            user_id: "".into(),
            risk_tags: tags,
            api_key: Some("backend".into()),
        })
        .unwrap();
        assert_eq!(context.client_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(context.device_id.as_deref(), Some("dev-1"));
        assert_eq!(context.app_version.as_deref(), Some("4.2.0"));
        assert_eq!(context.user_id, None);
        assert_eq!(context.risk_tags, ["vpn", "new"]);
        assert_eq!(context.api_key.as_deref(), Some("backend"));
        let v6 = RequestContext::parse(&RawContext {
            client_ip: "2001:DB8::1".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v6.client_ip, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn bad_parts_name_their_field() {
        let error = RequestContext::parse(&RawContext {
            client_ip: "203.0.113.300".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "context.client_ip");
        assert_eq!(
            error.reason,
            "`203.0.113.300` is not an IPv4 or IPv6 address"
        );
        let long = "x".repeat(MAX_TEXT + 1);
        let error = RequestContext::parse(&RawContext {
            device_id: long,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "context.device_id");
        assert_eq!(error.reason, "129 bytes; at most 128 are accepted");
        let error = RequestContext::parse(&RawContext {
            user_id: "a\u{0}b".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "context.user_id");
        let many: Vec<String> = (0..=MAX_RISK_TAGS).map(|i| format!("t{i}")).collect();
        let error = RequestContext::parse(&RawContext {
            risk_tags: many,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "context.risk_tags");
    }
}
